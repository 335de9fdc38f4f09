//! Export and import: every namespace, entry, running gray release and description as one
//! JSON document, for backups, moves between servers and reviews of a whole configuration.
//!
//! An export is consistent at one revision and streams as it is written, so a large store
//! is never held twice in memory. An import validates the whole document before it writes
//! anything, then brings each key to the document's state with ordinary writes (commented
//! `import`, so each is a revision in history, pushed to subscribers): the stable value,
//! then the gray release (started as in the document, at the same step) or the end of a
//! release the document does not have. `dry_run` answers the diff without writing; `prune`
//! also deletes the keys the document does not have. An import is not one transaction: a
//! write refused midway (quota, an unavailable store) stops it, the keys before stay
//! imported, and a second run finishes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use graycast_protocol::gray::GrayRequest;
use graycast_protocol::rest::{ExportDocument, ImportReport, KeyRef, EXPORT_FORMAT};
use graycast_protocol::ws::ALL_NAMESPACES;
use graycast_protocol::{Entry, ErrorBody, Gray};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{body_error, check_names, check_value, read_json_body};
use crate::auth::Access;
use crate::error::ApiError;
use crate::push::selection::META_NAMESPACE;
use crate::schema::{Compiled, SchemaDocument, SCHEMAS_NAMESPACE};
use crate::state::{authorize, AppState};
use crate::store::{Mutation, Precondition, WriteRequest};

/// The comment of every write an import makes.
pub const IMPORT_COMMENT: &str = "import";
/// Bytes of an export serialized before they are handed to the connection.
const EXPORT_CHUNK: usize = 256 * 1024;
/// Keys an import writes at once (their writes share commits).
const IMPORT_CONCURRENCY: usize = 64;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/export").route(web::get().to(export)))
        .service(web::resource("/v1/import").route(web::post().to(import)));
}

/// Every entry of every namespace as of one revision (admins only).
#[utoipa::path(get, path = "/v1/export", tag = "operations",
    responses((status = 200, body = ExportDocument), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn export(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req, Access::Read, None)?;
    let store = state.store.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    // Serialized on a blocking thread, a chunk at a time: the connection's pace holds it.
    tokio::task::spawn_blocking(move || {
        let (revision, entries) = store.snapshot(&[ALL_NAMESPACES.to_owned()]);
        let mut chunk =
            format!("{{\"format\":{EXPORT_FORMAT},\"revision\":{revision},\"entries\":[")
                .into_bytes();
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                chunk.push(b',');
            }
            // Plain data with string keys always serializes.
            let _ = serde_json::to_writer(&mut chunk, entry.as_ref());
            if chunk.len() >= EXPORT_CHUNK
                && tx.blocking_send(Bytes::from(std::mem::take(&mut chunk))).is_err()
            {
                return;
            }
        }
        chunk.extend_from_slice(b"]}");
        let _ = tx.blocking_send(Bytes::from(chunk));
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, actix_web::Error>(chunk), rx))
    });
    Ok(HttpResponse::Ok().content_type("application/json").streaming(body))
}

/// Query of an import.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Answer what would change, and change nothing.
    #[serde(default)]
    dry_run: bool,
    /// Also delete the keys the document does not have.
    #[serde(default)]
    prune: bool,
}

/// Brings the server to a document's state (admins only); see the module docs.
#[utoipa::path(post, path = "/v1/import", tag = "operations", params(ImportQuery),
    request_body = ExportDocument,
    responses((status = 200, body = ImportReport), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn import(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ImportQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = authorize(&state, &req, Access::Write, None)?;
    let limit = usize::try_from(state.config.max_import_bytes).unwrap_or(usize::MAX);
    let body = read_json_body(&req, payload, &state, limit).await?;
    // Well-formed JSON that is not a valid document (a bad timestamp or a field of the
    // wrong type in some entry) is an invalid document, 422, as a bad value in it is.
    let document: ExportDocument =
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                ApiError::InvalidValue(format!("not a valid export document: {e}"))
            }
            _ => body_error(&e),
        })?;
    drop(body);
    if document.format != EXPORT_FORMAT {
        return Err(ApiError::InvalidValue(format!(
            "the document is of format {}; this server reads format {EXPORT_FORMAT}: import it \
             with the graycast version that wrote it, or one that reads its format",
            document.format
        )));
    }
    let (plans, schemas) = plan(&state, document)?;
    let (_, current) = state.store.snapshot(&[ALL_NAMESPACES.to_owned()]);
    let mut present: BTreeMap<(String, String), Arc<Entry>> =
        current.into_iter().map(|e| ((e.namespace.clone(), e.key.clone()), e)).collect();

    let mut report = ImportReport {
        dry_run: query.dry_run,
        revision: state.store.revision(),
        added: Vec::new(),
        changed: Vec::new(),
        unchanged: Vec::new(),
        removed: Vec::new(),
    };
    let mut work: Vec<(KeyRef, Vec<Mutation>)> = Vec::new();
    for plan in plans {
        let name = KeyRef { namespace: plan.namespace.clone(), key: plan.key.clone() };
        let mutations = match present.remove(&(plan.namespace.clone(), plan.key.clone())) {
            None => {
                report.added.push(name.clone());
                let mut steps = vec![Mutation::Put { value: plan.value }];
                steps.extend(plan.gray.map(|gray| Mutation::GrayRestore { gray: Box::new(gray) }));
                steps
            }
            Some(entry) => {
                let mut steps = Vec::new();
                if entry.value != plan.value {
                    steps.push(Mutation::Put { value: plan.value });
                }
                match (&entry.gray, plan.gray) {
                    (Some(running), Some(gray)) if same_release(running, &gray) => {}
                    (_, Some(gray)) => steps.push(Mutation::GrayRestore { gray: Box::new(gray) }),
                    (Some(_), None) => steps.push(Mutation::Abort { started_at: None, note: None }),
                    (None, None) => {}
                }
                if steps.is_empty() {
                    report.unchanged.push(name.clone());
                } else {
                    report.changed.push(name.clone());
                }
                steps
            }
        };
        if !mutations.is_empty() {
            work.push((name, mutations));
        }
    }
    if query.prune {
        for (namespace, key) in present.into_keys() {
            let name = KeyRef { namespace, key };
            report.removed.push(name.clone());
            work.push((name, vec![Mutation::Delete]));
        }
    }
    check_schemas(&state, &schemas, &work)?;
    if query.dry_run {
        return Ok(HttpResponse::Ok().json(report));
    }
    // Schemas first: the values after them are checked against the schemas the document sets.
    let (schemas_work, values_work): (Vec<_>, Vec<_>) =
        work.into_iter().partition(|(name, _)| name.namespace == SCHEMAS_NAMESPACE);
    let remote = req.peer_addr().map(|a| a.to_string());
    let authority = super::authority(&req)?;
    for work in [schemas_work, values_work] {
        apply(&state, work, &actor, &remote, &authority).await?;
    }
    report.revision = state.store.revision();
    Ok(HttpResponse::Ok().json(report))
}

/// Makes an import's writes, many keys at once; the first refusal stops it.
async fn apply(
    state: &AppState,
    work: Vec<(KeyRef, Vec<Mutation>)>,
    actor: &str,
    remote: &Option<String>,
    authority: &crate::policy::Authority,
) -> Result<(), ApiError> {
    let store = state.store.clone();
    let mut writes = futures_util::stream::iter(work.into_iter().map(|(name, mutations)| {
        let (store, actor, remote) = (store.clone(), actor.to_owned(), remote.clone());
        let authority = authority.clone();
        async move {
            for mutation in mutations {
                let request = WriteRequest {
                    namespace: name.namespace.clone(),
                    key: name.key.clone(),
                    mutation,
                    precondition: Precondition::None,
                    actor: actor.clone(),
                    comment: Some(IMPORT_COMMENT.to_owned()),
                    remote: remote.clone(),
                    // An import is idempotent as it is: a repeat finds the keys as wanted.
                    idempotency: None,
                    authority: authority.clone(),
                };
                store.write(request).await.map_err(|err| (name.clone(), ApiError::from(err)))?;
            }
            Ok::<(), (KeyRef, ApiError)>(())
        }
    }))
    .buffer_unordered(IMPORT_CONCURRENCY);
    while let Some(done) = writes.next().await {
        if let Err((name, err)) = done {
            return Err(err.reworded(format!(
                "the import stopped at {}/{}: {err}; the keys written before it are imported, \
                 and running the import again finishes it",
                name.namespace, name.key
            )));
        }
    }
    Ok(())
}

/// One key as the document wants it, checked.
struct Plan {
    namespace: String,
    key: String,
    value: serde_json::Value,
    gray: Option<Gray>,
}

/// Checks every entry of a document as the write routes would, before anything is written;
/// also answers the schemas the document sets, compiled, by namespace.
fn plan(state: &AppState, document: ExportDocument) -> Result<(Vec<Plan>, Schemas), ApiError> {
    let mut schemas = Schemas::new();
    let mut seen = BTreeSet::new();
    let mut plans = Vec::with_capacity(document.entries.len());
    for entry in document.entries {
        let Entry { namespace, key, value, gray, .. } = entry;
        let at = |what: &str| format!("{what} of {namespace}/{key}");
        // A name inside the document is part of the body: an invalid one makes the
        // document invalid (422), as an invalid value does.
        let invalid =
            |err: ApiError| ApiError::InvalidValue(format!("an entry of the document: {err}"));
        check_names(&namespace, Some(&key)).map_err(invalid)?;
        if !seen.insert((namespace.clone(), key.clone())) {
            return Err(ApiError::InvalidValue(format!(
                "{namespace}/{key} is in the document twice"
            )));
        }
        check_value(state, &value, &at("the value"))?;
        if namespace == SCHEMAS_NAMESPACE {
            check_names(&key, None).map_err(invalid)?;
            let compiled = serde_json::from_value::<SchemaDocument>(value.clone())
                .map_err(|e| e.to_string())
                .and_then(|document| Compiled::compile(&document))
                .map_err(|e| ApiError::InvalidValue(format!("the schemas of {key}: {e}")))?;
            if gray.is_some() {
                return Err(ApiError::InvalidValue(format!(
                    "{namespace}/{key} holds schemas, which have no gray release"
                )));
            }
            schemas.insert(key.clone(), Arc::new(compiled));
        }
        if namespace == META_NAMESPACE {
            check_names(&key, None).map_err(invalid)?;
            if !value.get("description").is_some_and(serde_json::Value::is_string) || gray.is_some()
            {
                return Err(ApiError::InvalidValue(format!(
                    "{namespace}/{key} must be {{\"description\": \"…\"}}, without a gray release"
                )));
            }
        }
        let gray = match gray {
            None => None,
            Some(gray) => {
                check_value(state, &gray.value, &at("the gray value"))?;
                Some(release(&namespace, &key, gray).map_err(|e| {
                    ApiError::InvalidValue(format!("the gray release of {namespace}/{key}: {e}"))
                })?)
            }
        };
        if gray.as_ref().is_some_and(|g| g.value == value) {
            return Err(ApiError::InvalidValue(format!(
                "the gray value of {namespace}/{key} equals its stable value"
            )));
        }
        plans.push(Plan { namespace, key, value, gray });
    }
    Ok((plans, schemas))
}

/// Compiled schemas by the namespace they type.
type Schemas = BTreeMap<String, Arc<Compiled>>;

/// Refuses an import that would write a value its schemas refuse (the document's schemas
/// for the namespaces it types, else the current ones), listing the values (422).
fn check_schemas(
    state: &AppState,
    documented: &Schemas,
    work: &[(KeyRef, Vec<Mutation>)],
) -> Result<(), ApiError> {
    let mut violations = Vec::new();
    for (name, mutations) in work {
        let schemas = match documented.get(&name.namespace) {
            Some(schemas) => Some(schemas.clone()),
            None => state.store.schemas(&name.namespace),
        };
        let Some(schemas) = schemas else { continue };
        for mutation in mutations {
            match mutation {
                Mutation::Put { value } => {
                    violations.extend(schemas.check(&name.key, "stable", value));
                }
                Mutation::GrayRestore { gray } => {
                    violations.extend(schemas.check(&name.key, "gray", &gray.value));
                }
                _ => {}
            }
        }
    }
    if violations.is_empty() {
        return Ok(());
    }
    violations.truncate(crate::schema::MAX_LISTED);
    let listed = serde_json::json!(violations);
    let first = crate::store::StoreError::SchemaViolation(violations);
    Err(ApiError::Detailed(
        graycast_protocol::error::ErrorCode::SchemaViolation,
        format!("nothing was imported: {first}"),
        listed,
    ))
}

/// A document's release, validated as a start would be, at the document's step and with
/// its clocks.
fn release(namespace: &str, key: &str, gray: Gray) -> Result<Gray, String> {
    let (step, started_at, next_step_at) = (gray.step, gray.started_at, gray.next_step_at);
    let request = GrayRequest {
        value: gray.value,
        percent: Some(gray.percent),
        salt: Some(gray.salt),
        allow: gray.allow,
        deny: gray.deny,
        rules: gray.rules,
        steps: gray.steps,
        auto_promote: gray.auto_promote,
        guard: gray.guard,
        paused: gray.paused,
        comment: None,
    };
    let mut started = request.into_gray(namespace, key, Utc::now()).map_err(|e| e.to_string())?;
    if step as usize >= started.steps.len().max(1) {
        return Err(format!("step {step} is beyond its {} steps", started.steps.len()));
    }
    started.step = step;
    // Its clocks as the backup has them: a restored ramp does not start its hold over.
    started.started_at = started_at;
    started.next_step_at = if started.paused { None } else { next_step_at };
    Ok(started)
}

/// Whether a running release is the one a document describes (its start time and
/// schedule aside).
fn same_release(running: &Gray, wanted: &Gray) -> bool {
    running.value == wanted.value
        && running.percent == wanted.percent
        && running.salt == wanted.salt
        && running.allow == wanted.allow
        && running.deny == wanted.deny
        && running.rules == wanted.rules
        && running.steps == wanted.steps
        && running.step == wanted.step
        && running.paused == wanted.paused
        && running.auto_promote == wanted.auto_promote
        && running.guard == wanted.guard
}
