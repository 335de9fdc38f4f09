//! The store contract as behavioural checks, run against every engine (memory and redb
//! in `tests/tests/store_contract.rs`, etcd in `tests/tests/cluster.rs`): a difference
//! between engines is a test failure.
//!
//! Each check opens fresh stores through an [`Opener`] and panics on a breach.

#![doc(hidden)]

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use graycast_protocol::gray::GrayPatch;
use graycast_protocol::{Gray, Op, Revision};
use serde_json::{json, Value};

use super::{
    ChangePage, FeedReceiver, Idempotency, Mutation, Precondition, Store, StoreError, WriteRequest,
};

/// Settings a check needs from the store it opens.
#[derive(Debug, Clone, Copy)]
pub struct Tweaks {
    pub history_retain: u64,
    pub changelog_retain: u64,
    pub quota_bytes: u64,
}

impl Default for Tweaks {
    fn default() -> Self {
        Tweaks { history_retain: 0, changelog_retain: 100_000, quota_bytes: u64::MAX }
    }
}

/// Opens a fresh, empty store with the given settings.
pub type Opener = dyn Fn(Tweaks) -> Pin<Box<dyn Future<Output = (Store, FeedReceiver)>>>;

/// What an engine leaves to something else, so the checks skip it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exemptions {
    /// The engine's quota is its backend's own (etcd's `--quota-backend-bytes`).
    pub quota: bool,
}

/// Runs every check.
pub async fn check_all(open: &Opener, exempt: Exemptions) {
    writes_get_one_revision_each_in_order(open).await;
    refused_writes_change_nothing(open).await;
    history_pages_and_rollback(open).await;
    history_retention_keeps_the_newest_items(open).await;
    gray_releases_follow_their_rules(open).await;
    changes_replay_in_order(open).await;
    idempotency_keys_apply_a_write_once(open).await;
    if !exempt.quota {
        the_quota_refuses_growth_but_not_deletes(open).await;
    }
}

/// Stops a store (its shutdown blocks, so it runs on a blocking thread).
async fn close(store: Store) {
    tokio::task::spawn_blocking(move || store.shutdown()).await.expect("shuts down");
}

fn put(key: &str, value: Value) -> WriteRequest {
    WriteRequest::new("ns", key, Mutation::Put { value }, "contract")
}

fn with(mut request: WriteRequest, precondition: Precondition) -> WriteRequest {
    request.precondition = precondition;
    request
}

async fn write(store: &Store, request: WriteRequest) -> Revision {
    match store.write(request.clone()).await {
        Ok(change) => change.revision,
        Err(err) => panic!("{request:?} failed: {err}"),
    }
}

/// The revisions the feed delivers, until `last`.
fn fed_until(feed: &FeedReceiver, last: Revision) -> Vec<Revision> {
    let mut fed = Vec::new();
    while fed.last().is_none_or(|r| *r < last) {
        match feed.recv_timeout(Duration::from_secs(10)) {
            Ok(super::Fed::Changes(batch, _)) => fed.extend(batch.iter().map(|c| c.revision)),
            Ok(super::Fed::Reloaded(_)) => {}
            Err(_) => panic!("the feed stopped at {fed:?} before revision {last}"),
        }
    }
    fed
}

pub async fn writes_get_one_revision_each_in_order(open: &Opener) {
    let (store, feed) = open(Tweaks::default()).await;
    let start = store.revision();
    let a1 = write(&store, put("a", json!(1))).await;
    let b1 = write(&store, put("b", json!("x"))).await;
    let a2 = write(&store, put("a", json!({"n": 2}))).await;
    let deleted = write(&store, WriteRequest::new("ns", "b", Mutation::Delete, "contract")).await;
    let b2 = write(&store, put("b", json!("again"))).await;
    let revisions = [a1, b1, a2, deleted, b2];
    assert!(a1 > start && revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    assert!(store.wait_applied(b2, Duration::from_secs(10)).await);
    assert_eq!(store.revision(), b2);
    let a = store.get("ns", "a").expect("a exists");
    assert_eq!(
        (a.value.clone(), a.revision, a.created_revision, a.version),
        (json!({"n": 2}), a2, a1, 2)
    );
    let b = store.get("ns", "b").expect("b exists again");
    assert_eq!(
        (b.revision, b.created_revision, b.version),
        (b2, b2, 1),
        "a recreated key starts over"
    );
    let fed = fed_until(&feed, b2);
    assert_eq!(fed, revisions, "the feed carries every change once, in order");
    let (revision, entries) = store.snapshot(&["ns".to_owned()]);
    assert_eq!(revision, b2);
    assert_eq!(entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    close(store).await;
}

pub async fn refused_writes_change_nothing(open: &Opener) {
    let (store, _feed) = open(Tweaks::default()).await;
    let first = write(&store, put("k", json!(1))).await;
    let refusals = [
        (with(put("k", json!(2)), Precondition::Revision(first + 100)), "revision_mismatch"),
        (with(put("k", json!(2)), Precondition::Absent), "already_exists"),
        (with(put("new", json!(2)), Precondition::Exists), "missing"),
        (with(put("new", json!(2)), Precondition::Revision(first)), "missing"),
        (WriteRequest::new("ns", "nope", Mutation::Delete, "contract"), "not_found"),
        (WriteRequest::new("ns", "nope", Mutation::Promote, "contract"), "not_found"),
        (WriteRequest::new("ns", "k", Mutation::Promote, "contract"), "not_found"),
    ];
    for (request, expected) in refusals {
        let kind = match store.write(request.clone()).await {
            Err(StoreError::RevisionMismatch { .. }) => "revision_mismatch",
            Err(StoreError::AlreadyExists { .. }) => "already_exists",
            Err(StoreError::Missing { .. }) => "missing",
            Err(StoreError::NotFound { .. }) => "not_found",
            other => panic!("{request:?}: expected {expected}, got {other:?}"),
        };
        assert_eq!(kind, expected, "{request:?}");
    }
    let ok = write(&store, with(put("k", json!(3)), Precondition::Revision(first))).await;
    assert!(ok > first);
    assert!(store.wait_applied(ok, Duration::from_secs(10)).await);
    let (_, entries) = store.snapshot(&["ns".to_owned()]);
    assert_eq!(entries.len(), 1, "refused creates created nothing");
    let history = store.history("ns", "k", None, 100, 1 << 20).await.expect("history");
    let revisions: Vec<Revision> = history.items.iter().map(|i| i.revision).collect();
    assert_eq!(revisions, [ok, first], "refused writes left no history");
    close(store).await;
}

pub async fn history_pages_and_rollback(open: &Opener) {
    let (store, _feed) = open(Tweaks::default()).await;
    let mut revisions = Vec::new();
    for i in 0..5 {
        let mut request = put("k", json!(i));
        request.comment = Some(format!("step {i}"));
        revisions.push(write(&store, request).await);
    }
    let deleted = write(&store, WriteRequest::new("ns", "k", Mutation::Delete, "contract")).await;
    let all = store.history("ns", "k", None, 100, 1 << 20).await.expect("history");
    let listed: Vec<Revision> = all.items.iter().map(|i| i.revision).collect();
    let mut expected: Vec<Revision> = revisions.iter().rev().copied().collect();
    expected.insert(0, deleted);
    assert_eq!(listed, expected, "newest first, the delete included");
    assert!(!all.more);
    assert_eq!(all.items[0].op, Op::Delete);
    assert_eq!(all.items[1].comment.as_deref(), Some("step 4"));
    let page = store.history("ns", "k", Some(revisions[3]), 2, 1 << 20).await.expect("history");
    let listed: Vec<Revision> = page.items.iter().map(|i| i.revision).collect();
    assert_eq!(listed, [revisions[2], revisions[1]]);
    assert!(page.more);
    let tight = store.history("ns", "k", None, 100, 1).await.expect("history");
    assert_eq!((tight.items.len(), tight.more), (1, true), "at least one item, then the bound");

    // A rollback recreates the deleted key with the old value, as a new revision.
    let rollback =
        WriteRequest::new("ns", "k", Mutation::Rollback { to_revision: revisions[1] }, "contract");
    let restored = store.write(rollback).await.expect("rollback");
    assert_eq!(restored.op, Op::Rollback);
    let entry = restored.entry.clone().expect("an entry");
    assert_eq!(
        (entry.value.clone(), entry.version, entry.created_revision),
        (json!(1), 1, restored.revision)
    );
    let to_delete =
        WriteRequest::new("ns", "k", Mutation::Rollback { to_revision: deleted }, "contract");
    assert!(matches!(store.write(to_delete).await, Err(StoreError::Invalid(_))));
    let elsewhere = WriteRequest::new(
        "ns",
        "other",
        Mutation::Rollback { to_revision: revisions[0] },
        "contract",
    );
    assert!(matches!(store.write(elsewhere).await, Err(StoreError::NotFound { .. })));
    let item = store.history_at("ns", "k", revisions[2]).await.expect("read").expect("kept");
    assert_eq!(item.value, json!(2));
    assert!(store.history_at("ns", "k", revisions[2] + 1000).await.expect("read").is_none());
    close(store).await;
}

pub async fn history_retention_keeps_the_newest_items(open: &Opener) {
    let (store, _feed) = open(Tweaks { history_retain: 3, ..Tweaks::default() }).await;
    let mut revisions = Vec::new();
    for i in 0..6 {
        revisions.push(write(&store, put("k", json!(i))).await);
    }
    let history = store.history("ns", "k", None, 100, 1 << 20).await.expect("history");
    let listed: Vec<Revision> = history.items.iter().map(|i| i.revision).collect();
    assert_eq!(listed, [revisions[5], revisions[4], revisions[3]]);
    assert!(store.history_at("ns", "k", revisions[0]).await.expect("read").is_none());
    let rollback =
        WriteRequest::new("ns", "k", Mutation::Rollback { to_revision: revisions[1] }, "contract");
    assert!(matches!(store.write(rollback).await, Err(StoreError::NotFound { .. })));
    let latest = store.get("ns", "k").expect("the key");
    assert_eq!(latest.value, json!(5), "retention never touches the current state");
    close(store).await;
}

pub async fn gray_releases_follow_their_rules(open: &Opener) {
    let (store, _feed) = open(Tweaks::default()).await;
    let gray = |value: Value| Box::new(Gray::new(value, 10.0, "ns/k", chrono::Utc::now()));
    let start =
        |value| WriteRequest::new("ns", "k", Mutation::GrayStart { gray: gray(value) }, "contract");
    assert!(matches!(store.write(start(json!(2))).await, Err(StoreError::NotFound { .. })));
    let created = write(&store, put("k", json!(1))).await;
    let started = store.write(start(json!(2))).await.expect("gray start");
    assert_eq!(started.op, Op::Gray);
    let running = started.entry.as_ref().and_then(|e| e.gray.clone()).expect("a release");
    let patch = GrayPatch { percent: Some(50.0), ..GrayPatch::default() };
    let patched = store
        .write(WriteRequest::new("ns", "k", Mutation::GrayPatch(patch), "contract"))
        .await
        .expect("patch");
    assert_eq!(patched.entry.as_ref().and_then(|e| e.gray.as_ref()).map(|g| g.percent), Some(50.0));
    let stale = Mutation::GrayAdvance { started_at: running.started_at, step: 7 };
    assert!(matches!(
        store.write(WriteRequest::new("ns", "k", stale, "contract")).await,
        Err(StoreError::Superseded(_))
    ));
    let other_release = Mutation::Abort {
        started_at: Some(running.started_at + chrono::Duration::seconds(1)),
        note: None,
    };
    assert!(matches!(
        store.write(WriteRequest::new("ns", "k", other_release, "contract")).await,
        Err(StoreError::Superseded(_))
    ));
    let put_during = write(&store, put("k", json!(3))).await;
    assert!(store.wait_applied(put_during, Duration::from_secs(10)).await);
    assert!(store.get("ns", "k").and_then(|e| e.gray.clone()).is_some(), "a put keeps the release");
    let promoted = store
        .write(WriteRequest::new("ns", "k", Mutation::Promote, "contract"))
        .await
        .expect("promote");
    let entry = promoted.entry.clone().expect("an entry");
    assert_eq!((entry.value.clone(), entry.gray.is_none()), (json!(2), true));
    assert_eq!((entry.created_revision, entry.version), (created, 5));
    let abort =
        WriteRequest::new("ns", "k", Mutation::Abort { started_at: None, note: None }, "contract");
    assert!(matches!(store.write(abort).await, Err(StoreError::NotFound { .. })));
    close(store).await;
}

pub async fn changes_replay_in_order(open: &Opener) {
    let (store, _feed) = open(Tweaks { changelog_retain: 5, ..Tweaks::default() }).await;
    let mut committed = Vec::new();
    for i in 0..10 {
        let key = format!("k{}", i % 3);
        committed.push(store.write(put(&key, json!(i))).await.expect("write"));
    }
    let last = committed.last().map(|c| c.revision).unwrap_or_default();
    assert!(store.wait_applied(last, Duration::from_secs(10)).await);
    let after = committed[6].revision;
    match store.changes_after(after, 100).await.expect("changes") {
        ChangePage::Changes(changes) => {
            let replayed: Vec<_> = changes.iter().map(|c| (**c).clone()).collect();
            let expected: Vec<_> = committed[7..].iter().map(|c| (**c).clone()).collect();
            assert_eq!(replayed, expected, "the replay is the committed changes");
        }
        ChangePage::Compacted => panic!("the last changes are kept"),
    }
    match store.changes_after(after, 2).await.expect("changes") {
        ChangePage::Changes(changes) => assert_eq!(changes.len(), 2),
        ChangePage::Compacted => panic!("the last changes are kept"),
    }
    match store.changes_after(last, 100).await.expect("changes") {
        ChangePage::Changes(changes) => assert!(changes.is_empty()),
        ChangePage::Compacted => panic!("nothing after the head"),
    }
    // Far back: either every change, in order, or word that they are gone; never a gap.
    if let ChangePage::Changes(changes) =
        store.changes_after(committed[0].revision - 1, 100).await.expect("changes")
    {
        assert_eq!(changes.len(), committed.len());
    }
    close(store).await;
}

pub async fn the_quota_refuses_growth_but_not_deletes(open: &Opener) {
    let (store, _feed) = open(Tweaks { quota_bytes: 200_000, ..Tweaks::default() }).await;
    let blob = "x".repeat(20_000);
    let mut written = 0;
    let refused = loop {
        match store.write(put(&format!("k{written}"), json!(blob))).await {
            Ok(_) => written += 1,
            Err(err) => break err,
        }
        assert!(written < 20, "the quota never refused a write");
    };
    assert!(matches!(refused, StoreError::QuotaExceeded(_)), "{refused:?}");
    assert!(written >= 2, "writes within the quota pass");
    write(&store, WriteRequest::new("ns", "k0", Mutation::Delete, "contract")).await;
    close(store).await;
}

fn keyed(mut request: WriteRequest, key: &str, fingerprint: &str) -> WriteRequest {
    request.idempotency =
        Some(Idempotency { key: key.to_owned(), fingerprint: fingerprint.to_owned() });
    request
}

/// A write repeated with its `Idempotency-Key` answers the first change and makes none;
/// the key with another request is refused; a conditional write is not refused once it
/// took effect.
pub async fn idempotency_keys_apply_a_write_once(open: &Opener) {
    let (store, _feed) = open(Tweaks::default()).await;
    let first = store.write(keyed(put("k", json!(1)), "key-1", "f1")).await.expect("written");
    let other = write(&store, put("k", json!(2))).await;
    let again = store.write(keyed(put("k", json!(1)), "key-1", "f1")).await.expect("repeated");
    assert_eq!(again.revision, first.revision, "a repeat answers the first change");
    assert_eq!(again.entry.as_ref().map(|e| e.value.clone()), Some(json!(1)));
    assert_eq!(store.revision(), other, "a repeat makes no change");
    assert_eq!(store.get("ns", "k").map(|e| e.value.clone()), Some(json!(2)));
    let reused = store.write(keyed(put("k", json!(3)), "key-1", "f2")).await;
    assert!(matches!(reused, Err(StoreError::KeyReused(_))), "{reused:?}");

    // A compare-and-set whose condition no longer holds once it took effect.
    let cas = with(put("k", json!(4)), Precondition::Revision(other));
    let made = store.write(keyed(cas.clone(), "key-2", "f3")).await.expect("written");
    let again = store.write(keyed(cas, "key-2", "f3")).await.expect("not refused: it was made");
    assert_eq!(again.revision, made.revision);

    // The same key with several writes at once: one change.
    let writes = (0..8).map(|_| store.write(keyed(put("j", json!("once")), "key-3", "f4")));
    let answers = futures_util::future::join_all(writes).await;
    let revisions: std::collections::BTreeSet<Revision> =
        answers.into_iter().map(|a| a.expect("written").revision).collect();
    assert_eq!(revisions.len(), 1, "{revisions:?}");
    let history = store.history("ns", "j", None, 100, 1 << 20).await.expect("history");
    assert_eq!(history.items.len(), 1, "{:?}", history.items);
    close(store).await;
}
