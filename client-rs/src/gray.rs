//! Gray releases in the SDK: local evaluation, outcome reports, and release management.

use std::collections::BTreeMap;
use std::sync::Arc;

use graycast_protocol::gray::{
    GrayPatch, GrayRequest, GrayStatus, GuardCounts, ReleaseDecision, ReportRequest,
};
use graycast_protocol::rollout::{evaluate, Decision, Reason, Variant};
use graycast_protocol::Entry;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::rest::check_names;
use crate::{Client, Error};

/// Who is asking: the subject (user, instance, tenant...) and its attributes.
///
/// Without a subject, the client's id is the subject, which makes a gray release
/// instance-level: each instance of a service is in or out as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// Who is asking (user, tenant, instance id); the client id when `None`.
    pub subject: Option<String>,
    /// Attributes the release's rules look at (`region`, `version`, ...).
    pub attrs: BTreeMap<String, String>,
}

impl Context {
    /// A context for a subject.
    pub fn subject(subject: impl Into<String>) -> Context {
        Context { subject: Some(subject.into()), attrs: BTreeMap::new() }
    }

    /// The context of this instance (the client id as subject).
    pub fn instance() -> Context {
        Context::default()
    }

    /// Adds an attribute, for attribute rules.
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Context {
        self.attrs.insert(name.into(), value.into());
        self
    }
}

/// The local evaluation of a key for a context.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The entry as the cache holds it.
    pub entry: Arc<Entry>,
    /// Which value the context gets: `stable` or `gray`.
    pub variant: Variant,
    /// Why: no release, deny or allow list, rule mismatch, percent, random.
    pub reason: Reason,
    /// The subject's sticky bucket in `0..10000`, when the percent decided.
    pub bucket: Option<u32>,
}

impl Evaluation {
    /// The value the context gets: the gray value in the gray variant, else the stable one.
    pub fn value(&self) -> &Value {
        match (&self.variant, &self.entry.gray) {
            (Variant::Gray, Some(gray)) => &gray.value,
            _ => &self.entry.value,
        }
    }
}

impl Client {
    /// Evaluates a key for a context from the local cache, with exactly the server's
    /// algorithm; no network. `None` when the key is not in the cache.
    pub fn evaluate(&self, namespace: &str, key: &str, context: &Context) -> Option<Evaluation> {
        let entry = self.entry(namespace, key)?;
        let subject = context.subject.as_deref().unwrap_or(self.client_id());
        let Decision { variant, reason, bucket } =
            evaluate(entry.gray.as_ref(), Some(subject), &context.attrs);
        Some(Evaluation { entry, variant, reason, bucket })
    }

    /// The value `context` gets, decoded as `T`: the gray value when a running gray
    /// release puts the context in gray, else the stable value. `Ok(None)` when the key
    /// does not exist; [`Error::NotSubscribed`] for a namespace this client does not follow.
    ///
    /// This is the read to use for any key that may be released gradually;
    /// `Context::instance()` makes the decision per instance of your service.
    pub fn get_for<T: DeserializeOwned>(
        &self,
        namespace: &str,
        key: &str,
        context: &Context,
    ) -> Result<Option<T>, Error> {
        self.check_subscribed(namespace)?;
        let Some(evaluation) = self.evaluate(namespace, key, context) else { return Ok(None) };
        let decoded = crate::client::decode(namespace, key, evaluation.value());
        if let Err(err) = &decoded {
            self.nack(&evaluation.entry, evaluation.variant, err);
        }
        decoded.map(Some)
    }

    /// The same as [`Client::get_for`] (its earlier name).
    pub fn evaluate_as<T: DeserializeOwned>(
        &self,
        namespace: &str,
        key: &str,
        context: &Context,
    ) -> Result<Option<T>, Error> {
        self.get_for(namespace, key, context)
    }

    /// Reports outcomes seen with a variant, for the guard of the release in the cache.
    /// Returns the counts; `not_found` when that release is over.
    pub async fn report(
        &self,
        namespace: &str,
        key: &str,
        variant: Variant,
        ok: u64,
        errors: u64,
    ) -> Result<GuardCounts, Error> {
        check_names(namespace, Some(key))?;
        // Name the release the outcomes were seen with, so that they never count for a
        // release that replaced it meanwhile.
        let release =
            self.entry(namespace, key).and_then(|e| e.gray.as_ref().map(|g| g.started_at));
        let body = ReportRequest { variant, ok, errors, release };
        self.call_ok(Method::POST, &format!("/v1/configs/{namespace}/{key}/gray/report"), |r| {
            r.json(&body)
        })
        .await
    }

    /// Asks the server to evaluate a key for a context (`/v1/release`).
    pub async fn release(
        &self,
        namespace: &str,
        key: &str,
        context: &Context,
    ) -> Result<ReleaseDecision, Error> {
        check_names(namespace, Some(key))?;
        let mut query: Vec<(String, String)> = Vec::new();
        if let Some(subject) = &context.subject {
            query.push(("subject".into(), subject.clone()));
        }
        for (name, value) in &context.attrs {
            query.push((format!("attr.{name}"), value.clone()));
        }
        self.call_ok(Method::GET, &format!("/v1/release/{namespace}/{key}"), |r| r.query(&query))
            .await
    }

    /// Starts a gray release of an existing key (or replaces the running one).
    pub async fn gray_start(
        &self,
        namespace: &str,
        key: &str,
        request: &GrayRequest,
    ) -> Result<Entry, Error> {
        check_names(namespace, Some(key))?;
        let mut request = request.clone();
        if request.comment.is_none() {
            request.comment = self.comment.as_deref().map(str::to_owned);
        }
        self.call_ok(Method::PUT, &format!("/v1/configs/{namespace}/{key}/gray"), |r| {
            r.json(&request)
        })
        .await
    }

    /// Changes the running gray release.
    pub async fn gray_patch(
        &self,
        namespace: &str,
        key: &str,
        patch: &GrayPatch,
    ) -> Result<Entry, Error> {
        check_names(namespace, Some(key))?;
        let mut patch = patch.clone();
        if patch.comment.is_none() {
            patch.comment = self.comment.as_deref().map(str::to_owned);
        }
        self.call_ok(Method::PATCH, &format!("/v1/configs/{namespace}/{key}/gray"), |r| {
            r.json(&patch)
        })
        .await
    }

    /// Makes the gray value the stable value; the release ends.
    pub async fn gray_promote(&self, namespace: &str, key: &str) -> Result<Entry, Error> {
        check_names(namespace, Some(key))?;
        self.call_ok(Method::POST, &format!("/v1/configs/{namespace}/{key}/gray/promote"), |r| {
            self.with_comment_query(r)
        })
        .await
    }

    /// Aborts the running gray release; the stable value stays.
    pub async fn gray_abort(&self, namespace: &str, key: &str) -> Result<Entry, Error> {
        check_names(namespace, Some(key))?;
        self.call_ok(Method::DELETE, &format!("/v1/configs/{namespace}/{key}/gray"), |r| {
            self.with_comment_query(r)
        })
        .await
    }

    /// The running gray release with the guard's counts.
    pub async fn gray_status(&self, namespace: &str, key: &str) -> Result<GrayStatus, Error> {
        check_names(namespace, Some(key))?;
        self.call_ok(Method::GET, &format!("/v1/configs/{namespace}/{key}/gray"), |r| r).await
    }
}
