//! Checks histories recorded by the fault tests for linearizability and per-node session order.
//!
//! # Model
//!
//! Clients invoke [`Op`]s over real-time intervals `[invoke, complete]`. Every key is an
//! independent register, so a history is linearizable iff each key's sub-history is
//! (P-compositionality). A register is absent or holds a value and the revision it was
//! written at. Revisions come from one store-wide counter, so a key's committed writes take
//! effect in increasing revision order. Values are unique per write (the harness guarantees
//! it; the prunings below rely on it). An op with an unknown outcome may never take effect,
//! or take effect once at any time after its invocation (it completes at infinity, as in
//! Knossos and porcupine); the revision it leaves is unknown and tracked as a lower bound.
//! A read with an unknown outcome says nothing and is dropped.
//!
//! # Algorithm
//!
//! A Wing–Gong–Lowe depth-first search, with an explicit stack, over which op takes effect
//! next. Only ops invoked no later than the earliest completion among the unplaced
//! determinate ops may come next (just-in-time linearization). Unplaced ops sit in a
//! dancing linked list ordered by invocation, so placing and undoing are O(1). Visited
//! nodes (set of placed ops, register state) are memoized as in Lowe's cache, the set as a
//! 128-bit Zobrist fingerprint (a false "seen" needs a 128-bit collision). Three prunings
//! keep a 5,000-op key about linear; each keeps some linearization whenever one exists:
//!
//! 1. Chains: acknowledged writes go in revision order, and unknown writes that no read
//!    observed and that expect the same revision (or none) are interchangeable, so go in
//!    invocation order. Only the next op of a chain may be placed.
//! 2. A determinate op that may come next without changing the state (a read of the current
//!    value, a refused CAS) is placed at once, without branching: it commutes forward.
//! 3. Unknown ops are tried after determinate ones, and the op placed right after one must
//!    be impossible without it; otherwise it could be left out or placed later.
//!
//! A key fails with [`ViolationKind::NotLinearizable`] when the search is exhausted, naming
//! the longest linearizable prefix found, or with [`ViolationKind::GaveUp`] after
//! `max_states` memoized nodes. [`check_sessions`] adds plain per-node checks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// How many search nodes [`check_linearizable`] memoizes per key before giving up.
pub const DEFAULT_MAX_STATES: usize = 5_000_000;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Read the key.
    Read,
    /// Write `value` unconditionally.
    Write {
        /// The value written, unique per write.
        value: String,
    },
    /// Write `value` only if the key exists at exactly revision `expect` (HTTP If-Match).
    Cas {
        /// The revision the key must be at.
        expect: u64,
        /// The value written, unique per write.
        value: String,
    },
}

/// What the client was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A read's answer: the value and the revision it was written at, or None for an absent key.
    Read(Option<(String, u64)>),
    /// A write or CAS that took effect at this revision.
    Written(u64),
    /// A CAS refused because the key was not at `expect` (changed nothing).
    Refused,
    /// The op timed out or was answered "outcome unknown": it may or may not have taken
    /// effect, at any time after its invocation.
    Unknown,
}

/// One operation of a recorded history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The client that issued it.
    pub client: u32,
    /// The server node it was sent to.
    pub node: u32,
    /// The key it concerns.
    pub key: String,
    /// When it was invoked (monotonic nanoseconds).
    pub invoke: u64,
    /// When its answer arrived (monotonic nanoseconds); ignored for [`Outcome::Unknown`].
    pub complete: u64,
    /// What was asked.
    pub call: Call,
    /// What was answered.
    pub outcome: Outcome,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match &self.outcome {
            Outcome::Read(None) => "absent".to_string(),
            Outcome::Read(Some((v, r))) => format!("{v:?}@{r}"),
            Outcome::Written(r) => format!("ok@{r}"),
            Outcome::Refused => "refused".to_string(),
            Outcome::Unknown => "unknown".to_string(),
        };
        let (c, n, t) = (self.client, self.node, self.invoke);
        write!(f, "[client {c} node {n} {t}..{}] {:?} -> {outcome}", self.complete, self.call)
    }
}

/// Why a key failed the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// The search was exhausted: no linearization exists.
    NotLinearizable,
    /// The search hit its state bound: nothing was proven either way.
    GaveUp,
}

/// A key whose history failed [`check_linearizable`].
#[derive(Debug, Clone)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// Proven violation, or inconclusive search.
    pub kind: ViolationKind,
    /// What went wrong, for a human.
    pub explanation: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {:?}: {:?}: {}", self.key, self.kind, self.explanation)
    }
}

/// Checks every key's sub-history with at most [`DEFAULT_MAX_STATES`] search nodes per key.
pub fn check_linearizable(history: &[Op]) -> Result<(), Violation> {
    check_linearizable_bounded(history, DEFAULT_MAX_STATES)
}

/// Checks every key's sub-history (in key order) with at most `max_states` search nodes per
/// key, and returns the first key that fails.
pub fn check_linearizable_bounded(history: &[Op], max_states: usize) -> Result<(), Violation> {
    let mut keys: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history.iter().filter(|o| !(o.call == Call::Read && o.outcome == Outcome::Unknown)) {
        keys.entry(op.key.as_str()).or_default().push(op);
    }
    for (key, ops) in keys {
        Search::new(ops).run(max_states).map_err(|(kind, explanation)| Violation {
            key: key.to_string(),
            kind,
            explanation,
        })?;
    }
    Ok(())
}

/// Per-node checks; every problem found is one message.
///
/// Read-your-writes: a read on node `n` invoked after a write on `n` to the same key
/// completed at revision `r` must see a revision `>= r` (absent is a violation). Monotonic
/// reads: a read on node `n` invoked after another read of the key on `n` completed must not
/// see a lower revision than it (absent counts as revision 0).
pub fn check_sessions(history: &[Op]) -> Vec<String> {
    let mut groups: BTreeMap<(&str, u32), Vec<&Op>> = BTreeMap::new();
    for op in history {
        groups.entry((op.key.as_str(), op.node)).or_default().push(op);
    }
    let mut problems = Vec::new();
    for ((key, node), ops) in groups {
        // (op, revision it saw or wrote) for reads and for acknowledged writes.
        let (mut reads, mut writes) = (Vec::new(), Vec::new());
        for &o in &ops {
            match (&o.call, &o.outcome) {
                (Call::Read, Outcome::Read(seen)) => {
                    reads.push((o, seen.as_ref().map_or(0, |s| s.1)))
                }
                (Call::Write { .. } | Call::Cas { .. }, Outcome::Written(r)) => {
                    writes.push((o, *r))
                }
                _ => {}
            }
        }
        let mut by_invoke = reads.clone();
        by_invoke.sort_by_key(|r| r.0.invoke);
        for (rule, mut earlier) in [("read-your-writes", writes), ("monotonic reads", reads)] {
            earlier.sort_by_key(|e| e.0.complete);
            let (mut j, mut best) = (0, None::<(&Op, u64)>);
            for &(read, rev) in &by_invoke {
                while let Some(&e) = earlier.get(j).filter(|e| e.0.complete < read.invoke) {
                    best = best.filter(|b| b.1 >= e.1).or(Some(e));
                    j += 1;
                }
                if let Some((prior, seen)) = best.filter(|b| rev < b.1) {
                    problems.push(format!(
                        "key {key:?} on node {node}: {rule}: {read} is behind revision {seen} \
                         of {prior}, which completed before it was invoked"
                    ));
                }
            }
        }
    }
    problems
}

/// Counts of a history's ops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// All ops.
    pub ops: usize,
    /// Reads.
    pub reads: usize,
    /// Unconditional writes.
    pub writes: usize,
    /// Conditional writes.
    pub cas: usize,
    /// Ops with an unknown outcome (indeterminate).
    pub unknown: usize,
    /// Refused CASes.
    pub refused: usize,
    /// Distinct keys.
    pub keys: usize,
}

/// Counts the ops of `history` by call and outcome.
pub fn summary(history: &[Op]) -> Summary {
    let mut s = Summary { ops: history.len(), ..Summary::default() };
    for op in history {
        let n = match op.call {
            Call::Read => &mut s.reads,
            Call::Write { .. } => &mut s.writes,
            Call::Cas { .. } => &mut s.cas,
        };
        *n += 1;
        s.unknown += usize::from(op.outcome == Outcome::Unknown);
        s.refused += usize::from(op.outcome == Outcome::Refused);
    }
    s.keys = history.iter().map(|o| o.key.as_str()).collect::<HashSet<_>>().len();
    s
}

/// "No value" (an absent register), "no chain".
const NONE: u32 = u32::MAX;

/// A register state. `value` indexes the key's value table. If `exact`, the value was
/// written at `rev`; otherwise at some unknown revision greater than `rev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reg {
    value: u32,
    rev: u64,
    exact: bool,
}

impl Reg {
    const ABSENT: Reg = Reg { value: NONE, rev: 0, exact: true };

    /// The least revision the current value can have.
    fn floor(self) -> u64 {
        self.rev.saturating_add(u64::from(!self.exact))
    }

    /// Whether the current value can have been written at `rev`.
    fn at(self, rev: u64) -> bool {
        self.value != NONE && if self.exact { self.rev == rev } else { rev > self.rev }
    }
}

/// What an op does to a register: `rev: None` is an unknown outcome, `expect: None` a
/// plain write, `Impossible` a call/outcome pair that cannot happen (a refused write).
#[derive(Debug, Clone, Copy)]
enum Eff {
    Read { value: u32, rev: u64 },
    Put { expect: Option<u64>, value: u32, rev: Option<u64> },
    Refused { expect: u64 },
    Impossible,
}

impl Eff {
    /// The state after the op, if the op can take effect in state `s`.
    fn apply(self, s: Reg) -> Option<Reg> {
        match self {
            Eff::Read { value, rev } => (s.value == value && (value == NONE || s.at(rev)))
                .then_some(Reg { value, rev, exact: true }),
            Eff::Put { expect, value, rev } => {
                // A CAS learns the current revision; a write only bounds it.
                let (cur, ok) = expect.map_or((s.floor(), true), |e| (e, s.at(e)));
                match rev {
                    Some(r) => (ok && r > cur).then_some(Reg { value, rev: r, exact: true }),
                    None => ok.then_some(Reg { value, rev: cur, exact: false }),
                }
            }
            Eff::Refused { expect } => (!(s.exact && s.at(expect))).then_some(s),
            Eff::Impossible => None,
        }
    }
}

/// One op of a key as the search sees it; unknown ones complete at `u64::MAX`. Ops of one
/// chain (pruning 1) must be placed in `pos` order.
#[derive(Debug, Clone, Copy)]
struct Entry {
    invoke: u64,
    complete: u64,
    det: bool,
    eff: Eff,
    chain: u32,
    pos: u32,
}

/// A search node's progress: children are tried in `pass` 1 (the determinate ops from
/// `cursor` on) and 2 (the unknown ones); 0 is "not started", 3 "done".
struct Frame {
    op: usize,
    before: Reg,
    before_ctx: Option<Reg>,
    horizon: u64,
    cursor: usize,
    pass: u8,
}

/// The search over one key's ops; index `ops.len()` is the list's sentinel.
struct Search<'a> {
    src: Vec<&'a Op>,
    ops: Vec<Entry>,
    values: Vec<&'a str>,
    next: Vec<usize>,
    prev: Vec<usize>,
    placed: Vec<u32>,
    open: usize,
    zobrist: Vec<u128>,
    fp: u128,
}

/// splitmix64's finalizer: a cheap, well-mixing bijection.
fn mix(x: u64) -> u64 {
    let z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The memo key of a node: the placed set's fingerprint mixed with the state and context.
fn node_key(fp: u128, s: Reg, ctx: Option<Reg>) -> u128 {
    let pack = |r: Option<Reg>| r.map_or(0, |r| 1 << 40 | u64::from(r.value) << 1 | r.exact as u64);
    let words = [s.rev, pack(Some(s)), ctx.map_or(0, |c| c.rev), pack(ctx)];
    let hash = |seed: u64| words.iter().fold(seed, |h, &w| mix(h ^ w));
    fp ^ (u128::from(hash(1)) << 64 | u128::from(hash(2)))
}

impl<'a> Search<'a> {
    fn new(mut src: Vec<&'a Op>) -> Self {
        src.sort_by_key(|o| o.invoke);
        let (mut ids, mut values) = (HashMap::new(), Vec::new());
        let mut id = |v: &'a str| {
            *ids.entry(v).or_insert_with(|| {
                values.push(v);
                values.len() as u32 - 1
            })
        };
        let mut ops: Vec<Entry> = src
            .iter()
            .map(|o| {
                let rev = if let Outcome::Written(r) = o.outcome { Some(r) } else { None };
                let eff = match (&o.call, &o.outcome) {
                    (Call::Read, Outcome::Read(None)) => Eff::Read { value: NONE, rev: 0 },
                    (Call::Read, Outcome::Read(Some((v, r)))) => {
                        Eff::Read { value: id(v), rev: *r }
                    }
                    (Call::Cas { expect, .. }, Outcome::Refused) => {
                        Eff::Refused { expect: *expect }
                    }
                    (Call::Read, _) | (_, Outcome::Read(_) | Outcome::Refused) => Eff::Impossible,
                    (Call::Write { value }, _) => Eff::Put { expect: None, value: id(value), rev },
                    (Call::Cas { expect, value }, _) => {
                        Eff::Put { expect: Some(*expect), value: id(value), rev }
                    }
                };
                let det = o.outcome != Outcome::Unknown;
                let complete = if det { o.complete.max(o.invoke) } else { u64::MAX };
                Entry { invoke: o.invoke, complete, det, eff, chain: NONE, pos: 0 }
            })
            .collect();
        let mut read = vec![false; values.len()];
        for e in &ops {
            if let Eff::Read { value, .. } = e.eff {
                read.get_mut(value as usize).into_iter().for_each(|r| *r = true);
            }
        }
        // (chain, order within it, op), sorted: acknowledged writes, then unread unknowns.
        let mut chained: Vec<(Option<u64>, u64, usize)> = Vec::new();
        for (i, e) in ops.iter().enumerate() {
            match e.eff {
                Eff::Put { rev: Some(r), .. } => chained.push((None, r, i)),
                Eff::Put { expect, value, rev: None } if !read[value as usize] => {
                    chained.push((Some(expect.map_or(0, |x| x.saturating_add(1))), e.invoke, i))
                }
                _ => {}
            }
        }
        chained.sort_unstable();
        let mut placed: Vec<u32> = Vec::new();
        for (k, &(key, _, i)) in chained.iter().enumerate() {
            if k == 0 || chained[k - 1].0 != key {
                placed.push(0);
            }
            let c = placed.len() - 1;
            (ops[i].chain, ops[i].pos, placed[c]) = (c as u32, placed[c], placed[c] + 1);
        }
        placed.fill(0);
        let n = ops.len();
        let zobrist =
            (0..n as u64).map(|i| u128::from(mix(2 * i)) << 64 | u128::from(mix(2 * i + 1)));
        Search {
            open: ops.iter().filter(|e| e.det).count(),
            src,
            ops,
            values,
            next: (0..=n).map(|i| (i + 1) % (n + 1)).collect(),
            prev: (0..=n).map(|i| (i + n) % (n + 1)).collect(),
            placed,
            zobrist: zobrist.collect(),
            fp: 0,
        }
    }

    /// Places op `i`, or undoes that; undos come in reverse order (dancing links).
    fn toggle(&mut self, i: usize, undo: bool) {
        let (p, n, e) = (self.prev[i], self.next[i], self.ops[i]);
        (self.next[p], self.prev[n]) = if undo { (i, i) } else { (n, p) };
        if let Some(c) = self.placed.get_mut(e.chain as usize) {
            *c = if undo { *c - 1 } else { *c + 1 };
        }
        if e.det {
            self.open = if undo { self.open + 1 } else { self.open - 1 };
        }
        self.fp ^= self.zobrist[i];
    }

    /// The earliest completion among unplaced determinate ops, and that op.
    fn horizon(&self) -> (u64, usize) {
        let (head, mut best) = (self.ops.len(), (u64::MAX, self.ops.len()));
        let mut i = self.next[head];
        while i != head && self.ops[i].invoke <= best.0 {
            if self.ops[i].det && self.ops[i].complete < best.0 {
                best = (self.ops[i].complete, i);
            }
            i = self.next[i];
        }
        best
    }

    /// The state after op `i` if it may be placed next in state `s`. `ctx` is the state
    /// before the previous op when that op had an unknown outcome: then `i` must need it.
    fn eligible(&self, i: usize, s: Reg, ctx: Option<Reg>) -> Option<Reg> {
        let e = &self.ops[i];
        if self.placed.get(e.chain as usize).is_some_and(|&p| p != e.pos)
            || ctx.is_some_and(|before| e.eff.apply(before).is_some())
        {
            return None;
        }
        e.eff.apply(s)
    }

    /// The next child of node `f` (in state `s`) to try, with the state it leads to.
    fn next_child(&self, f: &mut Frame, s: Reg, ctx: Option<Reg>) -> Option<(usize, Reg)> {
        let head = self.ops.len();
        if f.pass == 0 {
            (f.horizon, f.pass, f.cursor) = (self.horizon().0, 1, self.next[head]);
            let mut i = self.next[head];
            while i != head && self.ops[i].invoke <= f.horizon {
                if self.ops[i].det && self.eligible(i, s, ctx) == Some(s) {
                    f.pass = 3;
                    return Some((i, s));
                }
                i = self.next[i];
            }
        }
        while f.pass < 3 {
            let mut i = f.cursor;
            while i != head && self.ops[i].invoke <= f.horizon {
                let after = self.next[i];
                if let Some(to) =
                    self.eligible(i, s, ctx).filter(|_| self.ops[i].det == (f.pass == 1))
                {
                    f.cursor = after;
                    return Some((i, to));
                }
                i = after;
            }
            (f.pass, f.cursor) = (f.pass + 1, self.next[head]);
        }
        None
    }

    fn run(&mut self, max_states: usize) -> Result<(), (ViolationKind, String)> {
        let head = self.ops.len();
        let (mut state, mut ctx) = (Reg::ABSENT, None);
        let mut seen = HashSet::from([node_key(self.fp, state, ctx)]);
        let frame = |op, before, before_ctx| Frame {
            op,
            before,
            before_ctx,
            horizon: 0,
            cursor: head,
            pass: 0,
        };
        let mut stack = vec![frame(head, state, ctx)];
        let mut best = (0, state, head, self.horizon().1);
        while self.open > 0 {
            let Some(top) = stack.last_mut() else { break };
            if let Some((i, after)) = self.next_child(top, state, ctx) {
                self.toggle(i, false);
                let after_ctx = (!self.ops[i].det).then_some(state);
                if !seen.insert(node_key(self.fp, after, after_ctx)) {
                    self.toggle(i, true);
                    continue;
                }
                if seen.len() > max_states {
                    let why = format!("search gave up after {max_states} states on {head} ops");
                    return Err((ViolationKind::GaveUp, why));
                }
                stack.push(frame(i, state, ctx));
                (state, ctx) = (after, after_ctx);
                if stack.len() > best.0 + 1 {
                    best = (stack.len() - 1, state, i, self.horizon().1);
                }
            } else if let Some(done) = stack.pop().filter(|f| f.op != head) {
                self.toggle(done.op, true);
                (state, ctx) = (done.before, done.before_ctx);
            } else {
                break;
            }
        }
        if self.open == 0 {
            return Ok(());
        }
        let (depth, state, last, blocked) = best;
        let last = self.src.get(last).map_or("nothing".to_string(), |o| o.to_string());
        let held = match self.values.get(state.value as usize) {
            None => "nothing (absent)".to_string(),
            Some(v) if state.exact => format!("{v:?}@{}", state.rev),
            Some(v) => format!("{v:?} at an unknown revision above {}", state.rev),
        };
        let why = format!(
            "the longest linearizable prefix found places {depth} of {head} ops, ending with \
             {last}; the register then holds {held}, and no op can come next, though {} must",
            self.src[blocked]
        );
        Err((ViolationKind::NotLinearizable, why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Parses "client[/node] invoke-complete op, ..." on key "k", where op is `r` (absent),
    /// `r:v@rev`, `w:v@rev`, `w:v?` (unknown), `c<expect>:v@rev`, `c<expect>:v!` (refused)
    /// or `c<expect>:v?`.
    fn h(s: &str) -> Vec<Op> {
        let num = |x: &str| x.parse::<u64>().expect("a number");
        let parse = |o: &str| {
            let f: Vec<&str> = o.split_whitespace().collect();
            let (client, node) = f[0].split_once('/').unwrap_or((f[0], f[0]));
            let ((t0, t1), (kind, v)) = (f[1].split_once('-').expect("t"), f[2].split_at(1));
            let v = v.trim_start_matches(|c: char| c.is_ascii_digit() || c == ':');
            let (value, outcome) = match v.split_once('@') {
                Some((v, r)) if kind == "r" => (v, Outcome::Read(Some((v.into(), num(r))))),
                Some((v, r)) => (v, Outcome::Written(num(r))),
                None if kind == "r" => (v, Outcome::Read(None)),
                None if v.ends_with('?') => (&v[..v.len() - 1], Outcome::Unknown),
                None => (&v[..v.len() - 1], Outcome::Refused),
            };
            let call = match kind {
                "r" => Call::Read,
                "w" => Call::Write { value: value.into() },
                _ => Call::Cas {
                    expect: num(f[2][1..].split(':').next().expect("e")),
                    value: value.into(),
                },
            };
            let (client, node, key) = (num(client) as u32, num(node) as u32, "k".into());
            Op { client, node, key, invoke: num(t0), complete: num(t1), call, outcome }
        };
        s.split(',').map(parse).collect()
    }

    fn rejected(history: &[Op]) -> bool {
        check_linearizable(history).is_err_and(|e| e.kind == ViolationKind::NotLinearizable)
    }

    #[test]
    fn accepts_linearizable_histories() {
        for case in [
            "0 0-1 r, 1 0-1 w:a@1, 1 2-3 w:b@5, 2 4-5 r:b@5, 0 6-7 r:b@5", // sequential
            "0 0-10 w:a@1, 1 0-10 w:b@2, 2 1-5 r:a@1, 2 11-12 r:b@2", // concurrent writes: a, b
            "0 0-10 w:a@2, 1 0-10 w:b@1, 2 1-5 r:b@1, 2 11-12 r:a@2", // concurrent writes: b, a
            "0 0-1 w:a@1, 1 2-3 w:b?, 2 10-11 r:b@3, 0 12-13 w:c@4, 2 14-15 r:c@4", // took effect
            "0 0-1 w:a@1, 1 2-3 w:b?, 2 10-11 r:a@1, 0 12-13 w:c@4, 2 14-15 r:c@4", // never did
            "3 0-1 c7:x!, 0 2-3 w:a@1, 1 4-5 c1:b@2, 2 6-7 c1:c!, 2 8-9 c2:d?, 0 10-11 r:b@2",
            "0 0-1 w:a@1, 0 2-10 w:b@2, 1 3-9 r:a@1, 2 4-5 r:b@2", // read during a write: old
            "0 0-1 w:a@1, 0 2-10 w:b@2, 1 3-9 r:b@2, 2 4-5 r:a@1", // read during a write: new
        ] {
            if let Err(e) = check_linearizable(&h(case)) {
                panic!("{case}: wrongly rejected: {e}");
            }
        }
    }

    #[test]
    fn rejects_violations() {
        for case in [
            "0 0-1 w:a@1, 0 2-3 w:b@2, 1 4-5 r:a@1", // stale read
            "0 0-1 w:a@1, 1 2-3 r",                  // lost write: absent
            "0 0-1 w:z@1, 0 2-3 w:a@2, 1 4-5 w:b@3, 2 6-7 r:z@1", // lost writes
            "0 0-1 w:a@10, 1 2-3 w:b@12, 2 4-5 r:a@14", // write applied twice
            "0 0-1 w:a@1, 0 2-3 w:b@2, 1 4-5 c1:c@3", // CAS ok at wrong rev
            "0 0-1 w:a@1, 1 2-3 c1:c!",              // CAS refused at expect
            "0 0-1 w:a@1, 1 0-1 w:b@2, 2 2-3 r:b@2, 2 4-5 r:a@1, 2 6-7 r:b@2", // flip-flop
            "0 0-1 w:a@1, 1 2-3 c5:x!, 2 4-5 r:x@2", // refused CAS took effect
            "0 0-1 w:a@1, 1 2-3 w:b?, 2 5-6 r:b@3, 2 7-8 r:a@1", // unknown write undone
            "0 0-1 w:a@1, 1 2-3 c7:x?, 2 4-5 r:x@3", // unknown CAS, bad expect
            "0 0-1 w:a@5, 1 2-3 w:b@4",              // revisions go back
        ] {
            assert!(rejected(&h(case)), "{case}: {:?}", check_linearizable(&h(case)));
        }
    }

    #[test]
    fn session_checks() {
        let ryw = check_sessions(&h("0 0-1 w:a@3, 0 2-3 w:b@5, 1/0 4-5 r:a@3"));
        assert!(ryw.len() == 1 && ryw[0].contains("read-your-writes"), "{ryw:?}");
        let back = check_sessions(&h("1/0 0-1 r:b@5, 2/0 2-3 r:a@3"));
        assert!(back.len() == 1 && back[0].contains("monotonic reads"), "{back:?}");
        // Node 1 lags behind node 0: fine per node, though not linearizable.
        let lag = h("0 0-1 w:a@3, 0 2-3 w:b@5, 1/1 4-5 r:a@3");
        assert_eq!(check_sessions(&lag), Vec::<String>::new());
        assert!(rejected(&lag));
    }

    #[test]
    fn summary_counts() {
        let mut history = h("0 0-1 w:a@1, 1 0-1 w:b?, 2 0-1 r, 0 2-3 c9:c!");
        history[2].key = "other".into();
        let s = summary(&history);
        assert_eq!(
            (s.ops, s.reads, s.writes, s.cas, s.unknown, s.refused, s.keys),
            (4, 1, 2, 1, 1, 1, 2)
        );
    }

    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// A valid history of `n` ops on one key by `clients` clients: each op takes effect on a
    /// real register at a random instant of its interval; `unknown_pct` percent of writes
    /// are reported unknown (half of those never take effect).
    fn simulate(seed: u64, n: usize, clients: usize, unknown_pct: u64) -> Vec<Op> {
        let (mut rng, mut clock, mut timed) = (Lcg(seed), vec![0; clients], Vec::new());
        for i in 0..n {
            let c = (0..clients).min_by_key(|&c| clock[c]).unwrap_or(0);
            let invoke = clock[c] + 1 + rng.below(5);
            clock[c] = invoke + 1 + rng.below(100);
            let value = format!("v{i}");
            let call = match rng.below(100) {
                0..50 => Call::Read,
                50..85 => Call::Write { value },
                _ => Call::Cas { expect: 0, value },
            };
            let (client, complete, outcome) = (c as u32, clock[c], Outcome::Unknown);
            let op = Op { client, node: client, key: "k".into(), invoke, complete, call, outcome };
            timed.push((invoke + rng.below(complete - invoke + 1), op));
        }
        timed.sort_by_key(|t| t.0);
        let (mut reg, mut rev) = (None::<(String, u64)>, 0);
        let mut history: Vec<Op> = Vec::new();
        for (_, mut o) in timed {
            let at = reg.as_ref().map(|x| x.1);
            if let Call::Cas { expect, .. } = &mut o.call {
                *expect = at.unwrap_or(1) - u64::from(rng.below(4) == 0);
            }
            o.outcome = match &o.call {
                Call::Read => Outcome::Read(reg.clone()),
                Call::Cas { expect, .. } if Some(*expect) != at => Outcome::Refused,
                Call::Write { value } | Call::Cas { value, .. } => {
                    let unknown = rng.below(100) < unknown_pct;
                    if !unknown || rng.below(2) == 0 {
                        rev += 1 + rng.below(3);
                        reg = Some((value.clone(), rev));
                    }
                    if unknown {
                        Outcome::Unknown
                    } else {
                        Outcome::Written(rev)
                    }
                }
            };
            history.push(o);
        }
        history.sort_by_key(|o| o.invoke);
        history
    }

    #[test]
    fn five_thousand_ops_pass_and_one_stale_read_fails() {
        let mut history = simulate(42, 5000, 10, 2);
        let start = Instant::now();
        check_linearizable(&history).expect("a simulated register is linearizable");
        println!("5,000 valid ops checked in {:?}", start.elapsed());
        let first = history.iter().find_map(|o| match (&o.call, &o.outcome) {
            (Call::Write { value }, Outcome::Written(r)) => Some((value.clone(), *r)),
            _ => None,
        });
        let late =
            history.iter().skip(2500).position(|o| matches!(o.outcome, Outcome::Read(Some(_))));
        history[2500 + late.expect("a read")].outcome = Outcome::Read(first);
        let start = Instant::now();
        assert!(rejected(&history));
        println!("5,000 ops with one stale read rejected in {:?}", start.elapsed());
    }

    /// Plain WGL from the definition: no memo, no prunings.
    fn brute(es: &[Entry], done: &mut [bool], s: Reg) -> bool {
        let open = (0..es.len()).filter(|&i| !done[i] && es[i].det);
        let Some(horizon) = open.map(|i| es[i].complete).min() else { return true };
        (0..es.len()).any(|i| {
            let next = if done[i] || es[i].invoke > horizon { None } else { es[i].eff.apply(s) };
            next.is_some_and(|n| {
                done[i] = true;
                let ok = brute(es, done, n);
                done[i] = false;
                ok
            })
        })
    }

    #[test]
    fn agrees_with_brute_force_on_small_histories() {
        let (mut rng, mut verdicts) = (Lcg(7), [0; 2]);
        for seed in 0..4000 {
            let mut history = simulate(seed, 7, 2 + seed as usize % 3, seed % 5 * 20);
            for _ in 0..rng.below(3) {
                let (i, other, bump) =
                    (rng.below(7) as usize, rng.below(7) as usize, 1 + rng.below(2));
                let stolen = match (&history[other].call, &history[other].outcome) {
                    (Call::Write { value } | Call::Cas { value, .. }, Outcome::Written(r)) => {
                        Some((value.clone(), *r))
                    }
                    (Call::Write { value } | Call::Cas { value, .. }, _) => {
                        Some((value.clone(), bump))
                    }
                    _ => None,
                };
                let o = &mut history[i];
                o.outcome = match (&o.outcome, rng.below(3)) {
                    (Outcome::Read(Some((v, r))), 0) => Outcome::Read(Some((v.clone(), r + bump))),
                    (Outcome::Read(_), _) => Outcome::Read(stolen),
                    (Outcome::Written(r), 0) => Outcome::Written(r.saturating_sub(bump)),
                    (Outcome::Written(_), _) if o.call != Call::Read => Outcome::Refused,
                    (Outcome::Refused, 0) => Outcome::Unknown,
                    (Outcome::Refused, _) => Outcome::Written(20 + bump),
                    (outcome, _) => outcome.clone(),
                };
            }
            let ops =
                history.iter().filter(|o| !(o.call == Call::Read && o.outcome == Outcome::Unknown));
            let es = Search::new(ops.collect()).ops;
            let fast = check_linearizable(&history).is_ok();
            assert_eq!(fast, brute(&es, &mut vec![false; es.len()], Reg::ABSENT), "{history:#?}");
            verdicts[usize::from(fast)] += 1;
        }
        assert!(verdicts[0] > 500 && verdicts[1] > 500, "{verdicts:?}");
    }

    #[test]
    fn gives_up_past_the_state_bound() {
        let e = check_linearizable_bounded(&simulate(1, 200, 10, 0), 10).expect_err("bounded");
        assert!(e.kind == ViolationKind::GaveUp && e.to_string().contains("gave up after"), "{e}");
    }
}
