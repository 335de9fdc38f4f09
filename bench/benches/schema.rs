//! What a typed config costs a write: checking a 64 KiB value (600 upstreams and 42
//! settings, `data/value-64k.json`) against a 5 KB schema (`data/schema-5k.json`), with the
//! schema compiled once as the server does per schema revision. Prints p50 and p99 of
//! 2,000 checks, then criterion's estimate.
//!
//! `cargo bench -p graycast-bench --bench schema`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use graycast_server::schema::{Compiled, Mode, SchemaDocument};
use serde_json::Value;

fn fixtures() -> (Compiled, Value) {
    let read = |name: &str| -> Value {
        let path = format!("{}/data/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("JSON")
    };
    let document = SchemaDocument {
        schemas: BTreeMap::from([("upstreams".to_owned(), read("schema-5k.json"))]),
        mode: Mode::Strict,
        resources: BTreeMap::new(),
    };
    (Compiled::compile(&document).expect("the schema compiles"), read("value-64k.json"))
}

fn percentiles(compiled: &Compiled, value: &Value) {
    let mut took: Vec<Duration> = (0..2000)
        .map(|_| {
            let started = Instant::now();
            let violations = compiled.check("upstreams", "stable", black_box(value));
            let elapsed = started.elapsed();
            assert!(violations.is_empty(), "the fixture value fits its schema: {violations:?}");
            elapsed
        })
        .collect();
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    println!(
        "check of a 64 KiB value against a 5 KB schema, 2,000 runs: p50 {:?}, p99 {:?}",
        at(0.5),
        at(0.99)
    );
}

fn benches(c: &mut Criterion) {
    let (compiled, value) = fixtures();
    percentiles(&compiled, &value);
    c.bench_function("schema/check 64 KiB value, 5 KB schema", |b| {
        b.iter(|| compiled.check("upstreams", "stable", black_box(&value)))
    });
}

criterion_group!(schema, benches);
criterion_main!(schema);
