//! The data model: entries, their gray section and their history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::Revision;

/// One configuration key with its current value and bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Entry {
    /// The namespace holding the key; a valid name (see [`crate::name`]).
    pub namespace: String,
    /// The key's name within its namespace; a valid name (see [`crate::name`]).
    pub key: String,
    /// Any JSON value.
    pub value: Value,
    /// The store revision of the entry's last change.
    pub revision: Revision,
    /// The store revision at which the key was (re)created.
    pub created_revision: Revision,
    /// Number of changes to this key since it was (re)created, starting at 1.
    pub version: u64,
    /// When the last change was committed, by the clock of the server that committed it.
    pub updated_at: DateTime<Utc>,
    /// Who made the last change: a token's name, `anonymous` on an open server, or
    /// `scheduler` (ramp steps) and `guard` (guard aborts) for the server's own changes.
    pub updated_by: String,
    /// The running gray release, if any.
    pub gray: Option<Gray>,
}

/// The kind of a change. Every change is one revision.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// A `PUT` wrote the stable value, creating the key or replacing its value; a running
    /// gray release is kept.
    Put,
    /// The key was deleted, with any gray release; the change carries no entry.
    Delete,
    /// A gray release was started, replaced or patched, or its ramp moved (a step, or the
    /// ramp's end without promotion).
    Gray,
    /// The gray value became the stable value and the release ended, by hand or at the end
    /// of an `auto_promote` ramp.
    Promote,
    /// The gray release ended with the stable value unchanged, by hand or by its guard.
    Abort,
    /// The stable value was set back to the key's value at an earlier revision; a running
    /// gray release is kept.
    Rollback,
    /// A namespace's JSON Schemas were set, changed, rolled back or removed: a change of the
    /// reserved namespace `graycast.schemas`, whose key is the namespace they type.
    Schema,
}

impl Op {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Delete => "delete",
            Op::Gray => "gray",
            Op::Promote => "promote",
            Op::Abort => "abort",
            Op::Rollback => "rollback",
            Op::Schema => "schema",
        }
    }
}

/// A running gray (canary) release of a new value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Gray {
    /// The value served to subjects in the gray variant.
    pub value: Value,
    /// Share of subjects in the gray variant, 0 to 100 with at most two decimals.
    pub percent: f64,
    /// Salt of the sticky bucket hash, `"{namespace}/{key}"` by default.
    pub salt: String,
    /// Subjects always in the gray variant unless also in `deny`, whatever the rules and
    /// the percent; sorted, without repeats, at most 10,000.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Subjects always in the stable variant; sorted, without repeats, at most 10,000.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Rules a subject's attributes must all match before the percent applies (subjects
    /// in `allow` skip them); at most 32. Empty: every subject is eligible.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// The percent ramp the scheduler walks, at most 20 steps, never going down; empty
    /// when only an operator changes `percent`.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// The 0-based index of the current step in `steps`; 0 when there are no steps.
    #[serde(default)]
    pub step: u32,
    /// Whether the ramp is paused: it stays at `step` and `next_step_at` is null.
    #[serde(default)]
    pub paused: bool,
    /// When the scheduler next moves the ramp (to the next step, or to the end of the
    /// ramp); null while paused, without steps, and once the ramp has ended.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_step_at: Option<DateTime<Utc>>,
    /// Whether the end of the ramp promotes the gray value; only with `steps`.
    #[serde(default)]
    pub auto_promote: bool,
    /// The automatic abort on a climbing gray error rate; absent when unguarded.
    #[serde(default)]
    pub guard: Option<Guard>,
    /// When the release started (the commit of its start, server clock). Patches and ramp
    /// steps keep it, so it identifies the release in guard reports.
    pub started_at: DateTime<Utc>,
}

impl Gray {
    /// A release of `value` to `percent` of subjects under `salt`, with no lists, rules,
    /// ramp or guard, begun at `started_at`.
    pub fn new(
        value: Value,
        percent: f64,
        salt: impl Into<String>,
        started_at: DateTime<Utc>,
    ) -> Gray {
        Gray {
            value,
            percent,
            salt: salt.into(),
            allow: Vec::new(),
            deny: Vec::new(),
            rules: Vec::new(),
            steps: Vec::new(),
            step: 0,
            paused: false,
            next_step_at: None,
            auto_promote: false,
            guard: None,
            started_at,
        }
    }
}

/// An attribute rule: every rule must match for a subject to be eligible for gray.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rule {
    /// The name of the subject attribute compared, 1 to 256 bytes. A subject without
    /// the attribute fails the rule, whatever `op`.
    pub attribute: String,
    /// How the attribute is compared with `values`.
    pub op: RuleOp,
    /// The operands: 1 to 1,000 strings of 1 to 256 bytes; exactly one for `eq`,
    /// `semver_gte` and `semver_lt`, a semantic version for the latter two.
    pub values: Vec<String>,
}

/// The comparison a [`Rule`] applies to an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleOp {
    /// The attribute equals one of the values.
    In,
    /// The attribute equals none of the values (it must still be present).
    NotIn,
    /// The attribute equals the single value.
    Eq,
    /// The attribute starts with one of the values.
    Prefix,
    /// The attribute is a semantic version (an optional leading `v`) at or above the
    /// single value, by semver precedence; one that does not parse fails.
    SemverGte,
    /// The attribute is a semantic version below the single value, by semver precedence;
    /// one that does not parse fails.
    SemverLt,
}

/// One step of a percent ramp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    /// The gray share during this step, 0 to 100 with at most two decimals, not below the
    /// previous step's. Entering the step never lowers a higher percent set by hand.
    pub percent: f64,
    /// How long the ramp stays at this step, in seconds (1 to 30 days); only the last step
    /// may omit it, and then the ramp ends there.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::value::optional_integer"
    )]
    pub hold_secs: Option<u64>,
}

/// Automatic abort of a gray release whose error rate climbs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Guard {
    /// The highest tolerated gray error rate, `errors / (ok + errors)`, from 0 to 1: the
    /// release is aborted when the gray variant's rate exceeds it.
    pub max_error_rate: f64,
    /// How many gray outcomes (`ok + errors`) must be reported for the release before the
    /// guard may abort it; at least 1.
    #[serde(deserialize_with = "crate::value::integer")]
    pub min_samples: u64,
}

/// One revision in the history of a key, newest first in listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryItem {
    /// The store revision of this change.
    pub revision: Revision,
    /// What the change did.
    pub op: Op,
    /// The stable value after the change; `null` for a delete.
    pub value: Value,
    /// The gray section after the change; `null` when no release runs after it.
    pub gray: Option<Gray>,
    /// When the change was committed, by the clock of the server that committed it.
    pub updated_at: DateTime<Utc>,
    /// Who made the change, as in [`Entry::updated_by`].
    pub updated_by: String,
    /// Why the change was made, when a ramp step or the guard made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The comment its author gave with the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}
