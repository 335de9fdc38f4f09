//! What one write does to the current state of its key: the planning every engine shares.
//!
//! Planning checks the write's precondition and the key's state (a gray release to
//! patch, a ramp step still due, ...) and builds the change it makes. The change's
//! revision is filled in by the engine that commits it: the local writer knows it when it
//! plans, etcd only once its transaction succeeded.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use graycast_protocol::gray::{next_step_at, step_due_at};
use graycast_protocol::{Entry, Gray, Op, Revision};
use serde_json::Value;

use super::{Change, Mutation, Precondition, StoreError, WriteRequest};
use crate::policy::{governed, Authority, Policies};
use crate::schema::{Compiled, SCHEMAS_NAMESPACE};
use graycast_protocol::gray::GrayPatch;

/// Refuses a write that raises exposure in a namespace under a policy, unless it is made on
/// an approval, a break-glass or by the server (a ramp approved once advances on its own).
fn approved(
    request: &WriteRequest,
    current: Option<&Entry>,
    policies: Option<&Policies>,
) -> Result<(), StoreError> {
    // Most stores have no policy: nothing to look at.
    let Some(policies) = policies else { return Ok(()) };
    if request.authority != Authority::Direct
        || matches!(request.mutation, Mutation::GrayAdvance { .. })
        || reduces_exposure(&request.mutation, current)
    {
        return Ok(());
    }
    let Some(namespace) = governed(&request.namespace, &request.key) else { return Ok(()) };
    let Some(requirement) = policies.requirement(namespace) else {
        return Ok(());
    };
    Err(StoreError::ApprovalRequired(format!(
        "namespace {namespace} is under a policy ({} approval(s) by {}): this write needs an \
         approved change request (POST /v1/change-requests); a gray abort, a pause and a lower \
         percent go through directly",
        requirement.approvals,
        if requirement.self_approval { "anyone with write access" } else { "someone else" }
    )))
}

/// A planned change, waiting for its revision.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    change: Change,
    /// The change (re)creates its key: the entry's `created_revision` is its own.
    creates: bool,
}

impl Planned {
    /// The change, once committed at `revision`.
    pub fn commit(mut self, revision: Revision) -> Change {
        self.change.revision = revision;
        if let Some(entry) = &mut self.change.entry {
            let entry = Arc::make_mut(entry);
            entry.revision = revision;
            if self.creates {
                entry.created_revision = revision;
            }
        }
        self.change
    }

    /// The change as planned (its revision, and a new key's `created_revision`, still 0).
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub fn change(&self) -> &Change {
        &self.change
    }
}

/// Decides what one write does to the current state of its key.
///
/// `schemas` are the namespace's JSON Schemas as of this write: the values the write brings
/// (a stable value put, restored or promoted, a gray value started) must pass them.
pub(crate) fn plan(
    request: &WriteRequest,
    current: Option<&Entry>,
    now: DateTime<Utc>,
    schemas: Option<&Compiled>,
    policies: Option<&Policies>,
) -> Result<Planned, StoreError> {
    let what = || format!("key {}/{}", request.namespace, request.key);
    approved(request, current, policies)?;
    if let Precondition::Http { if_match, if_none_match } = &request.precondition {
        let revision = current.map(|e| e.revision);
        if let Some(tags) = if_match {
            if !revision.is_some_and(|r| tags.matches(r)) {
                return Err(StoreError::PreconditionFailed(format!(
                    "{} is {}, which If-Match does not name",
                    what(),
                    revision.map_or("absent".into(), |r| format!("at revision {r}"))
                )));
            }
        }
        if let (Some(tags), Some(revision)) = (if_none_match, revision) {
            if tags.matches(revision) {
                return Err(StoreError::PreconditionFailed(format!(
                    "{} is at revision {revision}, which If-None-Match names",
                    what()
                )));
            }
        }
    }
    match (&request.precondition, current) {
        (Precondition::None | Precondition::Http { .. }, _) => {}
        (Precondition::Revision(expected), Some(entry)) if entry.revision != *expected => {
            return Err(StoreError::RevisionMismatch {
                what: what(),
                expected: *expected,
                actual: entry.revision,
            });
        }
        (Precondition::Revision(_) | Precondition::Exists, None) => {
            return Err(StoreError::Missing { what: what() });
        }
        (Precondition::Absent, Some(entry)) => {
            return Err(StoreError::AlreadyExists { what: what(), revision: entry.revision });
        }
        _ => {}
    }
    let no_key = || StoreError::NotFound { what: what() };
    let no_gray = || StoreError::NotFound { what: format!("a gray release of {}", what()) };
    let current_gray = current.and_then(|e| e.gray.as_ref());
    // What the history and audit feed say of a write made on someone's authority.
    let on_authority = match &request.authority {
        Authority::Approved { request } => Some(format!("change request {request}")),
        Authority::BreakGlass { reason } => Some(format!("break glass: {reason}")),
        Authority::Direct | Authority::System => None,
    };
    let change = |op, entry, note: Option<String>| Change {
        revision: 0,
        op,
        namespace: request.namespace.clone(),
        key: request.key.clone(),
        entry,
        at: now,
        by: request.actor.clone(),
        note: note.or_else(|| on_authority.clone()),
        comment: request.comment.clone(),
        remote: request.remote.clone(),
        idempotency: request.idempotency.clone(),
    };
    let (op, value, gray, note) = match &request.mutation {
        Mutation::Put { value } => (Op::Put, value.clone(), current_gray.cloned(), None),
        Mutation::Restore { value, .. } => {
            (Op::Rollback, value.clone(), current_gray.cloned(), None)
        }
        Mutation::Rollback { to_revision } => {
            // Resolved into `Restore` by the store before planning.
            return Err(StoreError::Invalid(format!(
                "rollback of {} to {to_revision} was not resolved",
                what()
            )));
        }
        Mutation::Delete => {
            if current.is_none() {
                return Err(no_key());
            }
            let op = if request.namespace == SCHEMAS_NAMESPACE { Op::Schema } else { Op::Delete };
            return Ok(Planned { change: change(op, None, None), creates: false });
        }
        Mutation::GrayStart { gray } | Mutation::GrayRestore { gray } => {
            let entry = current.ok_or_else(no_key)?;
            if gray.value == entry.value {
                return Err(StoreError::Invalid(
                    "the gray value equals the stable value: there is nothing to release; \
                     give the new value to ship"
                        .into(),
                ));
            }
            // The release begins at the commit, so the schedule runs on the clock the
            // ramp's steps are checked against, not the handler's.
            let mut gray = Gray::clone(gray);
            if matches!(request.mutation, Mutation::GrayStart { .. }) {
                gray.started_at = now;
                gray.next_step_at = step_due_at(&gray, now);
            }
            (Op::Gray, entry.value.clone(), Some(gray), None)
        }
        Mutation::GrayPatch(patch) => {
            let entry = current.ok_or_else(no_key)?;
            let running = current_gray.ok_or_else(no_gray)?;
            let next = patch.clone().apply(running, now).map_err(|e| StoreError::Invalid(e.0))?;
            (Op::Gray, entry.value.clone(), Some(next), None)
        }
        Mutation::GrayAdvance { started_at, step } => {
            let entry = current.ok_or_else(no_key)?;
            let running = current_gray.ok_or_else(no_gray)?;
            let due = running.next_step_at.is_some_and(|at| at <= now);
            if running.started_at != *started_at || running.step != *step || running.paused || !due
            {
                return Err(StoreError::Superseded(format!(
                    "the ramp of {} is no longer at step {step} and due",
                    what()
                )));
            }
            advance(entry, running, now)
        }
        Mutation::Promote => {
            current.ok_or_else(no_key)?;
            let running = current_gray.ok_or_else(no_gray)?;
            (Op::Promote, running.value.clone(), None, None)
        }
        Mutation::Abort { started_at, note } => {
            let entry = current.ok_or_else(no_key)?;
            let running = current_gray.ok_or_else(no_gray)?;
            if started_at.is_some_and(|at| at != running.started_at) {
                return Err(StoreError::Superseded(format!(
                    "the gray release of {} was replaced",
                    what()
                )));
            }
            (Op::Abort, entry.value.clone(), None, note.clone())
        }
    };
    if let Some(schemas) = schemas {
        let brought = match &request.mutation {
            Mutation::Put { .. } | Mutation::Restore { .. } => Some(("stable", &value)),
            Mutation::GrayStart { .. } | Mutation::GrayRestore { .. } => {
                gray.as_ref().map(|g| ("gray", &g.value))
            }
            // A promotion makes the gray value the stable one, by hand or at a ramp's end.
            _ if op == Op::Promote => Some(("stable", &value)),
            _ => None,
        };
        if let Some((variant, value)) = brought {
            let violations = schemas.check(&request.key, variant, value);
            if !violations.is_empty() {
                return Err(StoreError::SchemaViolation(violations));
            }
        }
    }
    // Changes of the schemas namespace are schema changes, whatever wrote them.
    let op = if request.namespace == SCHEMAS_NAMESPACE { Op::Schema } else { op };
    let entry = Entry {
        namespace: request.namespace.clone(),
        key: request.key.clone(),
        value,
        revision: 0,
        created_revision: current.map_or(0, |e| e.created_revision),
        version: current.map_or(1, |e| e.version + 1),
        updated_at: now,
        updated_by: request.actor.clone(),
        gray,
    };
    Ok(Planned { change: change(op, Some(Arc::new(entry)), note), creates: current.is_none() })
}

/// One scheduled move of a ramp whose step is due: to the next step, or at the end of
/// the ramp to a promotion (with `auto_promote`) or to rest at the last step.
fn advance(
    entry: &Entry,
    running: &Gray,
    now: DateTime<Utc>,
) -> (Op, Value, Option<Gray>, Option<String>) {
    let next_index = running.step as usize + 1;
    let promote = |note: String| (Op::Promote, running.value.clone(), None, Some(note));
    let Some(next_step) = running.steps.get(next_index) else {
        if running.auto_promote {
            return promote("ramp completed; promoted automatically".into());
        }
        let mut rest = running.clone();
        rest.next_step_at = None;
        return (Op::Gray, entry.value.clone(), Some(rest), Some("ramp completed".into()));
    };
    let last = next_index + 1 == running.steps.len();
    if last && next_step.hold_secs.is_none() && running.auto_promote {
        return promote(format!(
            "ramp reached its last step ({}%); promoted automatically",
            next_step.percent
        ));
    }
    let mut next = running.clone();
    next.step = next_index as u32;
    // A ramp never lowers the share: subjects already in gray stay there, also
    // when an operator raised the percent beyond the next step by hand.
    next.percent = next_step.percent.max(running.percent);
    next.next_step_at = next_step_at(&next.steps, next.step, false, now);
    // Numbered from 1, as people count steps (`steps[0]` is step 1).
    let note = format!("ramp step {} of {}: {}%", next_index + 1, next.steps.len(), next.percent);
    (Op::Gray, entry.value.clone(), Some(next), Some(note))
}

/// Whether a write can only lower what its key exposes: a gray abort, a pause, a lower
/// percent (nothing else changed). These never wait for an approver.
pub fn reduces_exposure(mutation: &Mutation, current: Option<&Entry>) -> bool {
    match mutation {
        Mutation::Abort { .. } => true,
        Mutation::GrayPatch(patch) => {
            let running = current.and_then(|e| e.gray.as_ref());
            let GrayPatch { percent, allow, deny, rules, paused, comment: _ } = patch;
            allow.is_none()
                && deny.is_none()
                && rules.is_none()
                && *paused != Some(false)
                && match (percent, running) {
                    (None, _) => true,
                    (Some(p), Some(running)) => *p <= running.percent,
                    (Some(_), None) => false,
                }
        }
        _ => false,
    }
}
