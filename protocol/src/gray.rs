//! Inputs of gray releases (start, patch, report) and their validation.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::rollout::Semver;
use crate::{Gray, Guard, Rule, RuleOp, Step};

/// Most subjects in `allow`, and in `deny`.
pub const MAX_SUBJECTS: usize = 10_000;
/// Longest subject id, in bytes.
pub const MAX_SUBJECT_LEN: usize = 256;
/// Most rules of a release.
pub const MAX_RULES: usize = 32;
/// Most values of one rule.
pub const MAX_RULE_VALUES: usize = 1_000;
/// Most steps of a ramp.
pub const MAX_STEPS: usize = 20;
/// Longest hold of a ramp step: 30 days.
pub const MAX_HOLD_SECS: u64 = 30 * 24 * 3600;
/// Longest salt, in bytes.
pub const MAX_SALT_LEN: usize = 256;

/// Why a gray release spec was refused. The message names the offending value.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayError(pub String);

impl std::fmt::Display for GrayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GrayError {}

fn fail<T>(message: String) -> Result<T, GrayError> {
    Err(GrayError(message))
}

/// Body of `PUT /v1/configs/{ns}/{key}/gray`: starts (or replaces) a gray release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrayRequest {
    /// The value for the gray variant.
    pub value: Value,
    /// Initial share in the gray variant; defaults to the first step's percent, else 0.
    #[serde(default)]
    pub percent: Option<f64>,
    /// Salt of the bucket hash; defaults to `"{namespace}/{key}"`.
    #[serde(default)]
    pub salt: Option<String>,
    /// Subjects always given the gray value unless also in `deny`; at most 10,000, each 1
    /// to 256 bytes. Stored sorted, without repeats.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Subjects never given the gray value; at most 10,000, each 1 to 256 bytes.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Rules a subject's attributes must all match before the percent applies; at most 32.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// A percent ramp: each step holds for `hold_secs`, then the next begins.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Promote the gray value when the ramp ends.
    #[serde(default)]
    pub auto_promote: bool,
    /// Abort the release automatically when the gray error rate climbs; none by default.
    #[serde(default)]
    pub guard: Option<Guard>,
    /// Start paused: the ramp does not move until resumed.
    #[serde(default)]
    pub paused: bool,
    /// Why, in the author's words (at most 1 KiB); kept in history and the audit feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Body of `PATCH /v1/configs/{ns}/{key}/gray`: changes a running release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrayPatch {
    /// The new gray share, 0 to 100 with at most two decimals; absent keeps it.
    #[serde(default)]
    pub percent: Option<f64>,
    /// Replaces the whole allow list (same limits as on start); absent keeps it.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Replaces the whole deny list (same limits as on start); absent keeps it.
    #[serde(default)]
    pub deny: Option<Vec<String>>,
    /// Replaces all the rules; absent keeps them.
    #[serde(default)]
    pub rules: Option<Vec<Rule>>,
    /// Pausing stops the ramp; resuming starts the current step's hold again.
    #[serde(default)]
    pub paused: Option<bool>,
    /// Why, in the author's words (at most 1 KiB); kept in history and the audit feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Body of `POST /v1/configs/{ns}/{key}/gray/report`: outcomes seen by a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// The variant the outcomes were seen with.
    pub variant: crate::rollout::Variant,
    /// Outcomes that went well; 0 when absent. `ok + errors` is 1 to 10,000 a report.
    #[serde(default, deserialize_with = "crate::value::integer")]
    pub ok: u64,
    /// Outcomes that failed; 0 when absent.
    #[serde(default, deserialize_with = "crate::value::integer")]
    pub errors: u64,
    /// The release the outcomes were seen with (its `started_at`). With it, outcomes of a
    /// release that has ended or been replaced are refused instead of counted for another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub release: Option<DateTime<Utc>>,
}

/// Outcome counts of one variant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutcomeCounts {
    /// Outcomes reported as successful.
    pub ok: u64,
    /// Outcomes reported as errors.
    pub errors: u64,
}

impl OutcomeCounts {
    /// All outcomes, `ok + errors` (saturating at `u64::MAX`).
    pub fn total(&self) -> u64 {
        self.ok.saturating_add(self.errors)
    }

    /// Errors over all outcomes; 0 with no outcome.
    pub fn error_rate(&self) -> f64 {
        if self.total() == 0 {
            0.0
        } else {
            self.errors as f64 / self.total() as f64
        }
    }
}

/// The guard's counts of a running release, per variant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GuardCounts {
    /// Outcomes reported with the stable value: the baseline, which the guard does not act on.
    pub stable: OutcomeCounts,
    /// Outcomes reported with the gray value: what the guard compares with its limits.
    pub gray: OutcomeCounts,
}

/// Answer of `GET /v1/configs/{ns}/{key}/gray` and of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GrayStatus {
    /// The key's namespace.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The entry's revision (its last change).
    pub revision: crate::Revision,
    /// The running release.
    pub gray: Gray,
    /// The outcomes reported for this release since it started. Kept in memory: a server
    /// restart starts them over.
    pub counts: GuardCounts,
}

/// Answer of `GET /v1/release/{ns}/{key}`: the server's evaluation for a subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseDecision {
    /// The key's namespace.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The variant the subject gets.
    pub variant: crate::rollout::Variant,
    /// The value the subject gets: the gray value in the gray variant, else the stable one.
    pub value: Value,
    /// The revision of the entry the evaluation read.
    pub revision: crate::Revision,
    /// Which branch of the evaluation decided.
    pub reason: crate::rollout::Reason,
    /// The subject's sticky bucket in `0..10000` when the percent decided (`reason` is
    /// `percent`); null otherwise.
    pub bucket: Option<u32>,
}

/// Checks a percent: 0 to 100, at most two decimals.
pub fn check_percent(what: &str, percent: f64) -> Result<(), GrayError> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return fail(format!("{what} {percent} is outside 0 to 100"));
    }
    let hundredths = percent * 100.0;
    if (hundredths - hundredths.round()).abs() > 1e-6 {
        return fail(format!("{what} {percent} has more than two decimals"));
    }
    Ok(())
}

fn check_subjects(what: &str, subjects: &[String]) -> Result<Vec<String>, GrayError> {
    if subjects.len() > MAX_SUBJECTS {
        return fail(format!(
            "{what} lists {} subjects, the limit is {MAX_SUBJECTS}",
            subjects.len()
        ));
    }
    if let Some(bad) = subjects.iter().find(|s| s.is_empty() || s.len() > MAX_SUBJECT_LEN) {
        return fail(format!("{what} subject {bad:?} must be 1 to {MAX_SUBJECT_LEN} bytes"));
    }
    let mut sorted = subjects.to_vec();
    sorted.sort();
    sorted.dedup();
    Ok(sorted)
}

fn check_rules(rules: &[Rule]) -> Result<(), GrayError> {
    if rules.len() > MAX_RULES {
        return fail(format!("{} rules given, the limit is {MAX_RULES}", rules.len()));
    }
    for rule in rules {
        let name = &rule.attribute;
        if name.is_empty() || name.len() > MAX_SUBJECT_LEN {
            return fail(format!("rule attribute {name:?} must be 1 to {MAX_SUBJECT_LEN} bytes"));
        }
        if rule.values.is_empty() || rule.values.len() > MAX_RULE_VALUES {
            return fail(format!(
                "rule on {name:?} has {} values; it needs 1 to {MAX_RULE_VALUES}",
                rule.values.len()
            ));
        }
        if let Some(bad) = rule.values.iter().find(|v| v.is_empty() || v.len() > MAX_SUBJECT_LEN) {
            return fail(format!(
                "rule on {name:?}: value {bad:?} must be 1 to {MAX_SUBJECT_LEN} bytes"
            ));
        }
        let single = matches!(rule.op, RuleOp::Eq | RuleOp::SemverGte | RuleOp::SemverLt);
        if single && rule.values.len() != 1 {
            return fail(format!("rule on {name:?} with op {:?} takes exactly one value", rule.op));
        }
        if matches!(rule.op, RuleOp::SemverGte | RuleOp::SemverLt) {
            if let Some(bad) = rule.values.iter().find(|v| Semver::parse(v).is_none()) {
                return fail(format!("rule on {name:?}: {bad:?} is not a semantic version"));
            }
        }
    }
    Ok(())
}

fn check_steps(steps: &[Step]) -> Result<(), GrayError> {
    if steps.len() > MAX_STEPS {
        return fail(format!("{} steps given, the limit is {MAX_STEPS}", steps.len()));
    }
    for (i, step) in steps.iter().enumerate() {
        // Steps are numbered from 1 in messages, as people count them (`steps[0]` is step 1).
        let n = i + 1;
        check_percent(&format!("step {n} percent"), step.percent)?;
        let last = i + 1 == steps.len();
        match step.hold_secs {
            None if !last => {
                return fail(format!("step {n} needs hold_secs (only the last step may omit it)"))
            }
            Some(0) => return fail(format!("step {n} hold_secs must be at least 1")),
            Some(secs) if secs > MAX_HOLD_SECS => {
                return fail(format!("step {n} hold_secs {secs} exceeds {MAX_HOLD_SECS}"))
            }
            _ => {}
        }
        if i > 0 && step.percent < steps[i - 1].percent {
            return fail(format!(
                "step {n} percent {} is below the previous step's {}; a ramp only goes up",
                step.percent,
                steps[i - 1].percent
            ));
        }
    }
    Ok(())
}

fn check_guard(guard: &Guard) -> Result<(), GrayError> {
    if !guard.max_error_rate.is_finite() || !(0.0..=1.0).contains(&guard.max_error_rate) {
        return fail(format!("guard max_error_rate {} is outside 0 to 1", guard.max_error_rate));
    }
    if guard.min_samples == 0 {
        return fail("guard min_samples must be at least 1".into());
    }
    Ok(())
}

/// When the ramp moves on from `step` begun at `now`: its hold, unless paused or absent.
pub fn next_step_at(
    steps: &[Step],
    step: u32,
    paused: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if paused {
        return None;
    }
    let hold = steps.get(step as usize)?.hold_secs?;
    Some(now + Duration::seconds(i64::try_from(hold).ok()?))
}

/// When a release whose current step begins (or resumes) at `now` next moves: after the
/// step's hold; at once when it is the last step, has no hold and the release promotes
/// itself; never while paused or without steps.
pub fn step_due_at(gray: &Gray, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let step = gray.steps.get(gray.step as usize)?;
    let last = gray.step as usize + 1 == gray.steps.len();
    if !gray.paused && last && step.hold_secs.is_none() && gray.auto_promote {
        return Some(now);
    }
    next_step_at(&gray.steps, gray.step, gray.paused, now)
}

impl GrayRequest {
    /// Validates the request and builds the gray section of `namespace/key`, begun at `now`.
    pub fn into_gray(
        self,
        namespace: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Gray, GrayError> {
        let percent = match (self.percent, self.steps.first()) {
            (Some(percent), _) => percent,
            (None, Some(step)) => step.percent,
            (None, None) => 0.0,
        };
        check_percent("percent", percent)?;
        crate::value::check_depth("gray value", &self.value).map_err(GrayError)?;
        let allow = check_subjects("allow", &self.allow)?;
        let deny = check_subjects("deny", &self.deny)?;
        check_rules(&self.rules)?;
        check_steps(&self.steps)?;
        if let Some(guard) = &self.guard {
            check_guard(guard)?;
        }
        if self.auto_promote && self.steps.is_empty() {
            return fail("auto_promote needs steps: it promotes when the ramp ends".into());
        }
        let salt = self.salt.unwrap_or_else(|| format!("{namespace}/{key}"));
        if salt.is_empty() || salt.len() > MAX_SALT_LEN {
            return fail(format!("salt must be 1 to {MAX_SALT_LEN} bytes"));
        }
        let mut gray = Gray {
            value: self.value,
            percent,
            salt,
            allow,
            deny,
            rules: self.rules,
            next_step_at: None,
            steps: self.steps,
            step: 0,
            paused: self.paused,
            auto_promote: self.auto_promote,
            guard: self.guard,
            started_at: now,
        };
        gray.next_step_at = step_due_at(&gray, now);
        Ok(gray)
    }
}

impl GrayPatch {
    /// Validates the patch and applies it to a running release at `now`.
    pub fn apply(self, gray: &Gray, now: DateTime<Utc>) -> Result<Gray, GrayError> {
        if (GrayPatch { comment: None, ..self.clone() }) == GrayPatch::default() {
            return fail(
                "the patch changes nothing; give percent, allow, deny, rules or paused".into(),
            );
        }
        let mut next = gray.clone();
        if let Some(percent) = self.percent {
            check_percent("percent", percent)?;
            next.percent = percent;
        }
        if let Some(allow) = self.allow {
            next.allow = check_subjects("allow", &allow)?;
        }
        if let Some(deny) = self.deny {
            next.deny = check_subjects("deny", &deny)?;
        }
        if let Some(rules) = self.rules {
            check_rules(&rules)?;
            next.rules = rules;
        }
        if let Some(paused) = self.paused {
            if paused != gray.paused {
                next.paused = paused;
                next.next_step_at = step_due_at(&next, now);
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(body: Value) -> Result<Gray, GrayError> {
        let request: GrayRequest =
            serde_json::from_value(body).map_err(|e| GrayError(e.to_string()))?;
        request.into_gray("ns", "k", Utc::now())
    }

    #[test]
    fn valid_requests() {
        let gray = request(json!({"value": 1, "percent": 12.5})).expect("valid");
        assert_eq!((gray.percent, gray.salt.as_str(), gray.next_step_at), (12.5, "ns/k", None));
        let gray = request(json!({"value": 1, "allow": ["b", "a", "b"],
            "steps": [{"percent": 5, "hold_secs": 60}, {"percent": 100}], "auto_promote": true,
            "guard": {"max_error_rate": 0.05, "min_samples": 200}}))
        .expect("valid");
        assert_eq!(gray.percent, 5.0);
        assert_eq!(gray.allow, ["a", "b"]);
        assert!(gray.next_step_at.is_some());
        let paused = request(json!({"value": 1, "steps": [{"percent": 5, "hold_secs": 60}, {"percent": 50}], "paused": true}))
            .expect("valid");
        assert_eq!(paused.next_step_at, None);
    }

    #[test]
    fn invalid_requests_name_the_problem() {
        let cases = [
            (json!({"value": 1, "percent": 100.5}), "outside 0 to 100"),
            (json!({"value": 1, "percent": -1}), "outside 0 to 100"),
            (json!({"value": 1, "percent": 1.234}), "two decimals"),
            (json!({"value": 1, "allow": [""]}), "allow subject"),
            (
                json!({"value": 1, "rules": [{"attribute": "r", "op": "eq", "values": ["a", "b"]}]}),
                "exactly one value",
            ),
            (
                json!({"value": 1, "rules": [{"attribute": "r", "op": "in", "values": []}]}),
                "1 to 1000",
            ),
            (
                json!({"value": 1, "rules": [{"attribute": "v", "op": "semver_gte", "values": ["1.x"]}]}),
                "not a semantic version",
            ),
            (
                json!({"value": 1, "rules": [{"attribute": "v", "op": "like", "values": ["a"]}]}),
                "unknown variant",
            ),
            // Steps are numbered from 1, as the console and the CLI number them.
            (
                json!({"value": 1, "steps": [{"percent": 5}, {"percent": 10}]}),
                "step 1 needs hold_secs",
            ),
            (
                json!({"value": 1, "steps": [{"percent": 50, "hold_secs": 1}, {"percent": 10}]}),
                "step 2 percent 10 is below the previous step's 50; a ramp only goes up",
            ),
            (
                json!({"value": 1, "steps": [{"percent": 5, "hold_secs": 0}, {"percent": 10}]}),
                "step 1 hold_secs must be at least 1",
            ),
            (
                json!({"value": 1, "guard": {"max_error_rate": 2, "min_samples": 1}}),
                "outside 0 to 1",
            ),
            (json!({"value": 1, "guard": {"max_error_rate": 0.1, "min_samples": 0}}), "at least 1"),
            (json!({"value": 1, "auto_promote": true}), "needs steps"),
            (json!({"percent": 5}), "missing field `value`"),
            (json!({"value": 1, "colour": "red"}), "unknown field"),
        ];
        for (body, expected) in cases {
            let err = request(body.clone()).expect_err(&format!("{body} should be refused"));
            assert!(err.0.contains(expected), "{body}: {err}");
        }
        let many: Vec<String> = (0..=MAX_SUBJECTS).map(|i| format!("s{i}")).collect();
        assert!(request(json!({"value": 1, "deny": many})).is_err());
        let steps: Vec<Value> =
            (0..=MAX_STEPS).map(|_| json!({"percent": 1, "hold_secs": 1})).collect();
        assert!(request(json!({"value": 1, "steps": steps})).is_err());
    }

    #[test]
    fn patches() {
        let now = Utc::now();
        let gray = request(
            json!({"value": 1, "steps": [{"percent": 5, "hold_secs": 60}, {"percent": 50}]}),
        )
        .expect("valid");
        let paused = GrayPatch { paused: Some(true), ..Default::default() }
            .apply(&gray, now)
            .expect("valid");
        assert!(paused.paused && paused.next_step_at.is_none());
        let resumed = GrayPatch { paused: Some(false), ..Default::default() }
            .apply(&paused, now)
            .expect("valid");
        assert_eq!(resumed.next_step_at, Some(now + Duration::seconds(60)));
        let raised = GrayPatch { percent: Some(20.0), ..Default::default() }
            .apply(&gray, now)
            .expect("valid");
        assert_eq!(raised.percent, 20.0);
        assert!(GrayPatch::default().apply(&gray, now).is_err());
        assert!(GrayPatch { percent: Some(101.0), ..Default::default() }
            .apply(&gray, now)
            .is_err());
    }
}
