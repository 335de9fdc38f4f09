//! The SDK's error type, split into temporary and permanent failures.

use graycast_protocol::ErrorCode;

/// What an SDK call can fail with.
///
/// [`Error::is_temporary`] tells whether retrying later may succeed (the server is
/// unreachable, overloaded or restarting); meanwhile the client keeps serving its cache.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error body: its HTTP status, its error code
    /// (`unauthorized`, `not_found`, ...) and its message.
    #[error("server refused ({status} {code}): {message}")]
    Server {
        /// The HTTP status (for a refusal sent on the WebSocket, the status its code
        /// stands for: 401 for `unauthorized`, ...).
        status: u16,
        /// The stable error code.
        code: String,
        /// What the server said.
        message: String,
    },
    /// The server could not be reached or the connection broke.
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// A value is not of the type asked for.
    #[error("value of {namespace}/{key} does not decode as the requested type: {message}")]
    Decode {
        /// The namespace of the key.
        namespace: String,
        /// The key.
        key: String,
        /// What serde said.
        message: String,
    },
    /// A cache read named a namespace the client does not subscribe to: its keys are
    /// never in the cache (add it with `ClientBuilder::namespace`, or read it from the
    /// server with `Client::fetch`).
    #[error("namespace {namespace:?} is not subscribed by this client, so it is not in the cache; subscribe with ClientBuilder::namespace({namespace:?})")]
    NotSubscribed {
        /// The namespace asked for.
        namespace: String,
    },
    /// A wait ran out of time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// A namespace or key name breaks the naming rule; nothing was sent.
    #[error("invalid name {name:?}: {message}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Which rule it breaks.
        message: String,
    },
    /// The client was built with a setting that cannot work.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The server sent something that is not the graycast protocol.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// The server's TLS certificate is not trusted (or TLS failed otherwise): retrying
    /// will not help; trust its CA (`ca_file`) or fix the certificate.
    #[error("TLS failed: {0}")]
    Tls(String),
}

impl Error {
    /// Whether the same call may succeed later without any change on the caller's side.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Transport(_) | Error::Timeout(_) => true,
            Error::Server { status, code, .. } => match ErrorCode::from_name(code) {
                Some(code) => code.retryable(),
                None => *status == 429 || *status >= 500,
            },
            Error::Decode { .. }
            | Error::NotSubscribed { .. }
            | Error::InvalidName { .. }
            | Error::Config(_)
            | Error::Protocol(_)
            | Error::Tls(_) => false,
        }
    }

    /// The server's error code (`revision_mismatch`, `not_found`, ...), if the server refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status of the server's refusal (401, 403, 404, ...), if it refused.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Server { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(err: reqwest::Error) -> Self {
        let described = describe(&err);
        if err.is_decode() {
            Error::Protocol(described)
        } else if is_tls_failure(&described) {
            Error::Tls(described)
        } else {
            Error::Transport(described)
        }
    }
}

/// An error with its causes, `outer: inner: innermost`, so that "connection refused" or
/// "invalid peer certificate" is not hidden behind "error sending request".
/// The error a server's refusal stands for: its JSON error body when it has one, else
/// the `code` and `message` that `otherwise` makes of the answer.
pub(crate) fn from_answer(
    status: u16,
    body: &[u8],
    otherwise: impl FnOnce() -> (&'static str, String),
) -> Error {
    match serde_json::from_slice::<graycast_protocol::ErrorBody>(body) {
        Ok(body) => Error::Server { status, code: body.error.code, message: body.error.message },
        Err(_) => {
            let (code, message) = otherwise();
            Error::Server { status, code: code.into(), message }
        }
    }
}

pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether a failure's description says TLS refused the connection.
pub(crate) fn is_tls_failure(described: &str) -> bool {
    described.contains("certificate") || described.contains("TLS") || described.contains("tls:")
}

/// The HTTP status an error code of the protocol stands for (for errors that arrive as a
/// WebSocket `error` message rather than an HTTP answer), from the protocol's one error
/// table; 500 for a code the table does not know.
pub(crate) fn status_of(code: &str) -> u16 {
    ErrorCode::from_name(code).map_or(500, ErrorCode::status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code of the table, from the SDK's side: an answer with its status and JSON
    /// body, and the same code on the WebSocket, read as that code and status, temporary
    /// exactly when the table says the request may be retried.
    #[test]
    fn every_code_of_the_table_reads_back() {
        for kind in graycast_protocol::ERRORS {
            let body = serde_json::json!({"error": {"code": kind.name, "message": "m"}});
            let from_http = from_answer(kind.status, body.to_string().as_bytes(), || {
                unreachable!("the body is the error shape")
            });
            assert_eq!(from_http.code(), Some(kind.name));
            assert_eq!(from_http.status(), Some(kind.status));
            assert_eq!(from_http.is_temporary(), kind.retryable, "{}", kind.name);
            assert_eq!(status_of(kind.name), kind.status, "{}", kind.name);
        }
        assert_eq!(status_of("no_such_code"), 500);
    }
}
