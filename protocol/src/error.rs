//! The one table of error codes: each code's HTTP status, the WebSocket close
//! code a session ends with when it refuses for that reason, and whether the same request
//! may succeed later unchanged.
//!
//! The server answers from this table, the Rust SDK reads statuses and retry advice from
//! it, and `testdata/errors.json` is the same table for the JavaScript SDK (a test keeps
//! the file and the table equal).

use std::fmt;

/// WebSocket close codes (RFC 6455 §7.4.1) the server sends.
pub mod close {
    /// The session ended normally.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame broke the protocol.
    pub const PROTOCOL: u16 = 1002;
    /// A binary frame: only JSON text is spoken.
    pub const UNSUPPORTED: u16 = 1003;
    /// A text frame or a close reason that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message the server refuses (bad JSON, no access, no subscribe in time).
    pub const POLICY: u16 = 1008;
    /// A message over the inbound limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server could not serve the subscription (a store failure).
    pub const INTERNAL: u16 = 1011;
    /// The server cannot serve now; try again later.
    pub const TRY_AGAIN_LATER: u16 = 1013;

    /// Whether a peer may send `code` in a close frame (RFC 6455 §7.4: the defined codes
    /// other than 1004, 1005, 1006 and 1015, which never travel on the wire, IANA's
    /// registered 1012–1014, and the 3000–4999 range of libraries and applications).
    pub fn is_valid(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// A stable error code of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A namespace or key name breaks the naming rule.
    InvalidName,
    /// A request body or message that is not JSON, or not the expected shape.
    InvalidJson,
    /// A request the server cannot take as sent (a bad query, header or message).
    BadRequest,
    /// Well-formed input whose value is refused (limits, gray release rules).
    InvalidValue,
    /// A value refused by its namespace's JSON Schema.
    SchemaViolation,
    /// The same `Idempotency-Key` came with another request body.
    IdempotencyKeyReused,
    /// No such namespace, key, release or route.
    NotFound,
    /// A precondition (`If-Match`, `If-None-Match`) does not hold.
    RevisionMismatch,
    /// A body or value over its size limit.
    PayloadTooLarge,
    /// No valid access token.
    Unauthorized,
    /// The token may not do this.
    Forbidden,
    /// The namespace's policy requires an approved change request.
    ApprovalRequired,
    /// Too many requests.
    RateLimited,
    /// The method is not served on this path.
    MethodNotAllowed,
    /// The request did not arrive in time.
    RequestTimeout,
    /// The request conflicts with the current state.
    Conflict,
    /// A change request's base revisions moved since it was made.
    StaleChangeRequest,
    /// The body is not JSON.
    UnsupportedMediaType,
    /// The store's quota is reached.
    QuotaExceeded,
    /// The store cannot take the request now; nothing changed.
    Unavailable,
    /// The write may or may not have taken effect: retry only with the same
    /// `Idempotency-Key`.
    OutcomeUnknown,
    /// The server failed.
    Internal,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorKind {
    /// The code.
    pub code: ErrorCode,
    /// Its snake_case name on the wire.
    pub name: &'static str,
    /// The HTTP status answered with it.
    pub status: u16,
    /// The WebSocket close code a session refusing for this reason ends with.
    pub close: u16,
    /// Whether the same request may succeed later unchanged (after a wait, or on another
    /// node; for `outcome_unknown` only with the same `Idempotency-Key`).
    pub retryable: bool,
}

const fn row(
    code: ErrorCode,
    name: &'static str,
    status: u16,
    close: u16,
    retryable: bool,
) -> ErrorKind {
    ErrorKind { code, name, status, close, retryable }
}

use close::{INTERNAL, POLICY, TOO_BIG, TRY_AGAIN_LATER};

/// Every code, in the order the docs list them. `schema_violation` is 422 on a write and
/// 409 on a schema change that live values break; the table holds the write's status.
pub const ERRORS: &[ErrorKind] = &[
    row(ErrorCode::InvalidName, "invalid_name", 400, POLICY, false),
    row(ErrorCode::InvalidJson, "invalid_json", 400, POLICY, false),
    row(ErrorCode::BadRequest, "bad_request", 400, POLICY, false),
    row(ErrorCode::Unauthorized, "unauthorized", 401, POLICY, false),
    row(ErrorCode::Forbidden, "forbidden", 403, POLICY, false),
    row(ErrorCode::ApprovalRequired, "approval_required", 403, POLICY, false),
    row(ErrorCode::NotFound, "not_found", 404, POLICY, false),
    row(ErrorCode::MethodNotAllowed, "method_not_allowed", 405, POLICY, false),
    row(ErrorCode::RequestTimeout, "request_timeout", 408, POLICY, true),
    row(ErrorCode::Conflict, "conflict", 409, POLICY, false),
    row(ErrorCode::StaleChangeRequest, "stale_change_request", 409, POLICY, false),
    row(ErrorCode::RevisionMismatch, "revision_mismatch", 412, POLICY, false),
    row(ErrorCode::PayloadTooLarge, "payload_too_large", 413, TOO_BIG, false),
    row(ErrorCode::UnsupportedMediaType, "unsupported_media_type", 415, POLICY, false),
    row(ErrorCode::InvalidValue, "invalid_value", 422, POLICY, false),
    row(ErrorCode::SchemaViolation, "schema_violation", 422, POLICY, false),
    row(ErrorCode::IdempotencyKeyReused, "idempotency_key_reused", 422, POLICY, false),
    row(ErrorCode::RateLimited, "rate_limited", 429, TRY_AGAIN_LATER, true),
    row(ErrorCode::Internal, "internal", 500, INTERNAL, true),
    row(ErrorCode::Unavailable, "unavailable", 503, TRY_AGAIN_LATER, true),
    row(ErrorCode::OutcomeUnknown, "outcome_unknown", 504, INTERNAL, true),
    row(ErrorCode::QuotaExceeded, "quota_exceeded", 507, POLICY, false),
];

impl ErrorCode {
    /// This code's row of the table.
    pub fn kind(self) -> &'static ErrorKind {
        // Every code has exactly one row (a test walks them).
        ERRORS.iter().find(|k| k.code == self).unwrap_or(&ERRORS[ERRORS.len() - 1])
    }

    /// The snake_case name sent on the wire.
    pub fn as_str(self) -> &'static str {
        self.kind().name
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        self.kind().status
    }

    /// The WebSocket close code.
    pub fn close_code(self) -> u16 {
        self.kind().close
    }

    /// Whether the same request may succeed later unchanged.
    pub fn retryable(self) -> bool {
        self.kind().retryable
    }

    /// The code named `name` on the wire, if it is one of the table's.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ERRORS.iter().find(|k| k.name == name).map(|k| k.code)
    }

    /// What an answer of `status` stands for when nothing says more (an answer made by a
    /// framework or a proxy): the table's first code with that status, else `bad_request`
    /// for any other 4xx and `internal` for the rest.
    pub fn for_status(status: u16) -> ErrorCode {
        match ERRORS.iter().find(|k| k.status == status) {
            Some(kind) => kind.code,
            None if (400..500).contains(&status) => ErrorCode::BadRequest,
            None => ErrorCode::Internal,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The table as the JSON document `testdata/errors.json` holds.
pub fn table_json() -> serde_json::Value {
    let rows = ERRORS
        .iter()
        .map(|k| {
            serde_json::json!({
                "code": k.name, "status": k.status, "close": k.close, "retryable": k.retryable,
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_row_and_a_unique_name() {
        for kind in ERRORS {
            assert_eq!(ERRORS.iter().filter(|k| k.code == kind.code).count(), 1, "{kind:?}");
            assert_eq!(ErrorCode::from_name(kind.name), Some(kind.code));
            assert_eq!(kind.code.kind(), kind);
            assert!(close::is_valid(kind.close), "{kind:?}");
            assert!((400..600).contains(&kind.status), "{kind:?}");
            // Server errors may pass; client errors are the request's fault.
            if kind.status >= 500 {
                assert!(kind.retryable || kind.code == ErrorCode::QuotaExceeded, "{kind:?}");
            }
        }
    }

    #[test]
    fn statuses_map_back_to_a_code_of_that_status() {
        for kind in ERRORS {
            assert_eq!(ErrorCode::for_status(kind.status).status(), kind.status);
        }
        assert_eq!(ErrorCode::for_status(418), ErrorCode::BadRequest);
        assert_eq!(ErrorCode::for_status(502), ErrorCode::Internal);
    }

    #[test]
    fn close_codes_follow_rfc_6455() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, u16::MAX] {
            assert!(!close::is_valid(code), "{code}");
        }
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] {
            assert!(close::is_valid(code), "{code}");
        }
    }

    /// The JavaScript SDK reads `testdata/errors.json`: it must be this table. Run with
    /// `GRAYCAST_WRITE_ERRORS=1` to rewrite it after changing the table.
    #[test]
    fn the_json_table_is_this_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/errors.json");
        let expected = serde_json::to_string_pretty(&table_json()).unwrap_or_default() + "\n";
        if std::env::var_os("GRAYCAST_WRITE_ERRORS").is_some() {
            std::fs::write(path, &expected).expect("write testdata/errors.json");
        }
        let actual = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(actual, expected, "testdata/errors.json differs from the table");
    }
}
