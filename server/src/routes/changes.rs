//! The audit feed: who changed what, when, from where and why, in revision order.

use actix_web::{web, HttpRequest, HttpResponse};
use graycast_protocol::rest::{ChangeItem, ChangeList};
use graycast_protocol::{ErrorBody, Revision};
use serde::Deserialize;
use utoipa::IntoParams;

use super::check_names;
use crate::auth::Access;
use crate::error::ApiError;
use crate::push::selection::readable;
use crate::state::{authorize, caller, AppState};
use crate::store::ChangePage;

/// Items returned when the request names no limit.
pub const DEFAULT_CHANGES_LIMIT: usize = 100;
/// Most items one request returns.
pub const MAX_CHANGES_LIMIT: usize = 1000;
/// Most changes one request looks through for its filters; a page that stops there says
/// where to go on in `next`.
const MAX_SCANNED: usize = 10_000;
/// Changes read from the store at a time.
const PAGE: usize = 500;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/changes").route(web::get().to(changes)));
}

/// Query of the audit feed.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    /// Changes after this revision. Without it: the changes among the last `limit`
    /// revisions (the recent ones).
    #[param(minimum = 0)]
    since: Option<Revision>,
    /// Most items (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Only changes of this namespace.
    namespace: Option<String>,
    /// Only changes of this key (in every namespace, or in `namespace`).
    key: Option<String>,
}

/// The changes after `since`, oldest first, that the caller may read; `next` is the
/// `since` of the following page, `null` once the current revision is reached.
#[utoipa::path(get, path = "/v1/changes", tag = "configs", params(ChangesQuery),
    responses((status = 200, body = ChangeList), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "the change log no longer reaches back to `since`")))]
pub async fn changes(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ChangesQuery>,
) -> Result<HttpResponse, ApiError> {
    let ChangesQuery { since, limit, namespace, key } = query.into_inner();
    let limit = limit.unwrap_or(DEFAULT_CHANGES_LIMIT);
    if !(1..=MAX_CHANGES_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_CHANGES_LIMIT}, not {limit}"
        )));
    }
    if let Some(namespace) = &namespace {
        check_names(namespace, key.as_deref())?;
        authorize(&state, &req, Access::Read, Some(namespace))?;
    } else if let Some(key) = &key {
        check_names(key, None)?;
    }
    let reader = caller(&state, &req)?;
    let top = state.store.revision();
    let since = since.unwrap_or_else(|| top.saturating_sub(limit as u64));
    let mut items = Vec::new();
    let mut after = since;
    let mut scanned = 0;
    while after < top && items.len() < limit && scanned < MAX_SCANNED {
        let page = match state.store.changes_after(after, PAGE).await? {
            ChangePage::Changes(page) => page,
            ChangePage::Compacted => {
                return Err(ApiError::NotFound(format!(
                    "the change log no longer reaches back to revision {after}: it keeps the \
                     last {} changes",
                    state.config.changelog_retain
                )))
            }
        };
        // A short page is the end of the log: everything up to `top` has been seen (etcd
        // revisions have gaps, so `after` need not reach `top` by itself).
        let last_page = page.len() < PAGE;
        let count = page.len();
        for (i, change) in page.into_iter().enumerate() {
            if items.len() == limit || scanned == MAX_SCANNED || change.revision > top {
                break;
            }
            scanned += 1;
            after = change.revision;
            let wanted = namespace.as_ref().is_none_or(|n| *n == change.namespace)
                && key.as_ref().is_none_or(|k| *k == change.key)
                && reader.as_ref().is_none_or(|p| readable(p, &change.namespace, &change.key));
            if wanted {
                items.push(ChangeItem {
                    revision: change.revision,
                    op: change.op,
                    namespace: change.namespace.clone(),
                    key: change.key.clone(),
                    updated_by: change.by.clone(),
                    updated_at: change.at,
                    comment: change.comment.clone(),
                    note: change.note.clone(),
                    remote: change.remote.clone(),
                });
            }
            if last_page && i + 1 == count {
                after = top;
            }
        }
        if count == 0 {
            after = top;
        }
    }
    let next = (after < top).then_some(after);
    Ok(HttpResponse::Ok().json(ChangeList { items, next }))
}
