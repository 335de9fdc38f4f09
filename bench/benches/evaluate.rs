//! Criterion benchmarks of the rollout evaluation every client runs locally.
//!
//! `cargo bench -p graycast-bench --bench evaluate`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use graycast_protocol::rollout::{bucket, evaluate_with_roll};
use graycast_protocol::{Gray, Rule, RuleOp};

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

criterion_group!(evaluate, benches);
criterion_main!(evaluate);
