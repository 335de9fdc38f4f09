//! Request and response bodies of the REST API (`/v1/...`) and the error body.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{Entry, HistoryItem, Revision};

/// Body of `PUT /v1/configs/{ns}/{key}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRequest {
    /// The new value: any JSON value, `null` included. The field is required.
    pub value: Value,
    /// Why, in the author's words (at most 1 KiB); kept in history and the audit feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Body of `POST /v1/configs/{ns}/{key}/rollback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The revision whose value to restore: a change of this key still in its history,
    /// other than a delete.
    #[serde(deserialize_with = "crate::value::integer")]
    pub to_revision: Revision,
    /// Why, in the author's words (at most 1 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Answer of `DELETE /v1/configs/{ns}/{key}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeleteResponse {
    /// The revision of the delete.
    pub revision: Revision,
}

/// One namespace in `GET /v1/namespaces`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NamespaceSummary {
    /// The namespace's name.
    pub name: String,
    /// Number of keys in the namespace (0 for a namespace that is only described).
    pub keys: u64,
    /// What the namespace is for, as set with `PUT /v1/namespaces/{ns}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Body of `PUT /v1/namespaces/{ns}`: describes a namespace (an empty description removes
/// it). Stored in the reserved namespace `graycast.meta`, one entry per namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceDescription {
    /// At most 1 KiB.
    pub description: String,
    /// Why, in the author's words (at most 1 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Answer of `PUT /v1/namespaces/{ns}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NamespaceDescribed {
    /// The namespace described.
    pub name: String,
    /// `null` once removed.
    pub description: Option<String>,
    /// The revision of the change (the current revision when nothing changed).
    pub revision: Revision,
}

/// Answer of `GET /v1/whoami`: who the presented token is and what it may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// The token's name; `anonymous` on an open server.
    pub name: String,
    /// `admin`, `write`, `report` or `read` (`admin` on an open server).
    pub role: String,
    /// The namespace glob patterns the token may use (`*` matches any run of characters,
    /// `?` one); `["*"]` for an admin.
    pub namespaces: Vec<String>,
}

/// One change in `GET /v1/changes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangeItem {
    /// The revision of the change.
    pub revision: Revision,
    /// What the change did.
    pub op: crate::Op,
    /// The namespace of the changed key.
    pub namespace: String,
    /// The changed key.
    pub key: String,
    /// Who made the change, as in [`Entry::updated_by`].
    pub updated_by: String,
    /// When the change was committed, by the clock of the server that committed it.
    pub updated_at: DateTime<Utc>,
    /// The author's comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// Why the server made the change itself (a ramp step, a guard abort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The peer address of the request that made it; `null` for the server's own changes.
    #[serde(default)]
    pub remote: Option<String>,
}

/// Answer of `GET /v1/changes`: changes in revision order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangeList {
    /// At most `limit` changes after `since` that the caller may read, oldest first.
    pub items: Vec<ChangeItem>,
    /// The `since` of the next page; `null` when these reach the current revision.
    #[serde(default)]
    pub next: Option<Revision>,
}

/// Answer of `GET /v1/namespaces`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NamespaceList {
    /// The store revision the list was read at.
    pub revision: Revision,
    /// Every namespace holding a key or a description, sorted by name.
    pub namespaces: Vec<NamespaceSummary>,
}

/// Answer of `GET /v1/configs/{ns}`: one page of a namespace's entries, by key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigList {
    /// The namespace listed.
    pub namespace: String,
    /// The revision this page is consistent at (pages may be of different revisions).
    pub revision: Revision,
    /// At most `limit` entries after the `after` cursor, sorted by key.
    pub entries: Vec<Entry>,
    /// The `after` cursor of the next page; `null` on the last page.
    #[serde(default)]
    pub next: Option<String>,
}

/// Answer of `GET /v1/configs/{ns}/{key}/history`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryList {
    /// At most `limit` items older than `before`, newest first.
    pub items: Vec<HistoryItem>,
    /// The `before` of the next (older) page; `null` when there is none.
    #[serde(default)]
    pub next: Option<Revision>,
}

/// One connected subscriber in `GET /v1/clients`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClientSummary {
    /// The id the client gave in its `subscribe`, or the fresh UUID the server gave it.
    pub id: String,
    /// The namespaces it subscribed to, sorted; `["*"]` for every namespace it may read.
    pub namespaces: Vec<String>,
    /// The highest revision the client acknowledged as applied.
    pub applied_revision: Revision,
    /// The labels the client declared in its `subscribe` (such as `region`).
    pub labels: BTreeMap<String, String>,
    /// The peer address of the connection.
    pub remote: String,
    /// When the client subscribed, by this server's clock.
    pub connected_at: DateTime<Utc>,
}

/// Answer of `GET /v1/clients`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClientList {
    /// The subscribers connected to the answering server, in the order they subscribed.
    pub clients: Vec<ClientSummary>,
    /// Values clients rejected (`nack`), per key: the newest revision rejected.
    #[serde(default)]
    pub rejections: Vec<Rejection>,
}

/// How many clients rejected a key's value at a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rejection {
    /// The key's namespace.
    pub namespace: String,
    /// The key whose value was rejected.
    pub key: String,
    /// The revision rejected (the newest one any client rejected).
    pub revision: Revision,
    /// Distinct clients that rejected it (counted up to 10,000).
    pub clients: u64,
    /// The last rejection's reason.
    pub error: String,
}

/// The body of every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What was refused, and why.
    pub error: ErrorDetail,
}

/// The code and message of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code, such as `revision_mismatch`.
    pub code: String,
    /// A human-readable explanation naming the offending value.
    pub message: String,
    /// The id of the request (its `X-Request-Id`), which the server's logs carry too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What exactly was refused, for errors that list it: the values a JSON Schema refuses
    /// (`[{"key", "variant", "path", "keyword", "message"}]`), or the live values a new
    /// schema would break (`{"count", "violations"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_request_requires_value() {
        assert!(serde_json::from_str::<PutRequest>("{}").is_err());
        assert!(serde_json::from_str::<PutRequest>(r#"{"valeu": 1}"#).is_err());
        let null: PutRequest = serde_json::from_str(r#"{"value": null}"#).expect("null is a value");
        assert_eq!(null.value, Value::Null);
    }
}

/// Answer of `GET /v1/export`, and body of `POST /v1/import`: every entry of every
/// namespace (running gray releases and namespace descriptions included) as of `revision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportDocument {
    /// The document's format: [`EXPORT_FORMAT`]. An import refuses another; a document
    /// without one (written before formats were numbered) is format 1.
    #[serde(default = "first_format")]
    pub format: u32,
    /// The revision the document is consistent at.
    pub revision: Revision,
    /// Every entry, by namespace and key.
    pub entries: Vec<Entry>,
}

/// The format of the export documents this version writes and reads.
pub const EXPORT_FORMAT: u32 = 1;

fn first_format() -> u32 {
    1
}

/// A key named in an import's report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub struct KeyRef {
    /// The namespace of the key.
    pub namespace: String,
    /// The key.
    pub key: String,
}

/// Answer of `POST /v1/import`: what the import changed (or, with `dry_run`, would change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    /// Whether nothing was written.
    pub dry_run: bool,
    /// The store's revision after the import (before it, for a dry run).
    pub revision: Revision,
    /// Keys the server did not have.
    pub added: Vec<KeyRef>,
    /// Keys whose value or gray release differed.
    pub changed: Vec<KeyRef>,
    /// Keys already as in the document.
    pub unchanged: Vec<KeyRef>,
    /// Keys the document does not have, deleted with `prune` (empty without it).
    pub removed: Vec<KeyRef>,
}
