//! Typed configs: a namespace's JSON Schemas, set, read, removed, listed in history and
//! rolled back (see `crate::schema`). Each is a write of the namespace's entry in the
//! reserved namespace `graycast.schemas`, with the entry routes' conditions and
//! `Idempotency-Key`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use graycast_protocol::error::ErrorCode;
use graycast_protocol::rest::{HistoryList, RollbackRequest};
use graycast_protocol::{Entry, ErrorBody, Revision};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::configs::{DEFAULT_HISTORY_LIMIT, MAX_PAGE_BYTES};
use super::{check_names, etag, read_json};
use crate::auth::Access;
use crate::error::ApiError;
use crate::schema::{Compiled, Mode, SchemaDocument, Violation, MAX_LISTED, SCHEMAS_NAMESPACE};
use crate::state::{authorize, AppState};
use crate::store::{Mutation, StoreError, WriteRequest};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/schemas/{ns:[^/]*}")
            .route(web::get().to(get))
            .route(web::put().to(put))
            .route(web::delete().to(delete)),
    )
    .service(web::resource("/v1/schemas/{ns:[^/]*}/history").route(web::get().to(history)))
    .service(web::resource("/v1/schemas/{ns:[^/]*}/rollback").route(web::post().to(rollback)));
}

/// The body of `PUT /v1/schemas/{ns}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaRequest {
    /// JSON Schemas (2020-12) by exact key or glob (`*`); a key takes the schema of its exact
    /// name, else of the longest matching glob.
    #[schema(value_type = Object)]
    pub schemas: std::collections::BTreeMap<String, serde_json::Value>,
    /// `strict` (default): refused while live values break it; `ratchet`: accepted, and
    /// only new writes are held to it.
    #[serde(default)]
    pub mode: Mode,
    /// Schemas the `schemas` may `$ref` by absolute URI, supplied here (nothing is fetched).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub resources: std::collections::BTreeMap<String, serde_json::Value>,
    pub comment: Option<String>,
}

/// A namespace's schemas, and the live values that break them.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaAnswer {
    pub namespace: String,
    #[schema(value_type = Object)]
    pub schemas: std::collections::BTreeMap<String, serde_json::Value>,
    pub mode: Mode,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub resources: std::collections::BTreeMap<String, serde_json::Value>,
    /// The revision of the schemas' last change (also the ETag).
    pub revision: Revision,
    /// How many live stable and gray values break the schemas (a ratchet leaves them).
    pub out_of_schema: usize,
    /// The first 100 of them.
    pub violations: Vec<Violation>,
}

fn namespace_of(req: &HttpRequest) -> Result<String, ApiError> {
    let namespace = req.match_info().get("ns").unwrap_or_default().to_owned();
    check_names(&namespace, None)?;
    Ok(namespace)
}

/// How the live values of `namespace` break `compiled`: the first [`MAX_LISTED`], and how
/// many values break it.
fn live_violations(
    state: &AppState,
    namespace: &str,
    compiled: &Compiled,
) -> (usize, Vec<Violation>) {
    let (_, entries) = state.store.snapshot(&[namespace.to_owned()]);
    let mut count = 0;
    let mut listed = Vec::new();
    for entry in entries.iter().filter(|e| compiled.types(&e.key)) {
        for (variant, value) in std::iter::once(("stable", &entry.value))
            .chain(entry.gray.iter().map(|g| ("gray", &g.value)))
        {
            let found = compiled.check(&entry.key, variant, value);
            if !found.is_empty() {
                count += 1;
                let room = MAX_LISTED.saturating_sub(listed.len());
                listed.extend(found.into_iter().take(room));
            }
        }
    }
    (count, listed)
}

/// Compiles a document off the async workers (a large schema takes milliseconds).
async fn compile(document: SchemaDocument) -> Result<(SchemaDocument, Compiled), ApiError> {
    web::block(move || Compiled::compile(&document).map(|c| (document, c)))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::InvalidValue)
}

/// In `strict` mode, refuses schemas that live values break (409, listing them).
fn strictly(
    state: &AppState,
    namespace: &str,
    document: &SchemaDocument,
    compiled: &Compiled,
) -> Result<(), ApiError> {
    if document.mode == Mode::Ratchet {
        return Ok(());
    }
    let (count, violations) = live_violations(state, namespace, compiled);
    if count == 0 {
        return Ok(());
    }
    Err(ApiError::Detailed(
        ErrorCode::Conflict,
        format!(
            "{count} live value(s) of {namespace} break these schemas (strict mode); fix them \
             first, or set \"mode\": \"ratchet\" to hold only new writes to the schemas"
        ),
        json!({ "count": count, "violations": violations }),
    ))
}

fn answer(state: &AppState, entry: &Entry) -> Result<HttpResponse, ApiError> {
    let document: SchemaDocument = serde_json::from_value(entry.value.clone())
        .map_err(|e| ApiError::Internal(format!("stored schemas unreadable: {e}")))?;
    let (out_of_schema, violations) = match state.store.schemas(&entry.key) {
        Some(compiled) => live_violations(state, &entry.key, &compiled),
        None => (0, Vec::new()),
    };
    Ok(HttpResponse::Ok().insert_header((header::ETAG, etag(entry.revision))).json(SchemaAnswer {
        namespace: entry.key.clone(),
        schemas: document.schemas,
        mode: document.mode,
        resources: document.resources,
        revision: entry.revision,
        out_of_schema,
        violations,
    }))
}

fn write(
    req: &HttpRequest,
    namespace: &str,
    mutation: Mutation,
    actor: String,
    comment: Option<String>,
) -> Result<WriteRequest, ApiError> {
    super::write_to(
        req,
        SCHEMAS_NAMESPACE.to_owned(),
        namespace.to_owned(),
        mutation,
        actor,
        comment,
    )
}

fn no_schemas(namespace: &str) -> ApiError {
    ApiError::NotFound(format!("namespace {namespace} has no schemas"))
}

/// A namespace's schemas, with the live values out of them.
#[utoipa::path(get, path = "/v1/schemas/{ns}", tag = "schemas",
    responses((status = 200, body = SchemaAnswer, headers(("ETag" = String, description = "\"<revision>\""))),
              (status = 404, body = ErrorBody)))]
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let namespace = namespace_of(&req)?;
    authorize(&state, &req, Access::Read, Some(&namespace))?;
    let entry =
        state.store.get(SCHEMAS_NAMESPACE, &namespace).ok_or_else(|| no_schemas(&namespace))?;
    answer(&state, &entry)
}

/// Sets a namespace's schemas. Honours `If-Match` and `If-None-Match: *`.
#[utoipa::path(put, path = "/v1/schemas/{ns}", tag = "schemas", request_body = SchemaRequest,
    responses((status = 200, body = SchemaAnswer, headers(("ETag" = String, description = "\"<revision>\""))),
              (status = 409, body = ErrorBody, description = "strict mode: live values break the schemas (`details`)"),
              (status = 412, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let namespace = namespace_of(&req)?;
    let actor = authorize(&state, &req, Access::Write, Some(&namespace))?;
    let body: SchemaRequest = read_json(&req, payload, &state).await?;
    let (document, compiled) = compile(SchemaDocument {
        schemas: body.schemas,
        mode: body.mode,
        resources: body.resources,
    })
    .await?;
    strictly(&state, &namespace, &document, &compiled)?;
    let value = serde_json::to_value(&document).map_err(|e| ApiError::Internal(e.to_string()))?;
    let request = write(&req, &namespace, Mutation::Put { value }, actor, body.comment)?;
    let change = state.store.write(request).await?;
    let entry = change.entry.as_deref().ok_or_else(|| ApiError::Internal("no entry".into()))?;
    answer(&state, entry)
}

/// Removes a namespace's schemas: its values are untyped again. Honours `If-Match`.
#[utoipa::path(delete, path = "/v1/schemas/{ns}", tag = "schemas",
    responses((status = 200, body = graycast_protocol::rest::DeleteResponse), (status = 404, body = ErrorBody)))]
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let namespace = namespace_of(&req)?;
    let actor = authorize(&state, &req, Access::Write, Some(&namespace))?;
    let request = write(&req, &namespace, Mutation::Delete, actor, None)?;
    let change = state.store.write(request).await.map_err(|err| match err {
        StoreError::NotFound { .. } => no_schemas(&namespace),
        err => err.into(),
    })?;
    Ok(HttpResponse::Ok()
        .json(graycast_protocol::rest::DeleteResponse { revision: change.revision }))
}

/// The changes of a namespace's schemas, newest first (op `schema`).
#[utoipa::path(get, path = "/v1/schemas/{ns}/history", tag = "schemas",
    responses((status = 200, body = HistoryList), (status = 404, body = ErrorBody)))]
pub async fn history(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let namespace = namespace_of(&req)?;
    authorize(&state, &req, Access::Read, Some(&namespace))?;
    let page = state
        .store
        .history(SCHEMAS_NAMESPACE, &namespace, None, DEFAULT_HISTORY_LIMIT, MAX_PAGE_BYTES)
        .await?;
    if page.items.is_empty() {
        return Err(no_schemas(&namespace));
    }
    let next = if page.more { page.items.last().map(|i| i.revision) } else { None };
    Ok(HttpResponse::Ok().json(HistoryList { items: page.items, next }))
}

/// Makes the schemas of an earlier revision current again (checked as a `PUT` of them).
#[utoipa::path(post, path = "/v1/schemas/{ns}/rollback", tag = "schemas", request_body = RollbackRequest,
    responses((status = 200, body = SchemaAnswer), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rollback(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let namespace = namespace_of(&req)?;
    let actor = authorize(&state, &req, Access::Write, Some(&namespace))?;
    let body: RollbackRequest = read_json(&req, payload, &state).await?;
    let target = state
        .store
        .history_at(SCHEMAS_NAMESPACE, &namespace, body.to_revision)
        .await?
        .map(|item| item.value)
        .filter(|value| !value.is_null())
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "namespace {namespace} had no schemas at revision {}",
                body.to_revision
            ))
        })?;
    let document: SchemaDocument = serde_json::from_value(target)
        .map_err(|e| ApiError::Internal(format!("stored schemas unreadable: {e}")))?;
    let (document, compiled) = compile(document).await?;
    strictly(&state, &namespace, &document, &compiled)?;
    let mutation = Mutation::Rollback { to_revision: body.to_revision };
    let change = state.store.write(write(&req, &namespace, mutation, actor, body.comment)?).await?;
    let entry = change.entry.as_deref().ok_or_else(|| ApiError::Internal("no entry".into()))?;
    answer(&state, entry)
}
