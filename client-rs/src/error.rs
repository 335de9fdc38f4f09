//! The SDK's error type, split into temporary and permanent failures.

/// What an SDK call can fail with.
///
/// [`Error::is_temporary`] tells whether retrying later may succeed (the server is
/// unreachable, overloaded or restarting); meanwhile the client keeps serving its cache.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error body.
    #[error("server refused ({status} {code}): {message}")]
    Server { status: u16, code: String, message: String },
    /// The server could not be reached or the connection broke.
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// A value is not of the type asked for.
    #[error("value of {namespace}/{key} does not decode as the requested type: {message}")]
    Decode { namespace: String, key: String, message: String },
    /// A wait ran out of time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// A namespace or key name breaks the naming rule; nothing was sent.
    #[error("invalid name {name:?}: {message}")]
    InvalidName { name: String, message: String },
    /// The client was built with a setting that cannot work.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The server sent something that is not the graycast protocol.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl Error {
    /// Whether the same call may succeed later without any change on the caller's side.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Transport(_) | Error::Timeout(_) => true,
            Error::Server { status, .. } => *status == 429 || *status == 503 || *status >= 500,
            Error::Decode { .. }
            | Error::InvalidName { .. }
            | Error::Config(_)
            | Error::Protocol(_) => false,
        }
    }

    /// The server's error code (`revision_mismatch`, `not_found`, ...), if the server refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(err: reqwest::Error) -> Self {
        if err.is_decode() {
            Error::Protocol(err.to_string())
        } else {
            Error::Transport(err.to_string())
        }
    }
}
