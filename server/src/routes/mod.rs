//! HTTP routes, one module per resource, plus the request helpers they share.

pub mod changes;
pub mod clients;
pub mod configs;
pub mod console;
pub mod events;
pub mod gray;
pub mod health;
pub mod idempotency;
pub mod namespaces;
pub mod ofrep;
pub mod release;
pub mod requests;
pub mod schemas;
pub mod transfer;
pub mod watch;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use graycast_protocol::{Entry, Revision};
use serde::de::DeserializeOwned;

pub(crate) use crate::error::check_names;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Mutation, Precondition, Tags, WriteRequest};

/// Most bytes of a change's comment.
pub const MAX_COMMENT_BYTES: usize = 1024;

/// The write of `mutation` to a key by `actor`, with the request's precondition
/// (`If-Match`, `If-None-Match`), peer address and comment: the body's, or `?comment=` on
/// calls without a body. The reserved namespaces are written through their own routes only.
pub(crate) fn write_request(
    req: &HttpRequest,
    path: KeyPath,
    mutation: Mutation,
    actor: String,
    comment: Option<String>,
) -> Result<WriteRequest, ApiError> {
    if path.namespace == crate::push::selection::META_NAMESPACE {
        return Err(namespaces::reserved());
    }
    let reserved = [
        (crate::schema::SCHEMAS_NAMESPACE, "JSON Schemas; set them with PUT /v1/schemas/{ns}"),
        (crate::policy::POLICIES_NAMESPACE, "the policies; set them with PUT /v1/policies"),
        (crate::requests::REQUESTS_NAMESPACE, "change requests (/v1/change-requests)"),
        (crate::policy::REVIEWS_NAMESPACE, "break-glass reviews (/v1/reviews)"),
    ];
    if let Some((name, what)) = reserved.iter().find(|(name, _)| path.namespace == *name) {
        return Err(ApiError::Forbidden(format!("namespace {name:?} is reserved for {what}")));
    }
    let comment = match comment {
        Some(comment) => Some(comment),
        None => {
            web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
                .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?
                .into_inner()
                .remove("comment")
        }
    };
    write_to(req, path.namespace, path.key, mutation, actor, comment)
}

/// The write of `mutation` to any key, reserved ones included, with the request's
/// conditions, peer address, `Idempotency-Key`, authority and comment (checked).
pub(crate) fn write_to(
    req: &HttpRequest,
    namespace: String,
    key: String,
    mutation: Mutation,
    actor: String,
    comment: Option<String>,
) -> Result<WriteRequest, ApiError> {
    if let Some(comment) = &comment {
        if comment.len() > MAX_COMMENT_BYTES {
            return Err(ApiError::InvalidValue(format!(
                "the comment has {} bytes; the limit is {MAX_COMMENT_BYTES}",
                comment.len()
            )));
        }
    }
    Ok(WriteRequest {
        namespace,
        key,
        mutation,
        precondition: precondition(req.headers())?,
        actor,
        comment: comment.filter(|c| !c.is_empty()),
        remote: req.peer_addr().map(|a| a.to_string()),
        idempotency: idempotency::of_request(req)?,
        authority: authority(req)?,
    })
}

/// The header by which an admin applies a write directly in a namespace under a policy.
pub const BREAK_GLASS: &str = "x-graycast-break-glass";

/// On whose authority a request writes: a break-glass (an admin's, with its reason of 1 to
/// 1,024 bytes) or the caller's own.
pub(crate) fn authority(req: &HttpRequest) -> Result<crate::policy::Authority, ApiError> {
    let Some(header) = req.headers().get(BREAK_GLASS) else {
        return Ok(crate::policy::Authority::Direct);
    };
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal("no application state".into()))?;
    let admin =
        crate::state::caller(state, req)?.is_none_or(|p| p.role == crate::auth::Role::Admin);
    if !admin {
        return Err(ApiError::Forbidden(format!(
            "only an admin token can break glass ({BREAK_GLASS}); ask for approval with a \
             change request (POST /v1/change-requests)"
        )));
    }
    let reason = header.to_str().map(str::trim).unwrap_or_default();
    if reason.is_empty() || reason.len() > MAX_COMMENT_BYTES {
        return Err(ApiError::BadRequest(format!(
            "{BREAK_GLASS} gives the reason, 1 to {MAX_COMMENT_BYTES} bytes of visible ASCII"
        )));
    }
    Ok(crate::policy::Authority::BreakGlass { reason: reason.to_owned() })
}

/// Registers every route of the API.
pub fn configure(cfg: &mut web::ServiceConfig) {
    configs::configure(cfg);
    console::configure(cfg);
    gray::configure(cfg);
    release::configure(cfg);
    clients::configure(cfg);
    health::configure(cfg);
    namespaces::configure(cfg);
    ofrep::configure(cfg);
    changes::configure(cfg);
    transfer::configure(cfg);
    watch::configure(cfg);
    events::configure(cfg);
    schemas::configure(cfg);
    requests::configure(cfg);
}

/// The `{ns}` and `{key}` of a route, both checked against the naming rule.
pub struct KeyPath {
    pub namespace: String,
    pub key: String,
}

impl actix_web::FromRequest for KeyPath {
    type Error = ApiError;
    type Future = std::future::Ready<Result<KeyPath, ApiError>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let part = |name| req.match_info().get(name).unwrap_or_default().to_owned();
        let (namespace, key) = (part("ns"), part("key"));
        std::future::ready(check_names(&namespace, Some(&key)).map(|()| KeyPath { namespace, key }))
    }
}

/// The current entry of a key, or `not_found`.
pub(crate) fn current_entry(
    state: &AppState,
    namespace: &str,
    key: &str,
) -> Result<std::sync::Arc<Entry>, ApiError> {
    state
        .store
        .get(namespace, key)
        .ok_or_else(|| ApiError::NotFound(format!("key {namespace}/{key} not found")))
}

/// Refuses a value nested too deeply (422) or whose compact serialization exceeds the
/// configured size (413): the one check every value entering the store passes.
pub(crate) fn check_value(
    state: &AppState,
    value: &serde_json::Value,
    what: &str,
) -> Result<(), ApiError> {
    graycast_protocol::value::check_depth(what, value).map_err(ApiError::InvalidValue)?;
    let size = graycast_protocol::value::compact_size(value);
    let limit = state.config.max_value_bytes;
    if size > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "{what} of {size} bytes exceeds the limit of {limit} bytes"
        )));
    }
    Ok(())
}

/// Reads a request body of at most `limit` bytes.
async fn read_body(
    headers: &HeaderMap,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let too_large = |size: usize| {
        ApiError::PayloadTooLarge(format!(
            "request body of {size} bytes exceeds the limit of {limit} bytes"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(size) = declared {
        if size > limit {
            return Err(too_large(size));
        }
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(body.len() + chunk.len()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads the JSON request body of a write: at most the configured size, within the body
/// timeout (408), declared as JSON or not declared at all (415 otherwise: a form or
/// `text/plain` post is what a cross-site page can send without asking).
pub(crate) async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<T, ApiError> {
    read_json_within(req, payload, state, state.config.max_body_bytes()).await
}

/// [`read_json`] with another size limit than a write's (an import's document).
pub(crate) async fn read_json_within<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    limit: usize,
) -> Result<T, ApiError> {
    let body = read_json_body(req, payload, state, limit).await?;
    serde_json::from_slice(&body).map_err(|e| body_error(&e))
}

/// What a body that serde refused is: a value nested beyond the limit (422), else
/// malformed or mistyped JSON (400).
pub(crate) fn body_error(e: &serde_json::Error) -> ApiError {
    // serde_json stops at 128 levels; anything that deep is a value beyond our limit.
    if e.to_string().starts_with("recursion limit exceeded") {
        ApiError::InvalidValue(format!(
            "the request body is nested more than 127 levels deep; values may be nested \
             at most {} levels",
            graycast_protocol::value::MAX_VALUE_DEPTH
        ))
    } else {
        ApiError::InvalidJson(format!("invalid request body: {e}"))
    }
}

/// Reads a JSON object body (checking its type, size and time) without parsing it.
pub(crate) async fn read_json_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let headers = req.headers();
    if let Some(kind) = headers.get(header::CONTENT_TYPE) {
        let kind = kind.to_str().unwrap_or_default();
        let essence = kind.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the request body is {kind:?}; send JSON with Content-Type: application/json"
            )));
        }
    }
    let timeout = state.config.body_timeout();
    let body = tokio::time::timeout(timeout, read_body(headers, payload, limit)).await.map_err(
        |_| {
            ApiError::RequestTimeout(format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ))
        },
    )??;
    idempotency::note_body(req, &body);
    // Every request body is an object; serde would otherwise also accept a struct
    // written as an array (`[1]`).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::InvalidJson("the request body must be a JSON object".into()));
    }
    Ok(body.freeze())
}

/// Reads `If-Match` and `If-None-Match` into the write's precondition.
pub(crate) fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let text = |name: header::HeaderName| -> Result<Option<String>, ApiError> {
        headers
            .get(&name)
            .map(|v| {
                v.to_str()
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| ApiError::BadRequest(format!("header {name} is not ASCII")))
            })
            .transpose()
    };
    let parse = |name: header::HeaderName| -> Result<Option<Tags>, ApiError> {
        text(name.clone())?
            .map(|value| {
                tags(&value).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "{name} {value:?} is neither * nor a list of entity tags such as \"42\""
                    ))
                })
            })
            .transpose()
    };
    let if_match = parse(header::IF_MATCH)?;
    let if_none_match = parse(header::IF_NONE_MATCH)?;
    Ok(match (if_match, if_none_match) {
        (None, None) => Precondition::None,
        (Some(Tags::Any), None) => Precondition::Exists,
        (None, Some(Tags::Any)) => Precondition::Absent,
        (Some(Tags::Revisions(revisions)), None) if revisions.len() == 1 => {
            Precondition::Revision(revisions[0])
        }
        (if_match, if_none_match) => Precondition::Http { if_match, if_none_match },
    })
}

/// The value of `If-Match` or `If-None-Match` (RFC 9110 §13.1): `*`, or a comma-separated
/// list of entity tags (`"42"`, `W/"42"`, and leniently a bare alphanumeric `42`); `None`
/// when it is neither. A well-formed tag that names no revision matches nothing.
fn tags(value: &str) -> Option<Tags> {
    if value.trim() == "*" {
        return Some(Tags::Any);
    }
    let mut revisions = Vec::new();
    let mut any = false;
    let mut rest = value;
    loop {
        // Empty list elements are ignored, as HTTP's list rule says.
        rest = rest.trim_start_matches([',', ' ', '\t']);
        if rest.is_empty() {
            break;
        }
        let opaque = rest.strip_prefix("W/").unwrap_or(rest);
        let (inner, after) = match opaque.strip_prefix('"') {
            // etagc: any visible character but the double quote (commas included).
            Some(quoted) => {
                let end = quoted.find('"')?;
                let inner = &quoted[..end];
                if !inner.bytes().all(|b| b == 0x21 || (0x23..=0x7e).contains(&b)) {
                    return None;
                }
                (inner, &quoted[end + 1..])
            }
            None => {
                let end = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
                if end == 0 {
                    return None;
                }
                (&rest[..end], &rest[end..])
            }
        };
        any = true;
        revisions.extend(inner.parse::<Revision>().ok());
        rest = after.trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
    }
    any.then_some(Tags::Revisions(revisions))
}

/// Parses an entity tag carrying a revision: `"42"`, `W/"42"` (or, leniently for reads, a
/// bare `42`).
pub(crate) fn parse_etag(tag: &str) -> Option<Revision> {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    let tag = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(tag);
    tag.parse().ok()
}

/// The answer to a write that left `entry`: 201 when it created the key, else 200; the
/// entry as the body and its revision as the `ETag`, on every write path.
pub(crate) fn entry_answer(entry: &Entry, created: bool) -> actix_web::HttpResponse {
    let mut answer =
        if created { actix_web::HttpResponse::Created() } else { actix_web::HttpResponse::Ok() };
    answer.insert_header((header::ETAG, etag(entry.revision))).json(entry)
}

/// The entity tag of a revision.
pub(crate) fn etag(revision: Revision) -> String {
    format!("\"{revision}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_headers() {
        let revisions = |v: &[Revision]| Some(Tags::Revisions(v.to_vec()));
        for (value, expected) in [
            ("*", Some(Tags::Any)),
            ("\"42\"", revisions(&[42])),
            ("W/\"42\", \"7\"", revisions(&[42, 7])),
            ("\"abc\"", revisions(&[])),
            (" \"1\" , ,\"2\"", revisions(&[1, 2])),
            ("42", revisions(&[42])),
            ("yesterday", revisions(&[])),
            ("4 2", None),
            ("", None),
            (",", None),
            ("\"4\"2\"", None),
            ("\"no space\"", None),
            ("*, \"1\"", None),
            ("W/\"7-},@o\", \"2\"", revisions(&[2])),
            ("\"1\"\"2\"", None),
            ("W/42", None),
        ] {
            assert_eq!(tags(value), expected, "{value:?}");
        }
    }

    #[test]
    fn etags() {
        assert_eq!(parse_etag("\"42\""), Some(42));
        assert_eq!(parse_etag("W/\"42\""), Some(42));
        assert_eq!(parse_etag("42"), Some(42));
        assert_eq!(parse_etag(" \"7\" "), Some(7));
        assert_eq!(parse_etag("\"x\""), None);
        assert_eq!(parse_etag("\"-1\""), None);
        assert_eq!(parse_etag(&etag(9)), Some(9));
    }
}
