//! Configuration entries: namespaces, list, get, put, delete, history and rollback.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use graycast_protocol::rest::{
    ConfigList, DeleteResponse, HistoryList, PutRequest, RollbackRequest,
};
use graycast_protocol::{Entry, ErrorBody};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    check_names, check_value, current_entry, etag, parse_etag, read_json, write_request, KeyPath,
};
use crate::auth::Access;
use crate::error::ApiError;
use crate::state::{authorize, AppState};
use crate::store::{Mutation, StoreError};

/// History items returned when the request names no limit.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;
/// Most history items returned by one request.
pub const MAX_HISTORY_LIMIT: usize = 1000;
/// Most entries of a namespace returned by one request.
pub const MAX_PAGE_ENTRIES: usize = 1000;
/// Bytes at which a page of entries or history items stops (it holds at least one).
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/configs/{ns:[^/]*}").route(web::get().to(list)))
        .service(
            web::resource("/v1/configs/{ns:[^/]*}/{key:[^/]*}")
                .route(web::get().to(get))
                .route(web::put().to(put))
                .route(web::delete().to(delete)),
        )
        .service(
            web::resource("/v1/configs/{ns:[^/]*}/{key:[^/]*}/history")
                .route(web::get().to(history)),
        )
        .service(
            web::resource("/v1/configs/{ns:[^/]*}/{key:[^/]*}/rollback")
                .route(web::post().to(rollback)),
        );
}

/// Query of a namespace listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Most entries to return (1 to 1000, default 1000); a page also stops at 4 MiB.
    limit: Option<usize>,
    /// Only keys after this one: the `next` of the previous page.
    after: Option<String>,
}

/// Lists one page of the entries of a namespace, in key order (empty when it has none).
#[utoipa::path(get, path = "/v1/configs/{ns}", tag = "configs",
    params(ListQuery),
    responses((status = 200, body = ConfigList)))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let namespace = path.into_inner();
    check_names(&namespace, None)?;
    authorize(&state, &req, Access::Read, Some(&namespace))?;
    let limit = query.limit.unwrap_or(MAX_PAGE_ENTRIES);
    if limit == 0 || limit > MAX_PAGE_ENTRIES {
        return Err(ApiError::BadRequest(format!(
            "limit {limit} is outside 1..={MAX_PAGE_ENTRIES}"
        )));
    }
    if let Some(after) = &query.after {
        check_names(&namespace, Some(after))?;
    }
    let (revision, entries, more) = state.store.page(&namespace, query.after.as_deref(), limit);
    // Entries are serialized one by one so that the page stops at its byte bound.
    let mut body: Vec<u8> = Vec::new();
    body.extend_from_slice(b"{\"namespace\":");
    json_into(&mut body, &namespace);
    body.extend_from_slice(format!(",\"revision\":{revision},\"entries\":[").as_bytes());
    let mut next = more.then(|| entries.last().map(|e| e.key.clone())).flatten();
    for (i, entry) in entries.iter().enumerate() {
        let item = serde_json::to_vec(entry.as_ref()).unwrap_or_default();
        if i > 0 && body.len() + item.len() > MAX_PAGE_BYTES {
            next = Some(entries[i - 1].key.clone());
            break;
        }
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&item);
    }
    body.extend_from_slice(b"],\"next\":");
    json_into(&mut body, &next);
    body.push(b'}');
    Ok(HttpResponse::Ok().content_type("application/json").body(body))
}

fn json_into<T: serde::Serialize>(out: &mut Vec<u8>, value: &T) {
    // Plain strings and options of them always serialize.
    let _ = serde_json::to_writer(out, value);
}

/// Reads one entry. `If-None-Match` with its current ETag answers 304.
#[utoipa::path(get, path = "/v1/configs/{ns}/{key}", tag = "configs",
    responses((status = 200, body = Entry, headers(("ETag" = String, description = "\"<revision>\""))),
              (status = 304), (status = 404, body = ErrorBody)))]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: KeyPath,
) -> Result<HttpResponse, ApiError> {
    let KeyPath { namespace, key } = path;
    authorize(&state, &req, Access::Read, Some(&namespace))?;
    let entry = current_entry(&state, &namespace, &key)?;
    let tag = etag(entry.revision);
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| parse_etag(t) == Some(entry.revision)));
    if unchanged {
        return Ok(HttpResponse::NotModified().insert_header((header::ETAG, tag)).finish());
    }
    Ok(HttpResponse::Ok().insert_header((header::ETAG, tag)).json(entry.as_ref()))
}

/// Creates or updates an entry. Honours `If-Match: "<rev>"` and `If-None-Match: *`.
#[utoipa::path(put, path = "/v1/configs/{ns}/{key}", tag = "configs",
    params(("If-Match" = Option<String>, Header, description = "write only if the entry is at this revision"),
           ("If-None-Match" = Option<String>, Header, description = "`*`: create only")),
    request_body = PutRequest,
    responses((status = 200, body = Entry, description = "updated", headers(("ETag" = String, description = "\"<revision>\" of the entry written"))), (status = 201, body = Entry, description = "created", headers(("ETag" = String, description = "\"<revision>\" of the entry written"))),
              (status = 400, body = ErrorBody), (status = 412, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn put(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: KeyPath,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = authorize(&state, &req, Access::Write, Some(&path.namespace))?;
    let body: PutRequest = read_json(&req, payload, &state).await?;
    check_value(&state, &body.value, "value")?;
    let request =
        write_request(&req, path, Mutation::Put { value: body.value }, actor, body.comment)?;
    let change = state.store.write(request).await?;
    entry_response(&change.entry)
}

/// Deletes an entry and any gray release of it. Honours `If-Match`.
#[utoipa::path(delete, path = "/v1/configs/{ns}/{key}", tag = "configs",
    params(("If-Match" = Option<String>, Header, description = "delete only if the entry is at this revision")),
    responses((status = 200, body = DeleteResponse), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: KeyPath,
) -> Result<HttpResponse, ApiError> {
    let actor = authorize(&state, &req, Access::Write, Some(&path.namespace))?;
    let request = write_request(&req, path, Mutation::Delete, actor, None)?;
    let change = state.store.write(request).await?;
    Ok(HttpResponse::Ok().json(DeleteResponse { revision: change.revision }))
}

/// Query of the history listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Most items to return (default 100, at most 1000).
    limit: Option<usize>,
    /// Only revisions below this one (for paging).
    before: Option<u64>,
}

/// Lists the revisions of a key, newest first, deletes included.
#[utoipa::path(get, path = "/v1/configs/{ns}/{key}/history", tag = "configs",
    params(HistoryQuery),
    responses((status = 200, body = HistoryList), (status = 404, body = ErrorBody)))]
pub async fn history(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: KeyPath,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let KeyPath { namespace, key } = path;
    authorize(&state, &req, Access::Read, Some(&namespace))?;
    let limit = query.limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
    if limit == 0 || limit > MAX_HISTORY_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit {limit} is outside 1..={MAX_HISTORY_LIMIT}"
        )));
    }
    let before = query.before;
    let page = state.store.history(&namespace, &key, before, limit, MAX_PAGE_BYTES).await?;
    if page.items.is_empty() && state.store.get(&namespace, &key).is_none() && before.is_none() {
        return Err(StoreError::NotFound { what: format!("key {namespace}/{key}") }.into());
    }
    let next = if page.more { page.items.last().map(|i| i.revision) } else { None };
    Ok(HttpResponse::Ok().json(HistoryList { items: page.items, next }))
}

/// Makes the value of an earlier revision current again, as a new revision.
#[utoipa::path(post, path = "/v1/configs/{ns}/{key}/rollback", tag = "configs",
    request_body = RollbackRequest,
    responses((status = 200, body = Entry, headers(("ETag" = String, description = "\"<revision>\" of the entry written"))), (status = 201, body = Entry, description = "the key was deleted and is recreated", headers(("ETag" = String, description = "\"<revision>\" of the entry written"))),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rollback(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: KeyPath,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = authorize(&state, &req, Access::Write, Some(&path.namespace))?;
    let body: RollbackRequest = read_json(&req, payload, &state).await?;
    let mutation = Mutation::Rollback { to_revision: body.to_revision };
    let request = write_request(&req, path, mutation, actor, body.comment)?;
    let change = state.store.write(request).await?;
    entry_response(&change.entry)
}

/// 201 with the entry when the write created the key, 200 otherwise; with its ETag.
fn entry_response(entry: &Option<std::sync::Arc<Entry>>) -> Result<HttpResponse, ApiError> {
    let entry =
        entry.as_deref().ok_or_else(|| ApiError::Internal("the write left no entry".into()))?;
    Ok(super::entry_answer(entry, entry.version == 1))
}
