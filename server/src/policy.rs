//! Four-eyes policies: which namespaces need approved change requests, and how many
//! approvals. The policies are one entry of the reserved namespace [`POLICIES_NAMESPACE`]
//! (revisioned, audited, pushed like any value); the store refuses, in the planning every
//! engine shares, any write to a governed namespace that raises exposure unless it comes
//! from an approved change request, a break-glass or the server itself (`store::plan`,
//! which also says which writes reduce exposure). So no route, import or scheduler path
//! goes around it.

use std::sync::Arc;

use graycast_protocol::{Entry, Revision};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::glob_match;

/// The reserved namespace holding the policies, under [`POLICIES_KEY`].
pub const POLICIES_NAMESPACE: &str = "graycast.policies";
/// The one key of [`POLICIES_NAMESPACE`].
pub const POLICIES_KEY: &str = "policies";
/// The reserved namespace holding the review items of break-glass writes, by id.
pub const REVIEWS_NAMESPACE: &str = "graycast.reviews";
/// Most policies.
pub const MAX_POLICIES: usize = 100;

/// One policy: the namespaces it governs and what a change there needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Namespace names or globs (`*` any run of characters), such as `prod-*`.
    pub namespaces: Vec<String>,
    /// Approvals by someone other than the author a change request needs (1 to 5).
    #[serde(deserialize_with = "graycast_protocol::value::integer")]
    #[schema(minimum = 1, maximum = 5)]
    pub approvals: u64,
    /// Whether the author's own approval counts (default: no).
    #[serde(default)]
    pub self_approval: bool,
}

/// Every policy (the body of `PUT /v1/policies`, and the stored value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    pub policies: Vec<Policy>,
}

/// What a governed namespace needs: the strictest of the policies that match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    pub approvals: u64,
    pub self_approval: bool,
}

impl Policies {
    /// Checks the limits; the error names the policy.
    pub fn check(&self) -> Result<(), String> {
        if self.policies.len() > MAX_POLICIES {
            return Err(format!("at most {MAX_POLICIES} policies"));
        }
        for (i, policy) in self.policies.iter().enumerate() {
            if !(1..=5).contains(&policy.approvals) {
                return Err(format!("policy {i}: approvals is 1 to 5, not {}", policy.approvals));
            }
            if policy.namespaces.is_empty() || policy.namespaces.len() > 100 {
                return Err(format!("policy {i}: 1 to 100 namespace patterns"));
            }
            for pattern in &policy.namespaces {
                let name = pattern.replace('*', "");
                let valid = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !valid || pattern.len() > 128 || pattern.is_empty() {
                    return Err(format!("policy {i}: {pattern:?} is not a namespace name or glob"));
                }
            }
        }
        Ok(())
    }

    /// What a change in `namespace` needs, if a policy governs it.
    pub fn requirement(&self, namespace: &str) -> Option<Requirement> {
        self.policies
            .iter()
            .filter(|p| p.namespaces.iter().any(|pattern| glob_match(pattern, namespace)))
            .fold(None, |strictest: Option<Requirement>, p| {
                Some(match strictest {
                    None => Requirement { approvals: p.approvals, self_approval: p.self_approval },
                    Some(r) => Requirement {
                        approvals: r.approvals.max(p.approvals),
                        self_approval: r.self_approval && p.self_approval,
                    },
                })
            })
    }

    /// The policies of the stored entry (none when it is absent or unreadable).
    pub fn of(entry: Option<&Arc<Entry>>) -> Option<(Revision, Policies)> {
        let entry = entry?;
        let policies = serde_json::from_value(entry.value.clone()).ok()?;
        Some((entry.revision, policies))
    }
}

/// On whose authority a write is made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Authority {
    /// A request of its caller's own: governed namespaces take only exposure-reducing ones.
    #[default]
    Direct,
    /// An op of an approved change request being applied.
    Approved { request: String },
    /// An admin's `X-Graycast-Break-Glass`, with its reason (audited, reviewed after).
    BreakGlass { reason: String },
    /// The server's own: a ramp step of a release approved once, a guard abort.
    System,
}

/// The namespace whose policy governs a write to `namespace`/`key`: the namespace typed by a
/// schema write, the namespace itself otherwise; none for the other reserved namespaces.
pub fn governed<'a>(namespace: &'a str, key: &'a str) -> Option<&'a str> {
    if namespace == crate::schema::SCHEMAS_NAMESPACE {
        return Some(key);
    }
    (!namespace.starts_with("graycast.")).then_some(namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(json: serde_json::Value) -> Policies {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_strictest_matching_policy_governs() {
        let p = policies(serde_json::json!({"policies": [
            {"namespaces": ["prod-*"], "approvals": 1, "self_approval": true},
            {"namespaces": ["prod-pay*"], "approvals": 2},
        ]}));
        assert!(p.check().is_ok());
        assert_eq!(
            p.requirement("prod-web"),
            Some(Requirement { approvals: 1, self_approval: true })
        );
        assert_eq!(
            p.requirement("prod-payments"),
            Some(Requirement { approvals: 2, self_approval: false })
        );
        assert_eq!(p.requirement("staging"), None);
        let bad =
            policies(serde_json::json!({"policies": [{"namespaces": ["x"], "approvals": 6}]}));
        assert!(bad.check().is_err());
    }
}
