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
        namespaces: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Revision>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<ClientHello>,
    },
    /// Presents an access token, before `subscribe`, when it was not given on the upgrade.
    Auth { token: String },
    /// The client has applied everything up to `revision`.
    Ack { revision: Revision },
    /// Outcomes the client saw with a variant of a key, for the gray release's guard.
    Report {
        namespace: String,
        key: String,
        variant: crate::rollout::Variant,
        #[serde(default)]
        ok: u64,
        #[serde(default)]
        errors: u64,
        /// The `started_at` of the release the outcomes belong to, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        release: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// Who a subscribing client is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientHello {
    /// A stable id of the client instance; a fresh UUID when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The full state of the subscribed namespaces as of `revision`.
    Snapshot { revision: Revision, namespaces: Vec<String>, entries: Vec<Entry> },
    /// One change; `entry` is the entry after the change, `null` after a delete.
    Change { revision: Revision, op: Op, namespace: String, key: String, entry: Option<Box<Entry>> },
    /// Nothing in the subscribed namespaces changed up to `revision`.
    Progress { revision: Revision },
    /// The server refuses something; a close frame follows.
    Error { code: String, message: String },
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
    fn change_shape() {
        let m = ServerMessage::Change {
            revision: 3,
            op: Op::Delete,
            namespace: "ns".into(),
            key: "k".into(),
            entry: None,
        };
        let v = serde_json::to_value(&m).expect("serializes");
        assert_eq!(
            v,
            serde_json::json!({"type":"change","revision":3,"op":"delete","namespace":"ns","key":"k","entry":null})
        );
    }
}
