//! REST helpers for writers and tools: put, delete, history, rollback, remote reads.

use graycast_protocol::rest::{
    ChangeList, ClientList, ConfigList, DeleteResponse, ExportDocument, HistoryList, ImportReport,
    NamespaceDescribed, NamespaceDescription, NamespaceList, PutRequest, RollbackRequest, WhoAmI,
};
use graycast_protocol::{Entry, HistoryItem, Revision};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Client, Error};

/// The header that makes a write apply at most once.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The pause before each endpoint is tried a second time.
const SECOND_ROUND_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// How a write conditions itself on the key's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expect {
    /// Write whatever the current state.
    #[default]
    Any,
    /// Write only if the key is at this revision (`If-Match`).
    Revision(Revision),
    /// Create only: write only if the key does not exist (`If-None-Match: *`).
    Absent,
}

impl Client {
    /// Sends a request to each endpoint in turn until one answers.
    ///
    /// A write carries an `Idempotency-Key`, the same on every attempt: the server applies
    /// it at most once and answers a repeat with the first outcome, so a write whose answer
    /// was lost (the connection broke, or `504 outcome_unknown`) is sent again, to the next
    /// endpoint, safely. A read is sent again likewise. Each endpoint is tried at most
    /// twice.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<(StatusCode, Option<T>), Error> {
        let endpoints = &self.inner.settings.endpoints;
        let key = (method != Method::GET).then(|| uuid::Uuid::new_v4().to_string());
        let mut last = Error::Config("no endpoint".into());
        for attempt in 0..endpoints.len() * 2 {
            if attempt == endpoints.len() {
                // Every endpoint failed once: give the cluster a moment before the second round.
                tokio::time::sleep(SECOND_ROUND_AFTER).await;
            }
            let endpoint = &endpoints[attempt % endpoints.len()];
            let mut request = self.inner.http.request(method.clone(), format!("{endpoint}{path}"));
            if let Some(token) = &self.inner.settings.token {
                request = request.bearer_auth(token);
            }
            if let Some(key) = &key {
                request = request.header(IDEMPOTENCY_KEY, key);
            }
            let response = match build(request).send().await {
                Ok(response) => response,
                // Nothing reached this node, or its answer was lost: with the key, the next
                // one may take the request (a write already made answers its first outcome).
                Err(err) => {
                    last = err.into();
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                let body = response.json::<T>().await?;
                return Ok((status, Some(body)));
            }
            if status == StatusCode::NOT_MODIFIED {
                return Ok((status, None));
            }
            let text = response.text().await.unwrap_or_default();
            let err = crate::error::from_answer(status.as_u16(), text.as_bytes(), || {
                ("unknown", text.chars().take(200).collect())
            });
            // Another node may serve while this one is unavailable (nothing changed), and a
            // write of unknown outcome is safe to repeat with its key.
            if matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT) {
                last = err;
                continue;
            }
            return Err(err);
        }
        Err(last)
    }

    pub(crate) async fn call_ok<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<T, Error> {
        match self.call(method, path, build).await? {
            (_, Some(body)) => Ok(body),
            (status, None) => Err(Error::Protocol(format!("answer {status} has no body"))),
        }
    }

    /// Sets a key's value. Returns the entry as stored, with its new revision.
    pub async fn put<V: Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &str,
        value: &V,
        expect: Expect,
    ) -> Result<Entry, Error> {
        check_names(namespace, Some(key))?;
        let value = serde_json::to_value(value).map_err(|e| Error::Decode {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            message: e.to_string(),
        })?;
        let body = PutRequest { value, comment: self.comment.as_deref().map(str::to_owned) };
        self.call_ok(Method::PUT, &format!("/v1/configs/{namespace}/{key}"), |r| {
            with_expect(r.json(&body), expect)
        })
        .await
    }

    /// Deletes a key. Returns the revision of the delete.
    pub async fn delete(
        &self,
        namespace: &str,
        key: &str,
        expect: Expect,
    ) -> Result<Revision, Error> {
        check_names(namespace, Some(key))?;
        let answer: DeleteResponse = self
            .call_ok(Method::DELETE, &format!("/v1/configs/{namespace}/{key}"), |r| {
                with_expect(self.with_comment_query(r), expect)
            })
            .await?;
        Ok(answer.revision)
    }

    /// Makes the value of an earlier revision current again, as a new revision.
    pub async fn rollback(
        &self,
        namespace: &str,
        key: &str,
        to_revision: Revision,
    ) -> Result<Entry, Error> {
        check_names(namespace, Some(key))?;
        let body =
            RollbackRequest { to_revision, comment: self.comment.as_deref().map(str::to_owned) };
        self.call_ok(Method::POST, &format!("/v1/configs/{namespace}/{key}/rollback"), |r| {
            r.json(&body)
        })
        .await
    }

    /// The revisions of a key, newest first: at most `limit`, below `before` if given.
    pub async fn history(
        &self,
        namespace: &str,
        key: &str,
        limit: Option<usize>,
        before: Option<Revision>,
    ) -> Result<Vec<HistoryItem>, Error> {
        check_names(namespace, Some(key))?;
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(before) = before {
            query.push(("before", before.to_string()));
        }
        let list: HistoryList = self
            .call_ok(Method::GET, &format!("/v1/configs/{namespace}/{key}/history"), |r| {
                r.query(&query)
            })
            .await?;
        Ok(list.items)
    }

    /// Reads a key from the server (not the cache); `None` if it does not exist.
    pub async fn fetch(&self, namespace: &str, key: &str) -> Result<Option<Entry>, Error> {
        check_names(namespace, Some(key))?;
        match self.call_ok(Method::GET, &format!("/v1/configs/{namespace}/{key}"), |r| r).await {
            Ok(entry) => Ok(Some(entry)),
            Err(err) if err.code() == Some("not_found") => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Reads a whole namespace from the server.
    pub async fn fetch_namespace(&self, namespace: &str) -> Result<ConfigList, Error> {
        check_names(namespace, None)?;
        let path = format!("/v1/configs/{namespace}");
        let mut list: ConfigList = self.call_ok(Method::GET, &path, |r| r).await?;
        // The server answers in pages; the whole namespace is their concatenation.
        while let Some(after) = list.next.take() {
            let page: ConfigList =
                self.call_ok(Method::GET, &path, |r| r.query(&[("after", after.as_str())])).await?;
            list.revision = list.revision.max(page.revision);
            list.entries.extend(page.entries);
            list.next = page.next;
        }
        Ok(list)
    }

    /// Lists the server's namespaces.
    pub async fn fetch_namespaces(&self) -> Result<NamespaceList, Error> {
        self.call_ok(Method::GET, "/v1/namespaces", |r| r).await
    }

    /// Lists the server's connected subscribers.
    pub async fn fetch_clients(&self) -> Result<ClientList, Error> {
        self.call_ok(Method::GET, "/v1/clients", |r| r).await
    }

    /// Who the server takes this client's token for: its name, role and namespace patterns.
    pub async fn whoami(&self) -> Result<WhoAmI, Error> {
        self.call_ok(Method::GET, "/v1/whoami", |r| r).await
    }

    /// Sets what a namespace is for (an empty text removes the description).
    pub async fn describe_namespace(
        &self,
        namespace: &str,
        description: &str,
    ) -> Result<NamespaceDescribed, Error> {
        check_names(namespace, None)?;
        let body = NamespaceDescription {
            description: description.to_owned(),
            comment: self.comment.as_deref().map(str::to_owned),
        };
        self.call_ok(Method::PUT, &format!("/v1/namespaces/{namespace}"), |r| r.json(&body)).await
    }

    /// The audit feed: changes after `since` (the recent ones when `None`), oldest first,
    /// at most `limit` (the server's default 100 when `None`), of one namespace and key if
    /// given. The answer's `next` is the `since` of the following page.
    pub async fn fetch_changes(
        &self,
        since: Option<Revision>,
        limit: Option<usize>,
        namespace: Option<&str>,
        key: Option<&str>,
    ) -> Result<ChangeList, Error> {
        if let Some(namespace) = namespace {
            check_names(namespace, key)?;
        } else if let Some(key) = key {
            check_names(key, None)?;
        }
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(since) = since {
            query.push(("since", since.to_string()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(namespace) = namespace {
            query.push(("namespace", namespace.to_owned()));
        }
        if let Some(key) = key {
            query.push(("key", key.to_owned()));
        }
        self.call_ok(Method::GET, "/v1/changes", |r| r.query(&query)).await
    }

    /// Every namespace, entry, running gray release and description, as of one revision
    /// (an admin token).
    pub async fn export(&self) -> Result<ExportDocument, Error> {
        self.call_ok(Method::GET, "/v1/export", |r| r).await
    }

    /// Brings the server to the state of an export (an admin token): each key that differs
    /// is written (comment `import`); with `prune`, keys the document lacks are deleted;
    /// with `dry_run`, nothing is written and the report says what would change.
    pub async fn import(
        &self,
        document: &ExportDocument,
        dry_run: bool,
        prune: bool,
    ) -> Result<ImportReport, Error> {
        let query = [("dry_run", dry_run), ("prune", prune)];
        self.call_ok(Method::POST, "/v1/import", |r| r.query(&query).json(document)).await
    }

    /// Adds this handle's comment as `?comment=` (for calls without a body).
    pub(crate) fn with_comment_query(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.comment {
            Some(comment) => request.query(&[("comment", comment.as_ref())]),
            None => request,
        }
    }
}

fn with_expect(request: RequestBuilder, expect: Expect) -> RequestBuilder {
    match expect {
        Expect::Any => request,
        Expect::Revision(revision) => request.header("If-Match", format!("\"{revision}\"")),
        Expect::Absent => request.header("If-None-Match", "*"),
    }
}

/// Checks names before they go into a URL path, where `/` or `?` would change its meaning.
pub(crate) fn check_names(namespace: &str, key: Option<&str>) -> Result<(), Error> {
    for name in std::iter::once(namespace).chain(key) {
        graycast_protocol::validate_name(name)
            .map_err(|e| Error::InvalidName { name: name.to_owned(), message: e.to_string() })?;
    }
    Ok(())
}
