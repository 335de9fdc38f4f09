//! Server-side evaluation of a release for a subject: what the client SDKs compute locally.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use graycast_protocol::gray::ReleaseDecision;
use graycast_protocol::{evaluate, ErrorBody, Variant};

use super::{current_entry, KeyPath};
use crate::auth::Access;
use crate::error::ApiError;
use crate::state::{authorize, AppState};

/// Most attributes one evaluation may carry.
pub const MAX_ATTRIBUTES: usize = 64;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/release/{ns:[^/]*}/{key:[^/]*}").route(web::get().to(release)));
}

/// Evaluates the key for `subject` with `attr.NAME=VALUE` attributes. Without a
/// subject the variant is drawn at random with the release's percent.
#[utoipa::path(get, path = "/v1/release/{ns}/{key}", tag = "gray",
    params(("subject" = Option<String>, Query, description = "the subject's id (user, instance...)"),
           ("attr.NAME" = Option<String>, Query, description = "an attribute of the subject, for rules")),
    responses((status = 200, body = ReleaseDecision), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn release(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: KeyPath,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let KeyPath { namespace, key } = path;
    authorize(&state, &req, Access::Read, Some(&namespace))?;
    let mut subject = None;
    let mut attrs = BTreeMap::new();
    for (name, value) in query.into_inner() {
        if name == "subject" {
            subject = Some(value);
        } else if let Some(attribute) = name.strip_prefix("attr.").filter(|a| !a.is_empty()) {
            attrs.insert(attribute.to_owned(), value);
        } else {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {name:?}; use subject and attr.NAME"
            )));
        }
    }
    if attrs.len() > MAX_ATTRIBUTES {
        return Err(ApiError::BadRequest(format!(
            "{} attributes given, the limit is {MAX_ATTRIBUTES}",
            attrs.len()
        )));
    }
    let entry = current_entry(&state, &namespace, &key)?;
    let decision = evaluate(entry.gray.as_ref(), subject.as_deref(), &attrs);
    let value = match (&decision.variant, &entry.gray) {
        (Variant::Gray, Some(gray)) => gray.value.clone(),
        _ => entry.value.clone(),
    };
    Ok(HttpResponse::Ok().json(ReleaseDecision {
        namespace,
        key,
        variant: decision.variant,
        value,
        revision: entry.revision,
        reason: decision.reason,
        bucket: decision.bucket,
    }))
}
