//! Change requests: the exact writes someone proposes for namespaces under a policy, the
//! approvals of others, and their all-or-nothing apply (routes in `routes/requests.rs`).
//!
//! A request is one entry of the reserved namespace [`REQUESTS_NAMESPACE`] (key: its id),
//! so every transition is a revision in history and the audit feed, durable on every store
//! and conditional on the request's own revision (two approvers, two appliers or two nodes'
//! schedulers cannot both move it). Its **digest** is the SHA-256 of a canonical form of
//! its ops, the revisions they were based on and its `apply_at`: an approval names the
//! digest it read, so an edit (new content, new digest) is covered by no earlier approval.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use graycast_protocol::gray::{GrayPatch, GrayRequest};
use graycast_protocol::rest::{PutRequest, RollbackRequest};
use graycast_protocol::Revision;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use std::sync::Arc;

use graycast_protocol::error::ErrorCode;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::policy::Authority;
use crate::schema::{Compiled, SchemaDocument, SCHEMAS_NAMESPACE};
use crate::store::{Mutation, Precondition, Store, StoreError, WriteRequest};

/// The reserved namespace holding change requests, by id.
pub const REQUESTS_NAMESPACE: &str = "graycast.requests";
/// Most ops of one request.
pub const MAX_OPS: usize = 100;

/// What an op does, named as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum OpKind {
    #[serde(rename = "put")]
    Put,
    #[serde(rename = "delete")]
    Delete,
    #[serde(rename = "rollback")]
    Rollback,
    #[serde(rename = "gray.start")]
    GrayStart,
    #[serde(rename = "gray.patch")]
    GrayPatch,
    #[serde(rename = "gray.promote")]
    GrayPromote,
    #[serde(rename = "gray.abort")]
    GrayAbort,
    #[serde(rename = "schema.put")]
    SchemaPut,
}

/// One proposed write: `body` is what the matching REST call takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpSpec {
    pub op: OpKind,
    pub namespace: String,
    /// The key; for `schema.put`, absent (the namespace's schemas).
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub body: Value,
}

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Open,
    Approved,
    Applied,
    Rejected,
    Cancelled,
    Stale,
}

impl State {
    /// Whether nothing can move the request any more.
    pub fn is_final(self) -> bool {
        matches!(self, State::Applied | State::Rejected | State::Cancelled)
    }
}

/// An approval of one digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    pub by: String,
    pub at: DateTime<Utc>,
    pub digest: String,
}

/// One step of a request's life: who moved it where, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Transition {
    /// `created`, `edited`, `approved`, `rejected`, `cancelled`, `applied`, `stale`,
    /// `rebased`.
    pub action: String,
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A change request, as stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangeRequest {
    pub id: String,
    /// SHA-256 (hex) of the canonical form of `ops`, `base_revisions` and `apply_at`.
    pub digest: String,
    pub state: State,
    /// The revision each written key was at when the request was made (0: absent), by
    /// `namespace/key` (`graycast.schemas/{ns}` for a schema).
    pub base_revisions: BTreeMap<String, Revision>,
    /// Approvals of the current digest.
    pub approvals: Vec<Approval>,
    /// Approvals it needs (the strictest policy of its namespaces; 0 when none governs).
    pub required: u64,
    /// Whether the author's approval counts.
    pub self_approval: bool,
    pub author: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub ops: Vec<OpSpec>,
    /// When the server applies it by itself once approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub transitions: Vec<Transition>,
    /// The revisions of the changes its apply made, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_revisions: Vec<Revision>,
    /// Why it went stale (the keys that moved), or why its apply stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ChangeRequest {
    /// The digest of some content.
    pub fn digest_of(
        ops: &[OpSpec],
        base_revisions: &BTreeMap<String, Revision>,
        apply_at: Option<DateTime<Utc>>,
    ) -> String {
        let content = serde_json::json!({
            "ops": ops,
            "base_revisions": base_revisions,
            "apply_at": apply_at,
        });
        let mut canonical = String::new();
        canonical_into(&content, &mut canonical);
        crate::auth::hex(&Sha256::digest(canonical.as_bytes()))
    }

    /// Records a transition.
    pub fn moved(&mut self, action: &str, by: &str, reason: Option<String>) {
        self.transitions.push(Transition {
            action: action.to_owned(),
            by: by.to_owned(),
            at: Utc::now(),
            reason,
        });
    }

    /// Distinct approvers of the current digest that count.
    pub fn counted_approvals(&self) -> usize {
        let mut by: Vec<&str> = self
            .approvals
            .iter()
            .filter(|a| a.digest == self.digest && (self.self_approval || a.by != self.author))
            .map(|a| a.by.as_str())
            .collect();
        by.sort_unstable();
        by.dedup();
        by.len()
    }
}

/// JSON with object members sorted by name, numbers and strings as serde_json writes them:
/// the same content always gives the same text.
fn canonical_into(value: &Value, out: &mut String) {
    match value {
        Value::Object(fields) => {
            let mut names: Vec<&String> = fields.keys().collect();
            names.sort();
            out.push('{');
            for (i, name) in names.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push(':');
                canonical_into(&fields[name], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_into(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The key an op writes: (namespace, key) in the store.
pub fn target(op: &OpSpec) -> (String, String) {
    match op.op {
        OpKind::SchemaPut => (SCHEMAS_NAMESPACE.to_owned(), op.namespace.clone()),
        _ => (op.namespace.clone(), op.key.clone()),
    }
}

/// The write an op makes, checked as its REST call checks its body.
pub fn mutation_of(op: &OpSpec, now: DateTime<Utc>) -> Result<Mutation, String> {
    let body = |what: &str| format!("the body of a {what} op");
    let parse =
        |what: &'static str| move |e: serde_json::Error| format!("the body of a {what} op: {e}");
    Ok(match op.op {
        OpKind::Put => {
            let put: PutRequest = serde_json::from_value(op.body.clone()).map_err(parse("put"))?;
            Mutation::Put { value: put.value }
        }
        OpKind::Delete => Mutation::Delete,
        OpKind::Rollback => {
            let rollback: RollbackRequest =
                serde_json::from_value(op.body.clone()).map_err(parse("rollback"))?;
            Mutation::Rollback { to_revision: rollback.to_revision }
        }
        OpKind::GrayStart => {
            let start: GrayRequest =
                serde_json::from_value(op.body.clone()).map_err(parse("gray.start"))?;
            let gray = start
                .into_gray(&op.namespace, &op.key, now)
                .map_err(|e| format!("{}: {e}", body("gray.start")))?;
            Mutation::GrayStart { gray: Box::new(gray) }
        }
        OpKind::GrayPatch => {
            let patch: GrayPatch =
                serde_json::from_value(op.body.clone()).map_err(parse("gray.patch"))?;
            Mutation::GrayPatch(patch)
        }
        OpKind::GrayPromote => Mutation::Promote,
        OpKind::GrayAbort => Mutation::Abort { started_at: None, note: None },
        OpKind::SchemaPut => {
            let document: SchemaDocument =
                serde_json::from_value(op.body.clone()).map_err(parse("schema.put"))?;
            Compiled::compile(&document).map_err(|e| format!("{}: {e}", body("schema.put")))?;
            Mutation::Put { value: serde_json::to_value(&document).map_err(|e| e.to_string())? }
        }
    })
}

/// A request as stored: its entry's revision (the precondition of its next transition)
/// and its content.
pub fn read(store: &Store, id: &str) -> Result<(Revision, ChangeRequest), ApiError> {
    let entry = store
        .get(REQUESTS_NAMESPACE, id)
        .ok_or_else(|| ApiError::NotFound(format!("change request {id} not found")))?;
    let request = serde_json::from_value(entry.value.clone())
        .map_err(|e| ApiError::Internal(format!("change request {id} is unreadable: {e}")))?;
    Ok((entry.revision, request))
}

/// The write of a request's next state, conditional on the state it was read at
/// (`None`: a new request).
pub fn saving(request: &ChangeRequest, at: Option<Revision>, actor: &str) -> WriteRequest {
    let mut write = WriteRequest::new(
        REQUESTS_NAMESPACE,
        request.id.clone(),
        Mutation::Put { value: serde_json::to_value(request).unwrap_or_default() },
        actor,
    );
    write.precondition = at.map_or(Precondition::Absent, Precondition::Revision);
    write.comment = request.transitions.last().map(|t| format!("change request {}", t.action));
    write.authority = Authority::System;
    write
}

/// The keys of a request whose revision moved since it was based on them, with what they
/// hold now.
pub fn moved(store: &Store, request: &ChangeRequest) -> Vec<Value> {
    request
        .base_revisions
        .iter()
        .filter_map(|(slot, base)| {
            let (namespace, key) = slot.split_once('/')?;
            let current = store.get(namespace, key);
            let now = current.as_ref().map_or(0, |e| e.revision);
            (now != *base).then(|| {
                serde_json::json!({
                    "namespace": namespace, "key": key, "base_revision": base,
                    "revision": now, "entry": current.as_deref(),
                })
            })
        })
        .collect()
}

/// Applies an approved request: every op, each conditional on the revision the request
/// was based on, and the request's move to `applied`, in one commit on one node. A key
/// that moved makes the request `stale` (409 `stale_change_request` with the keys' current
/// state) and applies nothing. In a cluster the request is claimed first (its move to
/// `applied`, conditional on its revision, so exactly one node or caller applies it),
/// then its ops are made one after the other.
pub async fn apply(store: &Store, id: &str, by: &str) -> Result<ChangeRequest, ApiError> {
    let (at, mut request) = read(store, id)?;
    if request.state != State::Approved {
        return Err(ApiError::Coded(
            ErrorCode::Conflict,
            format!("change request {id} is {:?}, not approved", request.state).to_lowercase(),
        ));
    }
    let moved_keys = moved(store, &request);
    if !moved_keys.is_empty() {
        return Err(go_stale(store, at, request, by, moved_keys).await);
    }
    let mut writes = Vec::with_capacity(request.ops.len() + 1);
    let mut seen = std::collections::BTreeSet::new();
    for op in &request.ops {
        let (namespace, key) = target(op);
        let mutation = mutation_of(op, Utc::now()).map_err(ApiError::InvalidValue)?;
        let mut write =
            WriteRequest::new(namespace.clone(), key.clone(), mutation, &request.author);
        let slot = format!("{namespace}/{key}");
        // The first write of a key requires the revision the request was based on.
        if seen.insert(slot.clone()) {
            let base = request.base_revisions.get(&slot).copied().unwrap_or(0);
            write.precondition =
                if base == 0 { Precondition::Absent } else { Precondition::Revision(base) };
        }
        write.comment = request.comment.clone();
        write.authority = Authority::Approved { request: id.to_owned() };
        writes.push(write);
    }
    request.state = State::Applied;
    request.moved("applied", by, None);
    let made = if store.clustered() {
        store.write(saving(&request, Some(at), by)).await?;
        store.write_group(writes).await
    } else {
        writes.push(saving(&request, Some(at), by));
        store.write_group(writes).await
    };
    match made {
        Ok(changes) => {
            request.applied_revisions = changes
                .iter()
                .filter(|c| c.namespace != REQUESTS_NAMESPACE)
                .map(|c| c.revision)
                .collect();
            Ok(request)
        }
        Err(
            err @ (StoreError::RevisionMismatch { .. }
            | StoreError::AlreadyExists { .. }
            | StoreError::Missing { .. }),
        ) if !store.clustered() => {
            // A key moved between the check and the commit, or someone else moved the
            // request itself (another apply): only the first goes stale.
            let (at, request) = read(store, id)?;
            let moved_keys = moved(store, &request);
            if request.state != State::Approved || moved_keys.is_empty() {
                return Err(ApiError::Coded(
                    ErrorCode::Conflict,
                    format!("change request {id} moved meanwhile ({err}); read it again"),
                ));
            }
            tracing::info!(id, error = %err, "a change request went stale at its apply");
            Err(go_stale(store, at, request, by, moved_keys).await)
        }
        Err(err) if store.clustered() => {
            // Claimed already: say what stopped it, as its reason.
            if let Ok((at, mut request)) = read(store, id) {
                request.state = State::Stale;
                request.reason = Some(format!("the apply stopped: {err}"));
                request.moved("stale", by, request.reason.clone());
                let _ = store.write(saving(&request, Some(at), by)).await;
            }
            Err(err.into())
        }
        Err(err) => Err(err.into()),
    }
}

/// Marks a request stale (the keys it was based on moved) and answers why.
async fn go_stale(
    store: &Store,
    at: Revision,
    mut request: ChangeRequest,
    by: &str,
    moved_keys: Vec<Value>,
) -> ApiError {
    let names: Vec<String> = moved_keys
        .iter()
        .map(|m| {
            format!(
                "{}/{} ({} → {})",
                m["namespace"].as_str().unwrap_or(""),
                m["key"].as_str().unwrap_or(""),
                m["base_revision"],
                m["revision"]
            )
        })
        .collect();
    let reason = format!("keys moved since the request was made: {}", names.join(", "));
    request.state = State::Stale;
    request.reason = Some(reason.clone());
    request.moved("stale", by, Some(reason.clone()));
    if let Err(err) = store.write(saving(&request, Some(at), by)).await {
        tracing::warn!(id = %request.id, error = %err, "cannot mark a change request stale");
    }
    ApiError::Detailed(
        ErrorCode::StaleChangeRequest,
        format!(
            "change request {} is stale, nothing was applied: {reason}; rebase it (POST \
             /v1/change-requests/{}/rebase) and have it approved again",
            request.id, request.id
        ),
        serde_json::json!({ "current": moved_keys }),
    )
}

/// Applies approved requests whose `apply_at` has come, while this node leads (the claim
/// of each is conditional, so a node that just lost the lead applies none twice).
pub async fn run_schedule(store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
    let mut leadership = store.leadership();
    loop {
        if *leadership.borrow_and_update() {
            let (_, entries) = store.snapshot(&[REQUESTS_NAMESPACE.to_owned()]);
            let now = Utc::now();
            for entry in entries {
                let Ok(request) = serde_json::from_value::<ChangeRequest>(entry.value.clone())
                else {
                    continue;
                };
                if request.state == State::Approved && request.apply_at.is_some_and(|at| at <= now)
                {
                    match apply(&store, &request.id, "scheduler").await {
                        Ok(_) => {
                            tracing::info!(id = %request.id, "applied a scheduled change request")
                        }
                        Err(err) => {
                            tracing::warn!(id = %request.id, error = %err, "a scheduled change request was not applied")
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(SCHEDULE_TICK) => {}
        }
    }
}

/// How often the schedule is looked at: a request fires within this of its time.
const SCHEDULE_TICK: std::time::Duration = std::time::Duration::from_millis(250);
