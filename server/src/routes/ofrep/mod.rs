//! OFREP, the OpenFeature Remote Evaluation Protocol 0.3.0: any OpenFeature SDK
//! with an OFREP provider evaluates graycast's keys, gray releases included.
//!
//! - `POST /ofrep/v1/evaluate/flags/{namespace}/{key}` (the `/` may be `%2F`) and
//!   `POST /ofrep/v1/evaluate/flags` (bulk: every key the token may read) at the root;
//!   under `/ns/{namespace}` the same with plain keys, for a provider whose base URL is
//!   `http://HOST/ns/payments`.
//! - The bulk answer's `ETag` is a hash of its flags (so it changes whenever any answer
//!   does), `If-None-Match` gets 304, and `eventStreams` names `stream.rs`'s server-sent
//!   events, which tell a provider to fetch again after each commit in scope.
//! - Tokens come as `Authorization: Bearer` or `X-API-Key`; `read` suffices. Browser
//!   origins of `--allowed-origins` get CORS answers (`protect::cors`, on every path).

mod eval;
mod stream;
mod ticket;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use serde_json::json;
use sha2::{Digest, Sha256};

use self::eval::{evaluate_entry, read_context, Code, Failure, Flag};
use crate::auth::{self, hex, Access};
use crate::error::ApiError;
use crate::state::{AppState, Caller};

pub use self::eval::MAX_CONTEXT_FIELDS;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    for base in ["/ofrep/v1", "/ns/{ns}/ofrep/v1"] {
        cfg.service(web::resource(format!("{base}/evaluate/flags")).route(web::post().to(bulk)))
            .service(
                web::resource(format!("{base}/evaluate/flags/{{flag:.+}}"))
                    .route(web::post().to(single)),
            )
            .service(web::resource(format!("{base}/events")).route(web::get().to(stream::events)));
    }
}

/// The token a request presents: `Authorization: Bearer` or `X-API-Key`.
fn secret(req: &HttpRequest) -> Option<&str> {
    auth::bearer(req.headers())
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim))
}

/// Who calls, and whether they may read `namespace` (every namespace when `None`: the
/// check is then per namespace).
fn caller(
    state: &AppState,
    req: &HttpRequest,
    namespace: Option<&str>,
) -> Result<Caller, ApiError> {
    let caller = state.identify(secret(req))?.identified()?;
    if let Some(namespace) = namespace {
        caller.may(Access::Read, Some(namespace))?;
    }
    Ok(caller)
}

/// The namespace of a `/ns/{ns}` base, if the request has one.
fn base_namespace(req: &HttpRequest) -> Option<String> {
    req.match_info().get("ns").map(str::to_owned)
}

/// Reads the body (at most [`MAX_BODY_BYTES`], within the body timeout).
async fn body(
    state: &AppState,
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<bytes::BytesMut, ApiError> {
    let read = async {
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge(format!(
                    "the request body is over the limit of {MAX_BODY_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|size| size > MAX_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge(format!(
            "the request body is over the limit of {MAX_BODY_BYTES} bytes"
        )));
    }
    tokio::time::timeout(state.config.body_timeout(), read)
        .await
        .map_err(|_| ApiError::RequestTimeout("the request body did not arrive in time".into()))?
}

/// A single evaluation's error answer: `{key, errorCode, errorDetails}`.
fn single_failure(status: StatusCode, key: &str, failure: &Failure) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "key": key,
        "errorCode": failure.code.as_str(),
        "errorDetails": failure.details,
    }))
}

/// The body of an OFREP evaluation: `{"context": {"targetingKey": ..., attributes...}}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EvaluationRequest {
    /// `targetingKey` (the subject) and the attributes rules match; may be absent.
    context: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// `POST .../evaluate/flags/{flag}`: one flag, for the request's context.
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags/{flag}", tag = "ofrep",
    params(("flag" = String, Path, description = "namespace/key (the `/` may be `%2F`); under /ns/{namespace}/ofrep/v1 the plain key")),
    request_body = EvaluationRequest,
    responses((status = 200, description = "the value, variant (stable or gray), reason and metadata"),
              (status = 400, description = "PARSE_ERROR, INVALID_CONTEXT, TARGETING_KEY_MISSING or TYPE_MISMATCH, as {key, errorCode, errorDetails}"),
              (status = 404, description = "FLAG_NOT_FOUND, as {key, errorCode, errorDetails}"),
              (status = 413, description = "the body is over 64 KiB")))]
pub async fn single(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let base = base_namespace(&req);
    // The flag as sent, `%2F` decoded (names hold no other escapes).
    let raw = req.match_info().get("flag").unwrap_or_default();
    let flag = raw.replace("%2F", "/").replace("%2f", "/");
    let (namespace, key) = match &base {
        Some(namespace) => (namespace.clone(), flag.clone()),
        None => match flag.split_once('/') {
            Some((namespace, key)) => (namespace.to_owned(), key.to_owned()),
            None => (String::new(), flag.clone()),
        },
    };
    caller(&state, &req, (!namespace.is_empty()).then_some(namespace.as_str()))?;
    let body = body(&state, &req, payload).await?;
    let context = match read_context(&body) {
        Ok(context) => context,
        Err(failure) => {
            state.metrics.record_ofrep("single", None, Some(failure.code.as_str()));
            return Ok(single_failure(StatusCode::BAD_REQUEST, &flag, &failure));
        }
    };
    let entry = graycast_protocol::validate_name(&namespace)
        .and_then(|()| graycast_protocol::validate_name(&key))
        .ok()
        .and_then(|()| state.store.get(&namespace, &key));
    let Some(entry) = entry else {
        state.metrics.record_ofrep("single", None, Some(Code::FlagNotFound.as_str()));
        let failure = Failure::new(
            Code::FlagNotFound,
            if base.is_some() {
                format!("no key {flag} in namespace {namespace}")
            } else {
                format!("no key {flag}; at the root a flag is namespace/key")
            },
        );
        return Ok(single_failure(StatusCode::NOT_FOUND, &flag, &failure));
    };
    let response = match evaluate_entry(&flag, &entry, &context) {
        Flag::Evaluated(evaluated) => {
            state.metrics.record_ofrep("single", Some(evaluated.reason), None);
            HttpResponse::Ok().json(evaluated)
        }
        Flag::Failed(failed) => {
            state.metrics.record_ofrep("single", None, Some(failed.error_code.as_str()));
            HttpResponse::BadRequest().json(failed)
        }
    };
    Ok(response)
}

/// `POST .../evaluate/flags`: every flag in scope the caller may read.
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags", tag = "ofrep",
    params(("flagConfigEtag" = Option<String>, Query, description = "from a refetch event"),
           ("flagConfigLastModified" = Option<u64>, Query, description = "from a refetch event: the revision to wait for (or a date-time, which waits for nothing)")),
    request_body = EvaluationRequest,
    responses((status = 200, description = "every flag the token may read, with an ETag and the event stream; with If-None-Match naming that ETag, 304"),
              (status = 400, description = "PARSE_ERROR or INVALID_CONTEXT, as {errorCode, errorDetails}"),
              (status = 413, description = "the body is over 64 KiB")))]
pub async fn bulk(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let base = base_namespace(&req);
    let caller = caller(&state, &req, base.as_deref())?;
    let body = body(&state, &req, payload).await?;
    let context = match read_context(&body) {
        Ok(context) => context,
        Err(failure) => {
            state.metrics.record_ofrep("bulk", None, Some(failure.code.as_str()));
            let answer = HttpResponse::BadRequest()
                .json(json!({"errorCode": failure.code.as_str(), "errorDetails": failure.details}));
            return Ok(answer);
        }
    };
    let last_modified = match last_modified(&req) {
        Ok(revision) => revision,
        Err(details) => {
            state.metrics.record_ofrep("bulk", None, Some(Code::ParseError.as_str()));
            return Ok(HttpResponse::BadRequest()
                .json(json!({"errorCode": Code::ParseError.as_str(), "errorDetails": details})));
        }
    };
    // A refetch a change event asked for waits (briefly) until this node has that change;
    // a node alone has every revision there is, so a later one is no revision at all.
    if let Some(revision) = last_modified {
        if state.store.clustered() && revision > state.store.revision() {
            state.store.wait_applied(revision, std::time::Duration::from_secs(2)).await;
        }
    }
    let namespaces: Vec<String> = match &base {
        Some(namespace) => vec![namespace.clone()],
        None => {
            let (_, all) = state.store.namespaces();
            all.into_iter()
                .map(|(name, _)| name)
                .filter(|ns| ns != crate::push::selection::META_NAMESPACE)
                .filter(|ns| caller.may(Access::Read, Some(ns)).is_ok())
                .collect()
        }
    };
    let (revision, entries) = state.store.snapshot(&namespaces);
    let flags: Vec<Flag> = entries
        .iter()
        .map(|entry| {
            let key = match &base {
                Some(_) => entry.key.clone(),
                None => format!("{}/{}", entry.namespace, entry.key),
            };
            evaluate_entry(&key, entry, &context)
        })
        .collect();
    let body = serde_json::to_vec(&flags).unwrap_or_default();
    let etag = format!("\"{}\"", hex(&Sha256::digest(&body)[..12]));
    state.metrics.record_ofrep("bulk", Some("BULK"), None);
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if unchanged {
        let answer = HttpResponse::NotModified().insert_header((header::ETAG, etag)).finish();
        return Ok(answer);
    }
    let stream = stream::url(&state, base.as_deref(), secret(&req), revision);
    let answer = json!({
        "flags": flags,
        "metadata": {"revision": revision},
        "eventStreams": [{
            "type": "sse",
            "endpoint": {"requestUri": stream},
            "inactivityDelaySec": stream::INACTIVITY_DELAY_SECS,
        }],
    });
    let answer = HttpResponse::Ok().insert_header((header::ETAG, etag)).json(answer);
    Ok(answer)
}

/// A query parameter, decoded (`None` when absent or the query is malformed).
fn query(req: &HttpRequest, name: &str) -> Option<String> {
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()?
        .into_inner()
        .remove(name)
}

/// `flagConfigLastModified`: a revision when it is a number (what graycast sends as
/// `lastModified`); a date-time is accepted and waits for nothing; anything else is
/// refused. (`If-None-Match` needs no check: what matches no ETag gets a fresh answer.)
fn last_modified(req: &HttpRequest) -> Result<Option<u64>, String> {
    let Some(value) = query(req, "flagConfigLastModified") else { return Ok(None) };
    parse_last_modified(&value)
}

fn parse_last_modified(value: &str) -> Result<Option<u64>, String> {
    // Any non-negative integer, as the document declares it: one beyond 64 bits is a
    // revision no store reaches, read as the largest.
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Some(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    match chrono::DateTime::parse_from_rfc3339(value) {
        Ok(_) => Ok(None),
        Err(_) => Err(format!(
            "flagConfigLastModified {value:?} is neither a non-negative integer nor a date-time"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_last_modified;

    #[test]
    fn a_last_modified_is_any_non_negative_integer_or_a_date_time() {
        assert_eq!(parse_last_modified("42"), Ok(Some(42)));
        // schemathesis sent this integer, which the document allows; it was refused 400.
        assert_eq!(parse_last_modified("328243912935414235136"), Ok(Some(u64::MAX)));
        assert_eq!(parse_last_modified("2026-12-07T10:00:00Z"), Ok(None));
        assert!(parse_last_modified("-1").is_err());
        assert!(parse_last_modified("").is_err());
        assert!(parse_last_modified("soon").is_err());
    }
}
