//! Properties, over generated inputs (proptest): message decoding never panics and
//! round-trips, gray release validation either refuses or yields a release that keeps
//! every invariant, and evaluation is deterministic, sticky and monotonic in the percent.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use graycast_protocol::gray::{GrayPatch, GrayRequest};
use graycast_protocol::rollout::{bucket, evaluate_with_roll, Reason, Variant};
use graycast_protocol::value::{depth, MAX_VALUE_DEPTH};
use graycast_protocol::ws::{ClientHello, ClientMessage};
use graycast_protocol::{Entry, Gray, Guard, Op, Rule, RuleOp, ServerMessage, Step};
use proptest::prelude::*;
use serde_json::Value;

/// JSON values of bounded size and depth, numbers of any size included.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "[0-9]{20,40}".prop_map(|digits| serde_json::from_str(&digits).unwrap_or(Value::Null)),
        (-1e300f64..1e300)
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{0,6}", inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,20}"
}

fn percent() -> impl Strategy<Value = f64> {
    (0u32..=10_000).prop_map(|hundredths| f64::from(hundredths) / 100.0)
}

fn rule() -> impl Strategy<Value = Rule> {
    let op = prop_oneof![
        Just(RuleOp::In),
        Just(RuleOp::NotIn),
        Just(RuleOp::Eq),
        Just(RuleOp::Prefix),
        Just(RuleOp::SemverGte),
        Just(RuleOp::SemverLt),
    ];
    ("[a-z]{0,4}", op, prop::collection::vec("[0-9a-z.-]{0,6}", 0..4))
        .prop_map(|(attribute, op, values)| Rule { attribute, op, values })
}

fn gray() -> impl Strategy<Value = Gray> {
    (
        json_value(),
        percent(),
        name(),
        prop::collection::vec("[a-z0-9]{1,6}", 0..5),
        prop::collection::vec("[a-z0-9]{1,6}", 0..5),
        prop::collection::vec(rule(), 0..3),
    )
        .prop_map(|(value, percent, salt, allow, deny, rules)| {
            let mut gray =
                Gray::new(value, percent, salt, Utc.timestamp_opt(1_700_000_000, 0).unwrap());
            gray.allow = allow;
            gray.deny = deny;
            gray.rules = rules;
            gray
        })
}

fn entry() -> impl Strategy<Value = Entry> {
    (name(), name(), json_value(), 1u64..u64::MAX, prop::option::of(gray())).prop_map(
        |(namespace, key, value, revision, gray)| Entry {
            namespace,
            key,
            value,
            revision,
            created_revision: revision,
            version: 1,
            updated_at: Utc.timestamp_opt(1_700_000_000, 123_000_000).unwrap(),
            updated_by: "someone".into(),
            gray,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever text arrives, decoding answers: a message or an error, never a panic.
    #[test]
    fn decoding_arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = serde_json::from_str::<ClientMessage>(&text);
        let _ = serde_json::from_str::<ServerMessage>(&text);
    }

    /// Nor does decoding arbitrary JSON of message-like shape.
    #[test]
    fn decoding_arbitrary_json_never_panics(kind in "(subscribe|auth|ack|report|snapshot|change|progress|error|x)", body in json_value()) {
        let mut message = match body { Value::Object(fields) => fields, other => [("value".to_owned(), other)].into_iter().collect() };
        message.insert("type".into(), Value::String(kind));
        let text = Value::Object(message).to_string();
        let _ = serde_json::from_str::<ClientMessage>(&text);
        let _ = serde_json::from_str::<ServerMessage>(&text);
    }

    /// Client messages read back as they were written.
    #[test]
    fn client_messages_round_trip(namespaces in prop::collection::vec(name(), 1..4), since in prop::option::of(any::<u64>()), id in prop::option::of("[a-z0-9-]{1,12}"), labels in prop::collection::btree_map("[a-z]{1,6}", "[a-z0-9]{0,6}", 0..3), revision in any::<u64>()) {
        let messages = [
            ClientMessage::Subscribe { namespaces, since, client: Some(ClientHello { id, labels }) },
            ClientMessage::Ack { revision },
            ClientMessage::Auth { token: "t".into() },
        ];
        for message in messages {
            let text = serde_json::to_string(&message).unwrap();
            prop_assert_eq!(serde_json::from_str::<ClientMessage>(&text).unwrap(), message);
        }
    }

    /// Server messages read back exactly, values of any shape and numbers of any size
    /// included (the digits and key order of every value survive).
    #[test]
    fn server_messages_round_trip(entries in prop::collection::vec(entry(), 0..4), revision in any::<u64>(), comment in prop::option::of("\\PC{0,20}")) {
        let snapshot = ServerMessage::Snapshot { revision, namespaces: vec!["ns".into()], entries: entries.clone() };
        let text = serde_json::to_string(&snapshot).unwrap();
        let back: ServerMessage = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), text);
        for entry in entries {
            let change = ServerMessage::Change { revision, op: Op::Put, namespace: entry.namespace.clone(), key: entry.key.clone(), entry: Some(Box::new(entry)), comment: comment.clone(), note: None };
            let text = serde_json::to_string(&change).unwrap();
            let back: ServerMessage = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
    }

    /// A gray release request is refused, or yields a release keeping every invariant.
    #[test]
    fn gray_validation_refuses_or_keeps_the_invariants(
        value in json_value(),
        percent in prop::option::of(prop_oneof![percent(), -10f64..110.0]),
        salt in prop::option::of("\\PC{0,300}"),
        allow in prop::collection::vec("\\PC{0,8}", 0..6),
        deny in prop::collection::vec("\\PC{0,8}", 0..6),
        rules in prop::collection::vec(rule(), 0..4),
        steps in prop::collection::vec((prop_oneof![percent(), -5f64..105.0], prop::option::of(0u64..3_000_000)), 0..5),
        auto_promote in any::<bool>(),
        guard in prop::option::of((-0.5f64..1.5, 0u64..1000)),
        paused in any::<bool>(),
    ) {
        let request = GrayRequest {
            value, percent, salt, allow, deny, rules,
            steps: steps.into_iter().map(|(percent, hold_secs)| Step { percent, hold_secs }).collect(),
            auto_promote,
            guard: guard.map(|(max_error_rate, min_samples)| Guard { max_error_rate, min_samples }),
            paused,
            comment: None,
        };
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let Ok(gray) = request.clone().into_gray("ns", "k", now) else { return Ok(()) };
        prop_assert!((0.0..=100.0).contains(&gray.percent));
        prop_assert!(depth(&gray.value) <= MAX_VALUE_DEPTH);
        prop_assert!(gray.allow.windows(2).all(|w| w[0] < w[1]), "allow is sorted, without repeats");
        prop_assert!(gray.deny.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(gray.steps.windows(2).all(|w| w[0].percent <= w[1].percent), "a ramp only goes up");
        prop_assert!(gray.steps.iter().rev().skip(1).all(|s| s.hold_secs.is_some_and(|h| h >= 1)));
        prop_assert!(!gray.auto_promote || !gray.steps.is_empty());
        prop_assert!(!gray.salt.is_empty() && gray.salt.len() <= 256);
        if gray.paused {
            prop_assert!(gray.next_step_at.is_none(), "a paused ramp is not scheduled");
        }
        // Patching a valid release refuses, or keeps it valid too.
        let patch = GrayPatch { percent: request.percent, paused: Some(!gray.paused), ..GrayPatch::default() };
        if let Ok(patched) = patch.apply(&gray, now) {
            prop_assert!((0.0..=100.0).contains(&patched.percent));
            prop_assert_eq!(patched.started_at, gray.started_at);
        }
    }

    /// Evaluation is deterministic for a subject, and raising the percent never moves a
    /// subject from gray back to stable (SPEC §3).
    #[test]
    fn evaluation_is_sticky_and_monotonic(gray in gray(), subject in "\\PC{0,24}", attrs in prop::collection::btree_map("[a-z]{1,4}", "[0-9a-z.-]{0,6}", 0..3), raise in 0u32..=10_000) {
        let once = evaluate_with_roll(Some(&gray), Some(&subject), &attrs, || 0);
        let again = evaluate_with_roll(Some(&gray), Some(&subject), &attrs, || 9_999);
        prop_assert_eq!(once, again, "a subject's decision does not depend on chance");
        if once.reason == Reason::Percent {
            prop_assert_eq!(once.bucket, Some(bucket(&gray.salt, &subject)));
        }
        let mut higher = gray.clone();
        higher.percent = (gray.percent + f64::from(raise) / 100.0).min(100.0);
        let later = evaluate_with_roll(Some(&higher), Some(&subject), &attrs, || 0);
        if once.variant == Variant::Gray {
            prop_assert_eq!(later.variant, Variant::Gray, "raising the percent kept the subject in gray");
        }
        let none: BTreeMap<String, String> = BTreeMap::new();
        let no_gray = evaluate_with_roll(None, Some(&subject), &none, || 0);
        prop_assert_eq!((no_gray.variant, no_gray.reason), (Variant::Stable, Reason::NoGray));
    }

    /// Buckets spread subjects evenly: any percent holds that share of subjects, within a
    /// tolerance that holds for 2,000 subjects.
    #[test]
    fn buckets_are_uniform(salt in name(), percent in 1u32..100) {
        let subjects = 2_000;
        let threshold = percent * 100;
        let inside = (0..subjects).filter(|i| bucket(&salt, &format!("subject-{i}")) < threshold).count();
        let share = inside as f64 / f64::from(subjects) * 100.0;
        prop_assert!((share - f64::from(percent)).abs() < 4.5, "{}% of subjects at {}%", share, percent);
    }
}
