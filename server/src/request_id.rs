//! A request id for every REST request: the client's `X-Request-Id` when it sends a
//! usable one (so a proxy's id carries through), else a new one. The id is a field of the
//! request's tracing span (so every log line the request causes names it), the
//! `X-Request-Id` header of the answer, and the `request_id` of an error body: a user
//! quoting an error hands the operator the key to its logs.

use std::sync::Arc;

use actix_web::http::header::HeaderName;

/// The header read and answered.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest id taken from a client.
const MAX_LEN: usize = 128;

tokio::task_local! {
    pub(crate) static CURRENT: Arc<str>;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(|id| id.to_string()).ok()
}

/// Whether a client's id can be taken as it is: printable ASCII without spaces, so it
/// stays one token in logs and headers.
pub(crate) fn usable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

pub(crate) fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_printable_single_tokens_are_taken() {
        assert!(usable("abc-123_X.y"));
        assert!(!usable(""));
        assert!(!usable("two words"));
        assert!(!usable("line\nbreak"));
        assert!(!usable(&"x".repeat(MAX_LEN + 1)));
        assert_eq!(new_id().len(), 16);
    }
}
