//! Rollout evaluation: which variant of a key a subject gets.
//!
//! The same algorithm runs in the server (`/v1/release`), the Rust SDK and the web
//! console, and all three pass `testdata/rollout-vectors.json`. Evaluation cannot fail
//! and allocates nothing: it returns a [`Decision`], not a `Result`.
//!
//! ```text
//! no gray                          -> stable, no_gray
//! subject in deny                  -> stable, deny
//! subject in allow                 -> gray,   allow
//! some rule does not match attrs   -> stable, rule_mismatch
//! no subject                       -> gray with probability percent/100, random
//! bucket = murmur3_x86_32(utf8(salt + ":" + subject), seed 0) mod 10000
//! bucket < round(percent * 100)    -> gray,   percent
//! otherwise                        -> stable, percent
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Gray, Rule, RuleOp};

/// Number of buckets subjects are hashed into: a percent has two decimals.
pub const BUCKETS: u32 = 10_000;

/// Which value a subject gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// The entry's stable `value`.
    Stable,
    /// The gray section's `value`.
    Gray,
}

impl Variant {
    /// The name used on the wire: `stable` or `gray`.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Stable => "stable",
            Variant::Gray => "gray",
        }
    }
}

/// Why a subject got its variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No gray release runs on the key: stable.
    NoGray,
    /// The subject is in `deny`: stable.
    Deny,
    /// The subject is in `allow` (and not in `deny`): gray.
    Allow,
    /// Some rule does not match the subject's attributes (a missing attribute matches no
    /// rule): stable.
    RuleMismatch,
    /// No subject was given: gray with probability `percent / 100`, drawn afresh each time.
    Random,
    /// The subject's sticky bucket decided: gray when below `round(percent * 100)`.
    Percent,
}

impl Reason {
    /// The name used on the wire, such as `rule_mismatch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoGray => "no_gray",
            Reason::Deny => "deny",
            Reason::Allow => "allow",
            Reason::RuleMismatch => "rule_mismatch",
            Reason::Random => "random",
            Reason::Percent => "percent",
        }
    }
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The variant the subject gets.
    pub variant: Variant,
    /// Which branch of the evaluation decided.
    pub reason: Reason,
    /// The subject's sticky bucket in `0..10000`, when the percent decided.
    pub bucket: Option<u32>,
}

impl Decision {
    fn of(variant: Variant, reason: Reason) -> Decision {
        Decision { variant, reason, bucket: None }
    }
}

/// Attributes of a subject, looked up by name.
pub trait Attributes {
    /// The value of the attribute `name`; `None` when the subject lacks it, and then it
    /// matches no rule on that attribute.
    fn attribute(&self, name: &str) -> Option<&str>;
}

impl Attributes for BTreeMap<String, String> {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Attributes for HashMap<String, String, S> {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Attributes for [(&str, &str)] {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

impl<const N: usize> Attributes for [(&str, &str); N] {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.as_slice().attribute(name)
    }
}

/// No attributes at all.
impl Attributes for () {
    fn attribute(&self, _: &str) -> Option<&str> {
        None
    }
}

/// MurmurHash3 x86 32-bit of the concatenation of `parts`, without concatenating them.
pub fn murmur3_32(parts: &[&[u8]], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |h: u32, block: [u8; 4]| {
        let k = u32::from_le_bytes(block).wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        (h ^ k).rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
    };
    let mut h = seed;
    // Bytes of a block begun in an earlier part.
    let mut block = [0u8; 4];
    let mut filled = 0;
    let mut length: u32 = 0;
    for part in parts {
        length = length.wrapping_add(part.len() as u32);
        let mut rest: &[u8] = part;
        // Finish a block begun by the previous part, byte by byte.
        while filled > 0 {
            let Some((&byte, tail)) = rest.split_first() else { break };
            block[filled] = byte;
            filled += 1;
            rest = tail;
            if filled == 4 {
                h = mix(h, block);
                filled = 0;
            }
        }
        // Whole blocks straight from the part.
        let mut chunks = rest.chunks_exact(4);
        for chunk in &mut chunks {
            h = mix(h, [chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        for &byte in chunks.remainder() {
            block[filled] = byte;
            filled += 1;
        }
    }
    if filled > 0 {
        let mut k: u32 = 0;
        for (i, byte) in block[..filled].iter().enumerate() {
            k |= u32::from(*byte) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= length;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The sticky bucket of a subject under a salt: `murmur3(salt + ":" + subject) mod 10000`.
pub fn bucket(salt: &str, subject: &str) -> u32 {
    murmur3_32(&[salt.as_bytes(), b":", subject.as_bytes()], 0) % BUCKETS
}

/// The number of buckets (from 0) in the gray variant at a percent: `round(percent * 100)`.
pub fn threshold(percent: f64) -> u32 {
    (percent * 100.0).round().clamp(0.0, f64::from(BUCKETS)) as u32
}

/// Evaluates a key's gray section for a subject; a subject-less evaluation draws at random.
pub fn evaluate(
    gray: Option<&Gray>,
    subject: Option<&str>,
    attrs: &(impl Attributes + ?Sized),
) -> Decision {
    evaluate_with_roll(gray, subject, attrs, || rand::random_range(0..BUCKETS))
}

/// [`evaluate`] with the random draw (in `0..10000`) for subject-less evaluations supplied.
pub fn evaluate_with_roll(
    gray: Option<&Gray>,
    subject: Option<&str>,
    attrs: &(impl Attributes + ?Sized),
    roll: impl FnOnce() -> u32,
) -> Decision {
    let Some(gray) = gray else { return Decision::of(Variant::Stable, Reason::NoGray) };
    if let Some(subject) = subject {
        if gray.deny.iter().any(|s| s == subject) {
            return Decision::of(Variant::Stable, Reason::Deny);
        }
        if gray.allow.iter().any(|s| s == subject) {
            return Decision::of(Variant::Gray, Reason::Allow);
        }
    }
    if !gray.rules.iter().all(|rule| rule_matches(rule, attrs)) {
        return Decision::of(Variant::Stable, Reason::RuleMismatch);
    }
    let threshold = threshold(gray.percent);
    let Some(subject) = subject else {
        let variant = if roll() % BUCKETS < threshold { Variant::Gray } else { Variant::Stable };
        return Decision::of(variant, Reason::Random);
    };
    let bucket = bucket(&gray.salt, subject);
    let variant = if bucket < threshold { Variant::Gray } else { Variant::Stable };
    Decision { variant, reason: Reason::Percent, bucket: Some(bucket) }
}

/// Whether a subject's attributes satisfy a rule; a missing attribute matches no rule.
pub fn rule_matches(rule: &Rule, attrs: &(impl Attributes + ?Sized)) -> bool {
    let Some(value) = attrs.attribute(&rule.attribute) else { return false };
    let first = rule.values.first().map(String::as_str);
    match rule.op {
        RuleOp::In => rule.values.iter().any(|v| v == value),
        RuleOp::NotIn => !rule.values.iter().any(|v| v == value),
        RuleOp::Eq => first == Some(value),
        RuleOp::Prefix => rule.values.iter().any(|v| value.starts_with(v.as_str())),
        RuleOp::SemverGte | RuleOp::SemverLt => {
            let (Some(have), Some(want)) = (Semver::parse(value), first.and_then(Semver::parse))
            else {
                return false;
            };
            let ordering = have.cmp_precedence(&want);
            if rule.op == RuleOp::SemverGte {
                ordering.is_ge()
            } else {
                ordering.is_lt()
            }
        }
    }
}

/// A semantic version (semver 2.0.0), borrowed from the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Semver<'a> {
    /// `MAJOR` in `MAJOR.MINOR.PATCH`: incompatible changes.
    pub major: u64,
    /// `MINOR` in `MAJOR.MINOR.PATCH`: compatible additions.
    pub minor: u64,
    /// `PATCH` in `MAJOR.MINOR.PATCH`: compatible fixes.
    pub patch: u64,
    /// Pre-release identifiers, dot-separated; empty for a release.
    pub pre: &'a str,
}

impl<'a> Semver<'a> {
    /// Parses `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, with an optional leading `v`.
    pub fn parse(text: &'a str) -> Option<Semver<'a>> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let text = text.split_once('+').map_or(
            text,
            |(version, build)| {
                if build.is_empty() {
                    ""
                } else {
                    version
                }
            },
        );
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) if !pre.is_empty() => (core, pre),
            Some(_) => return None,
            None => (text, ""),
        };
        let mut numbers = core.split('.');
        let mut next = || -> Option<u64> {
            let part = numbers.next()?;
            let valid = !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'));
            if valid {
                part.parse().ok()
            } else {
                None
            }
        };
        let (major, minor, patch) = (next()?, next()?, next()?);
        if numbers.next().is_some() {
            return None;
        }
        let pre_valid = pre.is_empty()
            || pre.split('.').all(|id| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        pre_valid.then_some(Semver { major, minor, patch, pre })
    }

    /// Semver precedence: numbers, then a release above its pre-releases, then the
    /// pre-release identifiers one by one (numeric below alphanumeric).
    pub fn cmp_precedence(&self, other: &Semver<'_>) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let core =
            (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch));
        if core != Ordering::Equal {
            return core;
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) => {}
        }
        let mut a = self.pre.split('.');
        let mut b = other.pre.split('.');
        loop {
            match (a.next(), b.next()) {
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some(x), Some(y)) => {
                    let numeric = |s: &str| {
                        s.bytes()
                            .all(|c| c.is_ascii_digit())
                            .then(|| s.parse::<u64>().ok())
                            .flatten()
                    };
                    let ordering = match (numeric(x), numeric(y)) {
                        (Some(x), Some(y)) => x.cmp(&y),
                        (Some(_), None) => Ordering::Less,
                        (None, Some(_)) => Ordering::Greater,
                        (None, None) => x.cmp(y),
                    };
                    if ordering != Ordering::Equal {
                        return ordering;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;

    use super::*;

    fn gray(percent: f64) -> Gray {
        Gray::new(json!("new"), percent, "ns/key", Utc::now())
    }

    #[test]
    fn murmur3_known_values_and_streaming() {
        // Published values of MurmurHash3_x86_32.
        assert_eq!(murmur3_32(&[b""], 0), 0);
        assert_eq!(murmur3_32(&[b""], 1), 0x514E_28B7);
        assert_eq!(murmur3_32(&[b"hello"], 0), 0x248B_FA47);
        assert_eq!(murmur3_32(&[b"The quick brown fox jumps over the lazy dog"], 0), 0x2E4F_F723);
        let text = "subject-ünïcødé-🙂-with-a-longer-tail";
        let whole = murmur3_32(&[text.as_bytes()], 7);
        for split in 0..text.len() {
            let (a, b) = text.as_bytes().split_at(split);
            assert_eq!(murmur3_32(&[a, b], 7), whole, "split at {split}");
        }
    }

    #[test]
    fn decision_order() {
        let mut g = gray(0.0);
        g.allow = vec!["vip".into(), "both".into()];
        g.deny = vec!["blocked".into(), "both".into()];
        g.rules =
            vec![Rule { attribute: "region".into(), op: RuleOp::In, values: vec!["eu".into()] }];
        let eu = [("region", "eu")];
        let us = [("region", "us")];
        let check = |gray: Option<&Gray>,
                     subject: Option<&str>,
                     attrs: &[(&str, &str)],
                     variant,
                     reason| {
            let d = evaluate_with_roll(gray, subject, attrs, || 0);
            assert_eq!((d.variant, d.reason), (variant, reason), "{subject:?} {attrs:?}");
        };
        check(None, Some("x"), &eu, Variant::Stable, Reason::NoGray);
        check(Some(&g), Some("both"), &eu, Variant::Stable, Reason::Deny);
        check(Some(&g), Some("vip"), &us, Variant::Gray, Reason::Allow);
        check(Some(&g), Some("anyone"), &us, Variant::Stable, Reason::RuleMismatch);
        check(Some(&g), Some("anyone"), &[], Variant::Stable, Reason::RuleMismatch);
        check(Some(&g), Some("anyone"), &eu, Variant::Stable, Reason::Percent);
        g.percent = 100.0;
        check(Some(&g), Some("anyone"), &eu, Variant::Gray, Reason::Percent);
        check(Some(&g), None, &eu, Variant::Gray, Reason::Random);
        g.percent = 0.0;
        check(Some(&g), None, &eu, Variant::Stable, Reason::Random);
    }

    #[test]
    fn rules() {
        let rule = |op, values: &[&str]| Rule {
            attribute: "v".into(),
            op,
            values: values.iter().map(|s| s.to_string()).collect(),
        };
        let check = |rule: Rule, value: Option<&str>, expected: bool| {
            let attrs: Vec<(&str, &str)> = value.map(|v| ("v", v)).into_iter().collect();
            assert_eq!(rule_matches(&rule, attrs.as_slice()), expected, "{rule:?} on {value:?}");
        };
        check(rule(RuleOp::In, &["a", "b"]), Some("b"), true);
        check(rule(RuleOp::In, &["a", "b"]), Some("c"), false);
        check(rule(RuleOp::NotIn, &["a", "b"]), Some("c"), true);
        check(rule(RuleOp::NotIn, &["a", "b"]), Some("a"), false);
        check(rule(RuleOp::NotIn, &["a"]), None, false);
        check(rule(RuleOp::Eq, &["a"]), Some("a"), true);
        check(rule(RuleOp::Eq, &["a"]), Some("ab"), false);
        check(rule(RuleOp::Prefix, &["eu-", "ap-"]), Some("eu-west"), true);
        check(rule(RuleOp::Prefix, &["eu-"]), Some("us-east"), false);
        check(rule(RuleOp::SemverGte, &["1.2.0"]), Some("1.10.0"), true);
        check(rule(RuleOp::SemverGte, &["1.2.0"]), Some("1.2.0"), true);
        check(rule(RuleOp::SemverGte, &["1.2.0"]), Some("1.2.0-rc.1"), false);
        check(rule(RuleOp::SemverGte, &["1.2.0"]), Some("v2.0.0"), true);
        check(rule(RuleOp::SemverLt, &["2.0.0"]), Some("1.99.99"), true);
        check(rule(RuleOp::SemverLt, &["2.0.0"]), Some("2.0.0"), false);
        check(rule(RuleOp::SemverLt, &["2.0.0"]), Some("not-a-version"), false);
        check(rule(RuleOp::SemverGte, &["1.0.0"]), None, false);
    }

    #[test]
    fn semver_precedence() {
        // The example order of the semver 2.0.0 specification.
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1+build.5",
            "1.1.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            let (a, b) = (Semver::parse(pair[0]).unwrap(), Semver::parse(pair[1]).unwrap());
            assert!(a.cmp_precedence(&b).is_lt(), "{} < {}", pair[0], pair[1]);
            assert!(b.cmp_precedence(&a).is_gt());
        }
        for bad in ["", "1", "1.2", "1.2.3.4", "01.2.3", "1.2.x", "1.2.3-", "1.2.3+", "1.2.3-a..b"]
        {
            assert!(Semver::parse(bad).is_none(), "{bad:?} parsed");
        }
    }

    #[test]
    fn share_is_within_one_point_and_raising_the_percent_never_removes_a_subject() {
        let subjects: Vec<String> = (0..100_000).map(|i| format!("user-{i}")).collect();
        let buckets: Vec<u32> = subjects.iter().map(|s| bucket("payments/timeout_ms", s)).collect();
        for percent in [0.01, 1.0, 5.0, 12.5, 25.0, 50.0, 75.0, 99.99] {
            let t = threshold(percent);
            let share =
                buckets.iter().filter(|b| **b < t).count() as f64 / subjects.len() as f64 * 100.0;
            assert!((share - percent).abs() <= 1.0, "{percent}%: got {share}%");
        }
        // Monotonic: a subject gray at p stays gray at every q >= p.
        let mut g = gray(0.0);
        g.salt = "payments/timeout_ms".into();
        let percents: Vec<f64> = (0..=100).map(f64::from).chain([0.01, 33.33, 66.67]).collect();
        for subject in subjects.iter().step_by(97) {
            let mut sorted = percents.clone();
            sorted.sort_by(f64::total_cmp);
            let mut was_gray = false;
            for p in sorted {
                g.percent = p;
                let gray_now =
                    evaluate_with_roll(Some(&g), Some(subject), &(), || 0).variant == Variant::Gray;
                assert!(gray_now || !was_gray, "{subject} left gray at {p}%");
                was_gray = gray_now;
            }
        }
    }
}
