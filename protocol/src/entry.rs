//! The data model: entries, their gray section and their history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::Revision;

/// One configuration key with its current value and bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Entry {
    pub namespace: String,
    pub key: String,
    /// Any JSON value.
    pub value: Value,
    /// The store revision of the entry's last change.
    pub revision: Revision,
    /// The store revision at which the key was (re)created.
    pub created_revision: Revision,
    /// Number of changes to this key since it was (re)created, starting at 1.
    pub version: u64,
    pub updated_at: DateTime<Utc>,
    /// Who made the last change.
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
    Put,
    Delete,
    Gray,
    Promote,
    Abort,
    Rollback,
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
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Index of the current step in `steps`.
    #[serde(default)]
    pub step: u32,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub next_step_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub auto_promote: bool,
    #[serde(default)]
    pub guard: Option<Guard>,
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
    pub attribute: String,
    pub op: RuleOp,
    pub values: Vec<String>,
}

/// The comparison a [`Rule`] applies to an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleOp {
    In,
    NotIn,
    Eq,
    Prefix,
    SemverGte,
    SemverLt,
}

/// One step of a percent ramp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    pub percent: f64,
    /// How long the ramp stays at this step; absent on the last step.
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
    pub max_error_rate: f64,
    #[serde(deserialize_with = "crate::value::integer")]
    pub min_samples: u64,
}

/// One revision in the history of a key, newest first in listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryItem {
    pub revision: Revision,
    pub op: Op,
    /// The stable value after the change; `null` for a delete.
    pub value: Value,
    /// The gray section after the change.
    pub gray: Option<Gray>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    /// Why the change was made, when a ramp step or the guard made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The comment its author gave with the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}
