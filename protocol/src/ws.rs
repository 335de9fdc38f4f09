//! Messages of the WebSocket push protocol at `/v1/watch` (text frames, JSON).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Entry, Op, Revision};

/// The namespace list `["*"]` subscribes to every namespace, including ones created later
/// (for consoles and tools). It cannot be mixed with names.
pub const ALL_NAMESPACES: &str = "*";

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Start receiving the namespaces' state and changes. `since` asks for a
    /// replay of every change after that revision instead of a snapshot.
    Subscribe {
        /// The namespaces to follow (at most 256), or [`ALL_NAMESPACES`] alone.
        namespaces: Vec<String>,
        /// The last revision the client has applied; absent for a first connection,
        /// which starts from a snapshot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Revision>,
        /// Who the client is; absent: a fresh UUID and no labels.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<ClientHello>,
    },
    /// Presents an access token, before `subscribe`, when it was not given on the upgrade.
    Auth {
        /// The token's secret, as it would be given in `Authorization: Bearer`.
        token: String,
    },
    /// The client has applied everything up to `revision`.
    Ack {
        /// The highest revision applied; the server records no more than it has sent.
        revision: Revision,
    },
    /// Outcomes the client saw with a variant of a key, for the gray release's guard.
    Report {
        /// The key's namespace.
        namespace: String,
        /// The key whose gray release the outcomes are for.
        key: String,
        /// The variant the outcomes were seen with.
        variant: crate::rollout::Variant,
        /// Outcomes that went well; 0 when absent. `ok + errors` is 1 to 10,000 a report.
        #[serde(default)]
        ok: u64,
        /// Outcomes that failed; 0 when absent.
        #[serde(default)]
        errors: u64,
        /// The `started_at` of the release the outcomes belong to, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// The client's application rejected a pushed value (it does not parse, or fails the
    /// application's own checks). Listed per key and revision in `GET /v1/clients`; while
    /// a gray release runs, an error of its variant for the guard.
    Nack(Nack),
}

/// A value a client's application rejected (the `nack` message, or `POST /v1/nacks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Nack {
    /// The key's namespace.
    pub namespace: String,
    /// The key whose value was rejected.
    pub key: String,
    /// The revision of the entry whose value was rejected.
    #[serde(deserialize_with = "crate::value::integer")]
    pub revision: Revision,
    /// Why, in the application's words (at most 1,024 bytes).
    pub error: String,
    /// Which of the key's values was rejected; the gray value while a release runs, when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<crate::rollout::Variant>,
    /// The rejecting client's id (`POST /v1/nacks` only: a subscriber is known already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// Who a subscribing client is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientHello {
    /// A stable id of the client instance; a fresh UUID when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Free-form labels shown in `GET /v1/clients` (such as `region`); at most 64, keys
    /// and values at most 256 bytes.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A message from the server to a client.
///
/// Decoded through a flat envelope rather than serde's internally tagged enums: those
/// buffer the message first, and with serde_json's `arbitrary_precision` (which keeps the
/// digits of every number) a buffered float no longer decodes as `f64`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The full state of the subscribed namespaces as of `revision`.
    Snapshot {
        /// The revision the state is taken at; changes that follow have greater ones.
        revision: Revision,
        /// The namespaces covered, sorted; `["*"]` for every namespace the client may read.
        namespaces: Vec<String>,
        /// Every entry of those namespaces as of `revision`.
        entries: Vec<Entry>,
    },
    /// One change; `entry` is the entry after the change, `null` after a delete.
    Change {
        /// The revision of the change.
        revision: Revision,
        /// What the change did.
        op: Op,
        /// The namespace of the changed key.
        namespace: String,
        /// The changed key.
        key: String,
        /// The entry after the change; `null` after a delete.
        entry: Option<Box<Entry>>,
        /// The author's comment, when one was given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        /// Why the server made the change itself (a ramp step, a guard abort).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Nothing in the subscribed namespaces changed up to `revision`.
    Progress {
        /// Every change of the subscribed namespaces up to this revision has been sent.
        revision: Revision,
    },
    /// The server refuses something; a close frame follows.
    Error {
        /// A snake_case code from the REST error table, such as `forbidden`.
        code: String,
        /// A human-readable explanation naming the offending value.
        message: String,
    },
}

/// Every field any server message may carry, decoded in one pass.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    revision: Option<Revision>,
    namespaces: Option<Vec<String>>,
    entries: Option<Vec<Entry>>,
    op: Option<Op>,
    namespace: Option<String>,
    key: Option<String>,
    entry: Option<Box<Entry>>,
    code: Option<String>,
    message: Option<String>,
    comment: Option<String>,
    note: Option<String>,
}

impl<'de> Deserialize<'de> for ServerMessage {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let e = Envelope::deserialize(deserializer)?;
        let kind = e.kind.as_str();
        let missing =
            |field: &'static str| D::Error::custom(format!("{kind} message without {field}"));
        Ok(match kind {
            "snapshot" => ServerMessage::Snapshot {
                revision: e.revision.ok_or_else(|| missing("revision"))?,
                namespaces: e.namespaces.ok_or_else(|| missing("namespaces"))?,
                entries: e.entries.ok_or_else(|| missing("entries"))?,
            },
            "change" => ServerMessage::Change {
                revision: e.revision.ok_or_else(|| missing("revision"))?,
                op: e.op.ok_or_else(|| missing("op"))?,
                namespace: e.namespace.ok_or_else(|| missing("namespace"))?,
                key: e.key.ok_or_else(|| missing("key"))?,
                // `null` after a delete.
                entry: e.entry,
                comment: e.comment,
                note: e.note,
            },
            "progress" => {
                ServerMessage::Progress { revision: e.revision.ok_or_else(|| missing("revision"))? }
            }
            "error" => ServerMessage::Error {
                code: e.code.ok_or_else(|| missing("code"))?,
                message: e.message.ok_or_else(|| missing("message"))?,
            },
            other => {
                return Err(D::Error::unknown_variant(
                    other,
                    &["snapshot", "change", "progress", "error"],
                ))
            }
        })
    }
}

impl ServerMessage {
    /// The revision the message brings the client to, if it carries one.
    pub fn revision(&self) -> Option<Revision> {
        match self {
            ServerMessage::Snapshot { revision, .. }
            | ServerMessage::Change { revision, .. }
            | ServerMessage::Progress { revision } => Some(*revision),
            ServerMessage::Error { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_parses_with_and_without_options() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"subscribe","namespaces":["a"]}"#).expect("minimal");
        assert_eq!(
            m,
            ClientMessage::Subscribe { namespaces: vec!["a".into()], since: None, client: None }
        );
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"subscribe","namespaces":["a"],"since":41,"client":{"id":"c1","labels":{"region":"eu"}}}"#,
        )
        .expect("full");
        let ClientMessage::Subscribe { since, client, .. } = m else { panic!("not a subscribe") };
        assert_eq!(since, Some(41));
        assert_eq!(client.and_then(|c| c.labels.get("region").cloned()), Some("eu".into()));
    }

    #[test]
    fn unknown_messages_are_refused() {
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"subscribe"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"shout"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"ack","revision":-1}"#).is_err());
    }

    #[test]
    fn server_messages_round_trip_with_floats_big_integers_and_key_order() {
        let text = r#"{"type":"snapshot","revision":7,"namespaces":["ns"],"entries":[{"namespace":"ns","key":"k","value":{"z":123456789012345678901234567890,"a":0.1},"revision":7,"created_revision":1,"version":2,"updated_at":"2026-11-25T12:00:00Z","updated_by":"t","gray":{"value":2.5,"percent":12.5,"salt":"ns/k","started_at":"2026-11-25T12:00:00Z","guard":{"max_error_rate":0.05,"min_samples":10}}}]}"#;
        let message: ServerMessage = serde_json::from_str(text).expect("decodes");
        let ServerMessage::Snapshot { entries, .. } = &message else { panic!("a snapshot") };
        assert_eq!(entries[0].gray.as_ref().map(|g| g.percent), Some(12.5));
        let again = serde_json::to_value(&message).expect("encodes");
        assert_eq!(
            again["entries"][0]["value"].to_string(),
            r#"{"z":123456789012345678901234567890,"a":0.1}"#
        );
        let delete: ServerMessage = serde_json::from_str(
            r#"{"type":"change","revision":3,"op":"delete","namespace":"ns","key":"k","entry":null}"#,
        )
        .expect("decodes");
        assert!(matches!(delete, ServerMessage::Change { entry: None, .. }));
        assert!(serde_json::from_str::<ServerMessage>(r#"{"type":"change","revision":3}"#).is_err());
        assert!(serde_json::from_str::<ServerMessage>(r#"{"type":"shout"}"#).is_err());
    }

    #[test]
    fn change_shape() {
        let m = ServerMessage::Change {
            revision: 3,
            op: Op::Delete,
            namespace: "ns".into(),
            key: "k".into(),
            entry: None,
            comment: None,
            note: None,
        };
        let v = serde_json::to_value(&m).expect("serializes");
        assert_eq!(
            v,
            serde_json::json!({"type":"change","revision":3,"op":"delete","namespace":"ns","key":"k","entry":null})
        );
    }
}
