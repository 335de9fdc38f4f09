//! Four-eyes changes over HTTP: the policies (`/v1/policies`), change requests
//! (`/v1/change-requests`) and the review items break-glass writes open (`/v1/reviews`).
//! The model and the apply are in `crate::requests`; the store enforces the policies.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use graycast_protocol::error::ErrorCode;
use graycast_protocol::ErrorBody;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::{check_names, etag, idempotency, precondition, read_json, MAX_COMMENT_BYTES};
use crate::auth::{Access, Role};
use crate::error::ApiError;
use crate::policy::{
    governed, Authority, Policies, POLICIES_KEY, POLICIES_NAMESPACE, REVIEWS_NAMESPACE,
};
use crate::requests::{
    self, mutation_of, read, saving, target, Approval, ChangeRequest, OpSpec, State, MAX_OPS,
    REQUESTS_NAMESPACE,
};
use crate::state::{authorize, caller, AppState};
use crate::store::{Mutation, WriteRequest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/policies")
            .route(web::get().to(get_policies))
            .route(web::put().to(put_policies)),
    )
    .service(
        web::resource("/v1/change-requests")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/v1/change-requests/{id}")
            .route(web::get().to(show))
            .route(web::put().to(edit)),
    )
    .service(web::resource("/v1/change-requests/{id}/{action}").route(web::post().to(act)))
    .service(web::resource("/v1/reviews").route(web::get().to(reviews)))
    .service(web::resource("/v1/reviews/{id}/ack").route(web::post().to(acknowledge)));
}

/// The caller's name, if an admin (anyone, on an open server).
fn admin(state: &AppState, req: &HttpRequest) -> Result<String, ApiError> {
    let name = authorize(state, req, Access::Read, None)?;
    if caller(state, req)?.is_some_and(|p| p.role != Role::Admin) {
        return Err(ApiError::Forbidden("this needs an admin token".into()));
    }
    Ok(name)
}

/// The policies, with their revision as the ETag.
#[utoipa::path(get, path = "/v1/policies", tag = "change requests",
    responses((status = 200, body = Policies)))]
pub async fn get_policies(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Anyone with a token may know what needs approval.
    caller(&state, &req)?;
    let entry = state.store.get(POLICIES_NAMESPACE, POLICIES_KEY);
    let (revision, policies) = Policies::of(entry.as_ref()).unwrap_or_default();
    Ok(HttpResponse::Ok().insert_header((header::ETAG, etag(revision))).json(policies))
}

/// Sets the policies (admins only; `If-Match` honoured). Revisioned and audited as a change
/// of `graycast.policies`.
#[utoipa::path(put, path = "/v1/policies", tag = "change requests", request_body = Policies,
    responses((status = 200, body = Policies), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_policies(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = admin(&state, &req)?;
    let policies: Policies = read_json(&req, payload, &state).await?;
    policies.check().map_err(ApiError::InvalidValue)?;
    let value = serde_json::to_value(&policies).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut write =
        WriteRequest::new(POLICIES_NAMESPACE, POLICIES_KEY, Mutation::Put { value }, actor);
    write.precondition = precondition(req.headers())?;
    write.idempotency = idempotency::of_request(&req)?;
    write.comment = Some("policies".into());
    write.remote = req.peer_addr().map(|a| a.to_string());
    let change = state.store.write(write).await?;
    Ok(HttpResponse::Ok().insert_header((header::ETAG, etag(change.revision))).json(policies))
}

/// The body of `POST /v1/change-requests` (and of an edit).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    pub ops: Vec<OpSpec>,
    pub comment: Option<String>,
    /// When the server applies it by itself once approved (RFC 3339, in the future).
    pub apply_at: Option<DateTime<Utc>>,
}

/// Checks a request's ops and the caller's right to write every namespace they touch;
/// answers the revisions they are based on and what the strictest policy needs.
fn checked(
    state: &AppState,
    req: &HttpRequest,
    body: &RequestBody,
) -> Result<(String, BTreeMap<String, u64>, u64, bool), ApiError> {
    if body.ops.is_empty() || body.ops.len() > MAX_OPS {
        return Err(ApiError::InvalidValue(format!("a change request has 1 to {MAX_OPS} ops")));
    }
    if body.comment.as_ref().is_some_and(|c| c.len() > MAX_COMMENT_BYTES) {
        return Err(ApiError::InvalidValue(format!(
            "the comment is over {MAX_COMMENT_BYTES} bytes"
        )));
    }
    if body.apply_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiError::InvalidValue("apply_at is in the past".into()));
    }
    let mut actor = String::new();
    let mut base = BTreeMap::new();
    let policies = Policies::of(state.store.get(POLICIES_NAMESPACE, POLICIES_KEY).as_ref());
    let (mut required, mut self_approval) = (0u64, true);
    for (i, op) in body.ops.iter().enumerate() {
        let key = (op.op != requests::OpKind::SchemaPut).then_some(op.key.as_str());
        // A name inside the body makes the body invalid (422), as a bad value does.
        check_names(&op.namespace, key)
            .map_err(|e| ApiError::InvalidValue(format!("op {i}: {e}")))?;
        actor = authorize(state, req, Access::Write, Some(&op.namespace))?;
        mutation_of(op, Utc::now()).map_err(|e| ApiError::InvalidValue(format!("op {i}: {e}")))?;
        let (namespace, key) = target(op);
        let revision = state.store.get(&namespace, &key).map_or(0, |e| e.revision);
        base.insert(format!("{namespace}/{key}"), revision);
        let governed = governed(&namespace, &key);
        if let Some(need) =
            governed.and_then(|ns| policies.as_ref().and_then(|(_, p)| p.requirement(ns)))
        {
            required = required.max(need.approvals);
            self_approval &= need.self_approval;
        }
    }
    Ok((actor, base, required, self_approval))
}

/// Opens a change request; one no policy governs is approved at once.
#[utoipa::path(post, path = "/v1/change-requests", tag = "change requests", request_body = RequestBody,
    responses((status = 201, body = ChangeRequest), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: RequestBody = read_json(&req, payload, &state).await?;
    let (author, base_revisions, required, self_approval) = checked(&state, &req, &body)?;
    let digest = ChangeRequest::digest_of(&body.ops, &base_revisions, body.apply_at);
    let mut request = ChangeRequest {
        id: uuid::Uuid::new_v4().to_string(),
        digest,
        state: if required == 0 { State::Approved } else { State::Open },
        base_revisions,
        approvals: Vec::new(),
        required,
        self_approval,
        author: author.clone(),
        comment: body.comment,
        ops: body.ops,
        apply_at: body.apply_at,
        created_at: Utc::now(),
        transitions: Vec::new(),
        applied_revisions: Vec::new(),
        reason: None,
    };
    request.moved("created", &author, None);
    let mut write = saving(&request, None, &author);
    write.idempotency = idempotency::of_request(&req)?;
    state.store.write(write).await?;
    Ok(HttpResponse::Created().json(request))
}

/// Query of the listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only requests in this state.
    state: Option<State>,
}

/// The change requests the caller may read (every namespace of their ops), newest first.
#[utoipa::path(get, path = "/v1/change-requests", tag = "change requests", params(ListQuery),
    responses((status = 200, body = RequestList)))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller(&state, &req)?;
    let (_, entries) = state.store.snapshot(&[REQUESTS_NAMESPACE.to_owned()]);
    let mut found: Vec<ChangeRequest> = entries
        .iter()
        .filter_map(|e| serde_json::from_value::<ChangeRequest>(e.value.clone()).ok())
        .filter(|r| query.state.is_none_or(|s| s == r.state))
        .filter(|r| {
            r.ops
                .iter()
                .all(|op| authorize(&state, &req, Access::Read, Some(&op.namespace)).is_ok())
        })
        .collect();
    found.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    Ok(HttpResponse::Ok().json(RequestList { requests: found }))
}

/// Answer of `GET /v1/change-requests`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct RequestList {
    /// Newest first.
    pub requests: Vec<ChangeRequest>,
}

fn id_of(req: &HttpRequest) -> String {
    req.match_info().get("id").unwrap_or_default().to_owned()
}

/// Reads a request the caller may read.
fn readable(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
) -> Result<(u64, ChangeRequest), ApiError> {
    let (at, request) = read(&state.store, id)?;
    for op in &request.ops {
        authorize(state, req, Access::Read, Some(&op.namespace))?;
    }
    Ok((at, request))
}

/// One change request.
#[utoipa::path(get, path = "/v1/change-requests/{id}", tag = "change requests",
    responses((status = 200, body = ChangeRequest), (status = 404, body = ErrorBody)))]
pub async fn show(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (at, request) = readable(&state, &req, &id_of(&req))?;
    Ok(HttpResponse::Ok().insert_header((header::ETAG, etag(at))).json(request))
}

/// The author replaces a request's content: new content, new digest, and no approval of
/// the old content counts for it.
#[utoipa::path(put, path = "/v1/change-requests/{id}", tag = "change requests", request_body = RequestBody,
    responses((status = 200, body = ChangeRequest), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn edit(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = id_of(&req);
    let (at, mut request) = readable(&state, &req, &id)?;
    let body: RequestBody = read_json(&req, payload, &state).await?;
    let (by, base_revisions, required, self_approval) = checked(&state, &req, &body)?;
    if by != request.author {
        return Err(ApiError::Forbidden("only the author edits a change request".into()));
    }
    if request.state.is_final() {
        return Err(final_state(&request));
    }
    request.digest = ChangeRequest::digest_of(&body.ops, &base_revisions, body.apply_at);
    request.ops = body.ops;
    request.comment = body.comment;
    request.apply_at = body.apply_at;
    request.base_revisions = base_revisions;
    request.required = required;
    request.self_approval = self_approval;
    request.approvals.clear();
    request.reason = None;
    request.state = if required == 0 { State::Approved } else { State::Open };
    request.moved("edited", &by, None);
    let mut write = saving(&request, Some(at), &by);
    write.idempotency = idempotency::of_request(&req)?;
    state.store.write(write).await?;
    Ok(HttpResponse::Ok().json(request))
}

fn final_state(request: &ChangeRequest) -> ApiError {
    ApiError::Coded(
        ErrorCode::Conflict,
        format!("change request {} is {:?}: it moves no more", request.id, request.state)
            .to_lowercase(),
    )
}

/// The body of approve, reject, cancel, apply and rebase.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// The digest approved: the one read, so that an edit since is not approved unseen.
    pub digest: Option<String>,
    /// Why (reject, cancel).
    pub reason: Option<String>,
}

/// `approve` `{"digest"}`, `reject`, `cancel`, `apply` or `rebase` a change request.
#[utoipa::path(post, path = "/v1/change-requests/{id}/{action}", tag = "change requests",
    request_body = ActionBody,
    responses((status = 200, body = ChangeRequest), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`stale_change_request` with the keys' current state, or a request that moved")))]
pub async fn act(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = id_of(&req);
    let action = req.match_info().get("action").unwrap_or_default().to_owned();
    let body: ActionBody = if req.headers().contains_key(header::CONTENT_TYPE) {
        read_json(&req, payload, &state).await?
    } else {
        ActionBody::default()
    };
    if body.reason.as_ref().is_some_and(|r| r.len() > MAX_COMMENT_BYTES) {
        return Err(ApiError::InvalidValue(format!(
            "the reason is over {MAX_COMMENT_BYTES} bytes"
        )));
    }
    let (at, mut request) = readable(&state, &req, &id)?;
    // Every action needs the right to write every namespace the request touches.
    let mut by = String::new();
    for op in &request.ops {
        by = authorize(&state, &req, Access::Write, Some(&op.namespace))?;
    }
    if request.state.is_final() {
        return Err(final_state(&request));
    }
    match action.as_str() {
        "approve" => {
            if by == request.author && !request.self_approval {
                return Err(ApiError::Forbidden(
                    "you wrote this change request; its approvals must come from someone else"
                        .into(),
                ));
            }
            if body.digest.as_deref() != Some(request.digest.as_str()) {
                return Err(ApiError::Coded(
                    ErrorCode::Conflict,
                    format!(
                        "the request's digest is {}, not the one approved ({}): its content changed \
                         since it was read; read it again",
                        request.digest,
                        body.digest.as_deref().unwrap_or("none")
                    ),
                ));
            }
            if request.state != State::Open && request.state != State::Approved {
                return Err(ApiError::Coded(
                    ErrorCode::Conflict,
                    "only an open request is approved".into(),
                ));
            }
            if !request.approvals.iter().any(|a| a.by == by && a.digest == request.digest) {
                request.approvals.push(Approval {
                    by: by.clone(),
                    at: Utc::now(),
                    digest: request.digest.clone(),
                });
            }
            if request.counted_approvals()
                >= usize::try_from(request.required).unwrap_or(usize::MAX)
            {
                request.state = State::Approved;
            }
            request.moved("approved", &by, body.reason);
        }
        "reject" => {
            request.state = State::Rejected;
            request.moved("rejected", &by, body.reason);
        }
        "cancel" => {
            let admin = caller(&state, &req)?.is_none_or(|p| p.role == Role::Admin);
            if by != request.author && !admin {
                return Err(ApiError::Forbidden(
                    "only the author or an admin cancels a request".into(),
                ));
            }
            request.state = State::Cancelled;
            request.moved("cancelled", &by, body.reason);
        }
        "rebase" => {
            // New base revisions: new content, which the approvals of the old do not cover.
            for (slot, base) in request.base_revisions.iter_mut() {
                let (namespace, key) = slot.split_once('/').unwrap_or_default();
                *base = state.store.get(namespace, key).map_or(0, |e| e.revision);
            }
            request.digest =
                ChangeRequest::digest_of(&request.ops, &request.base_revisions, request.apply_at);
            request.approvals.clear();
            request.reason = None;
            request.state = if request.required == 0 { State::Approved } else { State::Open };
            request.moved("rebased", &by, body.reason);
        }
        "apply" => {
            // An apply is made once by its nature (its request moves to `applied`); the
            // header is still checked.
            idempotency::of_request(&req)?;
            let applied = requests::apply(&state.store, &id, &by).await?;
            return Ok(HttpResponse::Ok().json(applied));
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "no action {other:?}: approve, reject, cancel, rebase or apply"
            )))
        }
    }
    let mut write = saving(&request, Some(at), &by);
    write.idempotency = idempotency::of_request(&req)?;
    state.store.write(write).await?;
    Ok(HttpResponse::Ok().json(request))
}

/// The review items of break-glass writes, unacknowledged first.
#[utoipa::path(get, path = "/v1/reviews", tag = "change requests", responses((status = 200, body = Object)))]
pub async fn reviews(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Access::Read, None)?;
    let (_, entries) = state.store.snapshot(&[REVIEWS_NAMESPACE.to_owned()]);
    let mut items: Vec<Value> = entries.iter().map(|e| e.value.clone()).collect();
    items.sort_by_key(|item| {
        (!item["acknowledged"].is_null(), std::cmp::Reverse(item["revision"].as_u64()))
    });
    Ok(HttpResponse::Ok().json(json!({ "reviews": items })))
}

/// Someone other than the admin who broke glass acknowledges the review item.
#[utoipa::path(post, path = "/v1/reviews/{id}/ack", tag = "change requests",
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn acknowledge(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let by = authorize(&state, &req, Access::Write, None)?;
    let id = id_of(&req);
    let entry = state
        .store
        .get(REVIEWS_NAMESPACE, &id)
        .ok_or_else(|| ApiError::NotFound(format!("review {id} not found")))?;
    let mut item = entry.value.clone();
    if item["by"].as_str() == Some(by.as_str()) {
        return Err(ApiError::Forbidden(
            "the review is for someone other than who broke glass".into(),
        ));
    }
    if item["acknowledged"].is_null() {
        item["acknowledged"] = json!({ "by": by, "at": Utc::now() });
        let mut write =
            WriteRequest::new(REVIEWS_NAMESPACE, id, Mutation::Put { value: item.clone() }, by);
        write.precondition = crate::store::Precondition::Revision(entry.revision);
        write.authority = Authority::System;
        state.store.write(write).await?;
    }
    Ok(HttpResponse::Ok().json(item))
}
