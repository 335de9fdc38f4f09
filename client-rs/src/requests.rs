//! Change requests: the writes a namespace under a policy takes only once someone
//! else approved them. Requests are JSON as the server answers them.

use reqwest::Method;
use serde_json::{json, Value};

use crate::{Client, Error};

impl Client {
    /// Opens a change request of `ops` (`[{"op", "namespace", "key", "body"}]`, `body` what
    /// the matching REST call takes), applied by the server at `apply_at` once approved.
    pub async fn create_change_request(
        &self,
        ops: &Value,
        apply_at: Option<&str>,
    ) -> Result<Value, Error> {
        let body = json!({ "ops": ops, "comment": self.comment.as_deref(), "apply_at": apply_at });
        self.call_ok(Method::POST, "/v1/change-requests", |r| r.json(&body)).await
    }

    /// The change requests the token may read, newest first; only those in `state` if given.
    pub async fn change_requests(&self, state: Option<&str>) -> Result<Value, Error> {
        let query: Vec<(&str, &str)> = state.map(|s| ("state", s)).into_iter().collect();
        self.call_ok(Method::GET, "/v1/change-requests", |r| r.query(&query)).await
    }

    /// One change request.
    pub async fn change_request(&self, id: &str) -> Result<Value, Error> {
        self.call_ok(Method::GET, &format!("/v1/change-requests/{}", encode(id)), |r| r).await
    }

    /// `approve` (with the `digest` read), `reject`, `cancel`, `rebase` or `apply` a request.
    pub async fn act_on_change_request(
        &self,
        id: &str,
        action: &str,
        digest: Option<&str>,
        reason: Option<&str>,
    ) -> Result<Value, Error> {
        let body = json!({ "digest": digest, "reason": reason });
        let path = format!("/v1/change-requests/{}/{action}", encode(id));
        self.call_ok(Method::POST, &path, |r| r.json(&body)).await
    }
}

/// A request id in a path: ids are UUIDs, anything else is sent escaped.
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
