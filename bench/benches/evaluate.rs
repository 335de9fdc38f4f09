//! Criterion benchmarks of the rollout evaluation every client runs locally, and the same
//! percent rollout evaluated by `unleash-yggdrasil` (the engine inside Unleash's SDKs) for
//! the same subjects.
//!
//! `cargo bench -p graycast-bench --bench evaluate`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use graycast_protocol::rollout::{bucket, evaluate_with_roll, Variant};
use graycast_protocol::{Gray, Rule, RuleOp};
use unleash_yggdrasil::{ClientFeatures, Context, EngineState, UpdateMessage};

/// The flag both engines evaluate, and its rollout in percent.
const FLAG: &str = "payments/timeout_ms";
const PERCENT: u32 = 12;

fn gray(rules: Vec<Rule>) -> Gray {
    let mut gray =
        Gray::new(serde_json::json!(300), 12.5, "payments/timeout_ms", chrono::Utc::now());
    gray.rules = rules;
    gray
}

fn benches(c: &mut Criterion) {
    // A 16-byte subject, no rules: the common case of the SPEC's percent rollout.
    let subject = "user-00001234567";
    assert_eq!(subject.len(), 16);
    let plain = gray(vec![]);
    c.bench_function("evaluate/16-byte subject, no rules", |b| {
        b.iter(|| evaluate_with_roll(Some(black_box(&plain)), Some(black_box(subject)), &(), || 0))
    });
    c.bench_function("bucket/16-byte subject", |b| {
        b.iter(|| bucket(black_box("payments/timeout_ms"), black_box(subject)))
    });
    let ruled = gray(vec![
        Rule {
            attribute: "region".into(),
            op: RuleOp::In,
            values: vec!["eu-west".into(), "eu-north".into()],
        },
        Rule { attribute: "version".into(), op: RuleOp::SemverGte, values: vec!["2.1.0".into()] },
    ]);
    let attrs: BTreeMap<String, String> =
        [("region".to_owned(), "eu-north".to_owned()), ("version".to_owned(), "2.4.1".to_owned())]
            .into();
    c.bench_function("evaluate/16-byte subject, 2 rules", |b| {
        b.iter(|| {
            evaluate_with_roll(Some(black_box(&ruled)), Some(black_box(subject)), &attrs, || 0)
        })
    });
}

/// An Unleash engine holding one flag: a gradual (flexible) rollout to `PERCENT` % of users,
/// sticky on the user id, grouped by the flag's name, as graycast's percent rollout is.
fn unleash_engine() -> EngineState {
    let features: ClientFeatures = serde_json::from_value(serde_json::json!({
        "version": 2,
        "features": [{
            "name": FLAG,
            "enabled": true,
            "strategies": [{
                "name": "flexibleRollout",
                "parameters": {
                    "rollout": PERCENT.to_string(),
                    "stickiness": "userId",
                    "groupId": FLAG
                }
            }]
        }]
    }))
    .expect("a valid Unleash features document");
    let engine = EngineState::initial_state(chrono::Utc::now());
    let warnings = engine.take_state(UpdateMessage::FullResponse(features));
    assert!(warnings.unwrap_or_default().is_empty(), "the flag compiles without warnings");
    engine
}

/// The same 1,024 subjects for both engines, each evaluated in turn.
fn versus_unleash(c: &mut Criterion) {
    let subjects: Vec<String> = (0..1024).map(|i| format!("user-{i:011}")).collect();
    let gray = Gray::new(serde_json::json!(300), f64::from(PERCENT), FLAG, chrono::Utc::now());
    let engine = unleash_engine();
    // Unleash takes a context per evaluation; building it is left out of the timing.
    let contexts: Vec<Context> = subjects
        .iter()
        .map(|s| Context { user_id: Some(s.clone()), ..Context::default() })
        .collect();
    // Both engines give about PERCENT % of the subjects the new value.
    let ours = subjects
        .iter()
        .filter(|s| {
            evaluate_with_roll(Some(&gray), Some(s.as_str()), &(), || 0).variant == Variant::Gray
        })
        .count();
    let theirs = contexts.iter().filter(|c| engine.is_enabled(FLAG, c, &None)).count();
    for share in [ours, theirs] {
        assert!((80..=170).contains(&share), "{share} of 1024 subjects in a 12 % rollout");
    }

    let mut group = c.benchmark_group("percent rollout, 16-byte subjects");
    let mut i = 0usize;
    group.bench_function("graycast", |b| {
        b.iter(|| {
            i = (i + 1) % subjects.len();
            evaluate_with_roll(Some(black_box(&gray)), Some(black_box(&subjects[i])), &(), || 0)
        })
    });
    let mut i = 0usize;
    group.bench_function("unleash-yggdrasil", |b| {
        b.iter(|| {
            i = (i + 1) % contexts.len();
            engine.is_enabled(black_box(FLAG), black_box(&contexts[i]), &None)
        })
    });
    group.finish();
}

criterion_group!(evaluate, benches, versus_unleash);
criterion_main!(evaluate);
