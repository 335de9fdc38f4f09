//! Namespaces: the list, their descriptions, and who the caller is.
//!
//! A namespace exists while it holds keys or a description. Descriptions are entries of
//! the reserved namespace [`META_NAMESPACE`] (key: the namespace described, value:
//! `{"description": "..."}`), so they are durable, have history, reach every node of a
//! cluster and are pushed like any change; only this route writes them.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use graycast_protocol::rest::{
    NamespaceDescribed, NamespaceDescription, NamespaceList, NamespaceSummary, WhoAmI,
};
use graycast_protocol::ErrorBody;
use serde_json::{json, Value};

use super::{check_names, read_json, MAX_COMMENT_BYTES};
use crate::auth::{Access, Role};
use crate::error::ApiError;
use crate::push::selection::META_NAMESPACE;
use crate::state::{authorize, caller, AppState, ANONYMOUS};
use crate::store::{Mutation, Precondition, StoreError, WriteRequest};

/// Most bytes of a namespace's description.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/namespaces").route(web::get().to(namespaces)))
        .service(web::resource("/v1/namespaces/{ns:[^/]*}").route(web::put().to(describe)))
        .service(web::resource("/v1/whoami").route(web::get().to(whoami)));
}

/// The description an entry of [`META_NAMESPACE`] holds.
fn description_of(value: &Value) -> Option<String> {
    value.get("description").and_then(Value::as_str).map(str::to_owned)
}

/// Lists the namespaces the caller may read, with their number of keys and description.
#[utoipa::path(get, path = "/v1/namespaces", tag = "configs",
    responses((status = 200, body = NamespaceList), (status = 401, body = ErrorBody)))]
pub async fn namespaces(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let principal = caller(&state, &req)?;
    let (revision, list) = state.store.namespaces();
    let (_, described) = state.store.snapshot(&[META_NAMESPACE.to_owned()]);
    let mut summaries: BTreeMap<String, NamespaceSummary> = list
        .into_iter()
        .filter(|(name, _)| name != META_NAMESPACE)
        .map(|(name, keys)| {
            (name.clone(), NamespaceSummary { name, keys: keys as u64, description: None })
        })
        .collect();
    for entry in described {
        let summary = summaries.entry(entry.key.clone()).or_insert_with(|| NamespaceSummary {
            name: entry.key.clone(),
            keys: 0,
            description: None,
        });
        summary.description = description_of(&entry.value);
    }
    let namespaces = summaries
        .into_values()
        .filter(|s| principal.as_ref().is_none_or(|p| p.can(Access::Read, &s.name)))
        .collect();
    Ok(HttpResponse::Ok().json(NamespaceList { revision, namespaces }))
}

/// Describes a namespace (write access to it needed); an empty description removes it.
/// A namespace that is described exists, with no keys yet.
#[utoipa::path(put, path = "/v1/namespaces/{ns}", tag = "configs",
    request_body = NamespaceDescription,
    responses((status = 200, body = NamespaceDescribed), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn describe(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let namespace = req.match_info().get("ns").unwrap_or_default().to_owned();
    check_names(&namespace, None)?;
    if namespace == META_NAMESPACE {
        return Err(reserved());
    }
    let actor = authorize(&state, &req, Access::Write, Some(&namespace))?;
    let body: NamespaceDescription = read_json(&req, payload, &state).await?;
    if body.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(ApiError::InvalidValue(format!(
            "the description has {} bytes; the limit is {MAX_DESCRIPTION_BYTES}",
            body.description.len()
        )));
    }
    if body.comment.as_ref().is_some_and(|c| c.len() > MAX_COMMENT_BYTES) {
        return Err(ApiError::InvalidValue(format!(
            "the comment is over {MAX_COMMENT_BYTES} bytes"
        )));
    }
    let description = body.description.trim().to_owned();
    let mutation = if description.is_empty() {
        Mutation::Delete
    } else {
        Mutation::Put { value: json!({ "description": description }) }
    };
    let request = WriteRequest {
        namespace: META_NAMESPACE.to_owned(),
        key: namespace.clone(),
        mutation,
        precondition: Precondition::None,
        actor,
        comment: body.comment.filter(|c| !c.is_empty()),
        remote: req.peer_addr().map(|a| a.to_string()),
        idempotency: super::idempotency::of_request(&req)?,
        authority: crate::policy::Authority::Direct,
    };
    let revision = match state.store.write(request).await {
        Ok(change) => change.revision,
        // Removing a description that is not there changes nothing.
        Err(StoreError::NotFound { .. }) if description.is_empty() => state.store.revision(),
        Err(err) => return Err(err.into()),
    };
    let description = (!description.is_empty()).then_some(description);
    Ok(HttpResponse::Ok().json(NamespaceDescribed { name: namespace, description, revision }))
}

/// The refusal of a write to the reserved namespace through the entry routes.
pub(crate) fn reserved() -> ApiError {
    ApiError::Forbidden(format!(
        "namespace {META_NAMESPACE:?} is reserved for namespace descriptions; \
         set one with PUT /v1/namespaces/{{ns}}"
    ))
}

/// Who the presented token is: its name, role and namespace patterns.
#[utoipa::path(get, path = "/v1/whoami", tag = "configs",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let answer = match caller(&state, &req)? {
        None => WhoAmI {
            name: ANONYMOUS.to_owned(),
            role: "admin".into(),
            namespaces: vec!["*".into()],
        },
        Some(p) => WhoAmI {
            name: p.name.clone(),
            role: p.role.as_str().to_owned(),
            namespaces: if p.role == Role::Admin {
                vec!["*".into()]
            } else {
                p.patterns().to_vec()
            },
        },
    };
    Ok(HttpResponse::Ok().json(answer))
}
