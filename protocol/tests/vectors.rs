//! The shared rollout vectors (`testdata/rollout-vectors.json`, generated with the `mmh3`
//! package): every bucket is recomputed by a second, independent MurmurHash3 written here
//! and by the crate's own, and the crate's evaluation must give every listed variant.

use std::collections::BTreeMap;

use graycast_protocol::rollout::{bucket, evaluate_with_roll, murmur3_32, Reason, Variant};
use graycast_protocol::Gray;
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    percents: Vec<f64>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    salt: String,
    subject: String,
    hash: u32,
    bucket: u32,
    variants: BTreeMap<String, Variant>,
}

/// MurmurHash3 x86_32 over one buffer, written from the reference algorithm and kept
/// apart from the crate's streaming implementation on purpose.
fn reference_murmur3(data: &[u8], seed: u32) -> u32 {
    let (c1, c2) = (0xcc9e2d51u32, 0x1b873593u32);
    let mut h1 = seed;
    let blocks = data.len() / 4;
    for i in 0..blocks {
        let mut k1 = u32::from(data[4 * i])
            | u32::from(data[4 * i + 1]) << 8
            | u32::from(data[4 * i + 2]) << 16
            | u32::from(data[4 * i + 3]) << 24;
        k1 = k1.wrapping_mul(c1);
        k1 = k1.rotate_left(15);
        k1 = k1.wrapping_mul(c2);
        h1 ^= k1;
        h1 = h1.rotate_left(13);
        h1 = h1.wrapping_mul(5).wrapping_add(0xe6546b64);
    }
    let tail = &data[blocks * 4..];
    let mut k1 = 0u32;
    if tail.len() >= 3 {
        k1 ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        k1 ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        k1 ^= u32::from(tail[0]);
        k1 = k1.wrapping_mul(c1);
        k1 = k1.rotate_left(15);
        k1 = k1.wrapping_mul(c2);
        h1 ^= k1;
    }
    h1 ^= data.len() as u32;
    h1 ^= h1 >> 16;
    h1 = h1.wrapping_mul(0x85ebca6b);
    h1 ^= h1 >> 13;
    h1 = h1.wrapping_mul(0xc2b2ae35);
    h1 ^ (h1 >> 16)
}

fn load() -> Vectors {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/rollout-vectors.json");
    let text = std::fs::read_to_string(path).expect("vectors file");
    serde_json::from_str(&text).expect("vectors parse")
}

fn percent_key(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{}", p as i64)
    } else {
        format!("{p}")
    }
}

#[test]
fn at_least_a_thousand_cases_with_unicode_and_empty_subjects() {
    let vectors = load();
    assert!(vectors.cases.len() >= 1000, "{} cases", vectors.cases.len());
    assert!(vectors.cases.iter().any(|c| c.subject.is_empty()));
    assert!(vectors.cases.iter().any(|c| !c.subject.is_ascii()));
    assert!(vectors.percents.len() >= 5);
}

#[test]
fn an_independent_murmur3_regenerates_every_bucket() {
    for case in load().cases {
        let input = format!("{}:{}", case.salt, case.subject);
        let hash = reference_murmur3(input.as_bytes(), 0);
        assert_eq!(hash, case.hash, "reference hash of {input:?}");
        assert_eq!(hash % 10_000, case.bucket, "reference bucket of {input:?}");
        assert_eq!(murmur3_32(&[input.as_bytes()], 0), case.hash, "crate hash of {input:?}");
        assert_eq!(bucket(&case.salt, &case.subject), case.bucket, "crate bucket of {input:?}");
    }
}

#[test]
fn evaluation_gives_every_listed_variant() {
    let vectors = load();
    for case in &vectors.cases {
        for &percent in &vectors.percents {
            let gray = Gray::new(
                serde_json::json!("gray"),
                percent,
                case.salt.clone(),
                chrono::Utc::now(),
            );
            let decision = evaluate_with_roll(Some(&gray), Some(&case.subject), &(), || 0);
            let expected = case.variants[&percent_key(percent)];
            assert_eq!(decision.variant, expected, "{:?} at {percent}%", case.subject);
            assert_eq!(decision.reason, Reason::Percent);
            assert_eq!(decision.bucket, Some(case.bucket));
        }
    }
}
