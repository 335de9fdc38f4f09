//! Gray releases of a key: start, change, promote, abort, report outcomes, status.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use graycast_protocol::gray::{GrayPatch, GrayRequest, GrayStatus, GuardCounts, ReportRequest};
use graycast_protocol::{Entry, ErrorBody};

use super::{check_value, current_entry, read_json, write_request, KeyPath};
use crate::auth::Access;
use crate::error::ApiError;
use crate::gray::guard::{self, check_report};
use crate::state::{authorize, AppState};
use crate::store::Mutation;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/configs/{ns:[^/]*}/{key:[^/]*}/gray")
            .route(web::get().to(status))
            .route(web::put().to(start))
            .route(web::patch().to(patch))
            .route(web::delete().to(abort)),
    )
    .service(
        web::resource("/v1/configs/{ns:[^/]*}/{key:[^/]*}/gray/promote")
            .route(web::post().to(promote)),
    )
    .service(
        web::resource("/v1/configs/{ns:[^/]*}/{key:[^/]*}/gray/report")
            .route(web::post().to(report)),
    );
}

async fn write(
    req: &HttpRequest,
    state: &AppState,
    actor: String,
    path: KeyPath,
    mutation: Mutation,
    comment: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let request = write_request(req, path, mutation, actor, comment)?;
    let change = state.store.write(request).await?;
    let entry = change
        .entry
        .as_deref()
        .ok_or_else(|| ApiError::Internal("the change left no entry".into()))?;
    Ok(super::entry_answer(entry, false))
}

/// Starts a gray release of an existing key, or replaces the running one.
#[utoipa::path(put, path = "/v1/configs/{ns}/{key}/gray", tag = "gray",
    request_body = GrayRequest,
    responses((status = 200, body = Entry, headers(("ETag" = String, description = "\"<revision>\" of the entry written"))), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: KeyPath,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = authorize(&state, &req, Access::Write, Some(&path.namespace))?;
    let mut body: GrayRequest = read_json(&req, payload, &state).await?;
    check_value(&state, &body.value, "gray value")?;
    let comment = body.comment.take();
    let gray = body
        .into_gray(&path.namespace, &path.key, Utc::now())
        .map_err(|e| ApiError::InvalidValue(e.to_string()))?;
    let mutation = Mutation::GrayStart { gray: Box::new(gray) };
    write(&req, &state, actor, path, mutation, comment).await
}

/// Changes the percent, allow or deny lists, rules, or pause state of the running release.
#[utoipa::path(patch, path = "/v1/configs/{ns}/{key}/gray", tag = "gray",
    request_body = GrayPatch,
    responses((status = 200, body = Entry, headers(("ETag" = String, description = "\"<revision>\" of the entry written"))), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: KeyPath,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = authorize(&state, &req, Access::Write, Some(&path.namespace))?;
    let mut body: GrayPatch = read_json(&req, payload, &state).await?;
    let comment = body.comment.take();
    write(&req, &state, actor, path, Mutation::GrayPatch(body), comment).await
}

/// Makes the gray value the stable value; the release ends.
#[utoipa::path(post, path = "/v1/configs/{ns}/{key}/gray/promote", tag = "gray",
    responses((status = 200, body = Entry, headers(("ETag" = String, description = "\"<revision>\" of the entry written"))), (status = 404, body = ErrorBody)))]
pub async fn promote(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: KeyPath,
) -> Result<HttpResponse, ApiError> {
    let actor = authorize(&state, &req, Access::Write, Some(&path.namespace))?;
    write(&req, &state, actor, path, Mutation::Promote, None).await
}

/// Aborts the release: it ends and the stable value stays.
#[utoipa::path(delete, path = "/v1/configs/{ns}/{key}/gray", tag = "gray",
    responses((status = 200, body = Entry, headers(("ETag" = String, description = "\"<revision>\" of the entry written"))), (status = 404, body = ErrorBody)))]
pub async fn abort(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: KeyPath,
) -> Result<HttpResponse, ApiError> {
    let actor = authorize(&state, &req, Access::Write, Some(&path.namespace))?;
    let mutation = Mutation::Abort { started_at: None, note: None };
    write(&req, &state, actor, path, mutation, None).await
}

/// The running release with the guard's outcome counts.
#[utoipa::path(get, path = "/v1/configs/{ns}/{key}/gray", tag = "gray",
    responses((status = 200, body = GrayStatus), (status = 404, body = ErrorBody)))]
pub async fn status(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: KeyPath,
) -> Result<HttpResponse, ApiError> {
    let KeyPath { namespace, key } = path;
    authorize(&state, &req, Access::Read, Some(&namespace))?;
    let entry = current_entry(&state, &namespace, &key)?;
    let gray = entry
        .gray
        .clone()
        .ok_or_else(|| ApiError::NotFound(format!("no gray release runs on {namespace}/{key}")))?;
    Ok(HttpResponse::Ok().json(GrayStatus {
        namespace,
        key,
        revision: entry.revision,
        counts: guard::counts(&state.store, &state.guards, &entry).await,
        gray,
    }))
}

/// Adds outcome counts for a variant; the guard aborts the release when the gray error
/// rate exceeds its limit. Answers the counts after this report.
#[utoipa::path(post, path = "/v1/configs/{ns}/{key}/gray/report", tag = "gray",
    request_body = ReportRequest,
    responses((status = 200, body = GuardCounts), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn report(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: KeyPath,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let KeyPath { namespace, key } = path;
    let reporter = authorize(&state, &req, Access::Report, Some(&namespace))?;
    let body: ReportRequest = read_json(&req, payload, &state).await?;
    check_report(body.ok, body.errors)?;
    if let Some(idempotency) = super::idempotency::of_request(&req)? {
        // A repeat is counted once, on whichever node it reaches: it answers the counts.
        let entry = current_entry(&state, &namespace, &key)?;
        if entry.gray.is_some() && !state.store.claim(&idempotency).await? {
            return Ok(
                HttpResponse::Ok().json(guard::counts(&state.store, &state.guards, &entry).await)
            );
        }
    }
    let counts = guard::report(&state.store, &state.guards, &namespace, &key, &body, &reporter)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no gray release runs on {namespace}/{key}, or not the one reported"
            ))
        })?;
    Ok(HttpResponse::Ok().json(counts))
}
