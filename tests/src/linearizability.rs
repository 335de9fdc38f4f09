//! Checks histories recorded by the fault tests for linearizability and per-node session order.
//!
//! **Model.** Clients invoke [`Op`]s over real-time intervals `[invoke, complete]`. Each key is
//! an independent register (P-compositionality): absent, or a value and the revision it was
//! written at. Revisions come from one store-wide counter (from 1), so a key's committed writes
//! take effect in increasing revision order. Values are unique per write (the prunings rely on
//! it). An op with an unknown outcome may never take effect, or take effect once at any time
//! after its invocation (it completes at infinity, as in Knossos and porcupine), at a revision
//! known only to exceed the one before. Reads with unknown outcomes are dropped.
//!
//! **Algorithm.** Per key, a Wing–Gong–Lowe depth-first search (explicit stack) over which op
//! takes effect next: only ops invoked by the earliest completion among unplaced determinate
//! ops may (just-in-time linearization). Unplaced ops sit in a dancing linked list, so placing
//! and undoing are O(1). Visited (placed set, state) nodes are memoized as in Lowe's cache, the
//! set as a 128-bit Zobrist fingerprint. Three prunings, each keeping a linearization if one
//! exists, make a 5,000-op key about linear:
//!
//! 1. Chains: acknowledged writes go in revision order; unknown writes whose value no read
//!    returned and that expect the same revision (or none) are interchangeable, so they go in
//!    invocation order. Only the next op of a chain may be placed.
//! 2. A determinate op that may come next and keeps the state (a read of the current value, a
//!    refused CAS) is placed at once without branching: it commutes forward.
//! 3. Unknown ops are tried after determinate ones, and the op placed right after one must be
//!    impossible without it; otherwise it could be left out or placed later.
//!
//! A key fails with [`ViolationKind::NotLinearizable`] when the search is exhausted, or with
//! [`ViolationKind::GaveUp`] after `max_states` memoized nodes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

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
    /// Timed out or answered "outcome unknown": may take effect at any time after `invoke`.
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
        let (c, n, t, u) = (self.client, self.node, self.invoke, self.complete);
        write!(f, "[client {c} node {n} {t}..{u}] {:?} -> {:?}", self.call, self.outcome)
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
    /// What went wrong: the longest linearizable prefix found, and the op that cannot follow it.
    pub explanation: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {:?}: {:?}: {}", self.key, self.kind, self.explanation)
    }
}

/// Checks every key's sub-history, giving up on a key after 5,000,000 search nodes.
pub fn check_linearizable(history: &[Op]) -> Result<(), Violation> {
    check_linearizable_bounded(history, 5_000_000)
}

/// Checks each key (in order) with at most `max_states` search nodes; returns the first failure.
pub fn check_linearizable_bounded(history: &[Op], max_states: usize) -> Result<(), Violation> {
    let mut keys: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        keys.entry(op.key.as_str()).or_default().push(op);
    }
    keys.into_iter().try_for_each(|(key, ops)| {
        let result = Search::new(ops).run(max_states);
        result.map_err(|(kind, explanation)| Violation { key: key.into(), kind, explanation })
    })
}

/// Per-node checks, one message per problem. Read-your-writes: a read on node `n` invoked after
/// a write of the key on `n` completed at revision `r` must see a revision `>= r` (absent is a
/// violation). Monotonic reads: a read on `n` invoked after another read of the key on `n`
/// completed must not see a lower revision than it (absent counts as revision 0).
pub fn check_sessions(history: &[Op]) -> Vec<String> {
    let mut groups: BTreeMap<(&str, u32), Vec<(&Op, u64)>> = BTreeMap::new();
    for op in history {
        let rev = match &op.outcome {
            Outcome::Read(seen) => seen.as_ref().map_or(0, |s| s.1),
            Outcome::Written(r) => *r,
            _ => continue,
        };
        groups.entry((op.key.as_str(), op.node)).or_default().push((op, rev));
    }
    let mut problems = Vec::new();
    for ((key, node), ops) in groups {
        for &(read, rev) in ops.iter().filter(|o| o.0.call == Call::Read) {
            for (rule, reads) in [("read-your-writes", false), ("monotonic reads", true)] {
                let earlier = (ops.iter())
                    .filter(|o| o.0.complete < read.invoke && (o.0.call == Call::Read) == reads);
                if let Some((prior, seen)) = earlier.max_by_key(|o| o.1).filter(|o| rev < o.1) {
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
    let count = |f: &dyn Fn(&Op) -> bool| history.iter().filter(|o| f(o)).count();
    Summary {
        ops: history.len(),
        reads: count(&|o| o.call == Call::Read),
        writes: count(&|o| matches!(o.call, Call::Write { .. })),
        cas: count(&|o| matches!(o.call, Call::Cas { .. })),
        unknown: count(&|o| o.outcome == Outcome::Unknown),
        refused: count(&|o| o.outcome == Outcome::Refused),
        keys: history.iter().map(|o| &o.key).collect::<HashSet<_>>().len(),
    }
}

/// "No value" (an absent register), or "no such op".
const NONE: u32 = u32::MAX;

/// A register state: `value` is the index of the op that wrote it. If `exact`, it was
/// written at `rev`; otherwise at some unknown revision greater than `rev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reg {
    value: u32,
    rev: u64,
    exact: bool,
}

impl Reg {
    const ABSENT: Reg = Reg { value: NONE, rev: 0, exact: true };

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
                // A CAS learns the current revision; a write only bounds it from below.
                let floor = s.rev.saturating_add(u64::from(!s.exact));
                let (cur, ok) = expect.map_or((floor, true), |e| (e, s.at(e)));
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

/// One op of a key as the search sees it; unknown ones complete at `u64::MAX`. `after` is
/// the op before it in its chain (pruning 1), if any.
#[derive(Debug, Clone, Copy)]
struct Entry {
    invoke: u64,
    complete: u64,
    det: bool,
    eff: Eff,
    after: usize,
}

/// A node's state, and the state before the last op if that op's outcome is unknown.
type At = (Reg, Option<Reg>);

/// A search node: the op placed to reach it, the node before, children left to try.
struct Frame {
    op: usize,
    before: At,
    children: Vec<(usize, Reg)>,
}

/// The search over one key's ops; index `ops.len()` is the list's sentinel.
struct Search<'a> {
    src: Vec<&'a Op>,
    ops: Vec<Entry>,
    next: Vec<usize>,
    prev: Vec<usize>,
    placed: Vec<bool>,
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
fn node_key(fp: u128, (s, ctx): At) -> u128 {
    let pack = |r: Reg| [r.rev, u64::from(r.value) << 2 | u64::from(r.exact) << 1 | 1];
    let words = pack(s).into_iter().chain(ctx.map_or([0, 0], pack));
    let hash = |seed: u64| words.clone().fold(seed, |h, w| mix(h ^ w));
    fp ^ (u128::from(hash(1)) << 64 | u128::from(hash(2)))
}

impl<'a> Search<'a> {
    fn new(mut src: Vec<&'a Op>) -> Self {
        src.retain(|o| o.call != Call::Read || o.outcome != Outcome::Unknown);
        src.sort_by_key(|o| o.invoke);
        let writer: HashMap<&str, usize> = (src.iter().enumerate())
            .filter_map(|(i, o)| match &o.call {
                Call::Write { value } | Call::Cas { value, .. } => Some((value.as_str(), i)),
                Call::Read => None,
            })
            .collect();
        let entry = |(i, o): (usize, &&Op)| {
            let (value, det) = (i as u32, o.outcome != Outcome::Unknown);
            let rev = if let Outcome::Written(r) = o.outcome { Some(r) } else { None };
            let eff = match (&o.call, &o.outcome) {
                (Call::Read, Outcome::Read(None)) => Eff::Read { value: NONE, rev: 0 },
                (Call::Read, Outcome::Read(Some((v, rev)))) => {
                    let value = writer.get(v.as_str()).map_or(NONE - 1, |&w| w as u32);
                    Eff::Read { value, rev: *rev }
                }
                (Call::Cas { expect, .. }, Outcome::Refused) => Eff::Refused { expect: *expect },
                (Call::Read, _) | (_, Outcome::Read(_) | Outcome::Refused) => Eff::Impossible,
                (Call::Write { .. }, _) => Eff::Put { expect: None, value, rev },
                (Call::Cas { expect, .. }, _) => Eff::Put { expect: Some(*expect), value, rev },
            };
            let complete = if det { o.complete.max(o.invoke) } else { u64::MAX };
            Entry { invoke: o.invoke, complete, det, eff, after: usize::MAX }
        };
        let mut ops: Vec<Entry> = src.iter().enumerate().map(entry).collect();
        let read: HashSet<u32> = (ops.iter())
            .filter_map(|e| if let Eff::Read { value, .. } = e.eff { Some(value) } else { None })
            .collect();
        // (chain, order in it, op): acknowledged writes by revision, then unread unknowns.
        let mut chained: Vec<(Option<Option<u64>>, u64, usize)> = (ops.iter().enumerate())
            .filter_map(|(i, e)| match e.eff {
                Eff::Put { rev: Some(r), .. } => Some((None, r, i)),
                Eff::Put { expect, value, rev: None } if !read.contains(&value) => {
                    Some((Some(expect), e.invoke, i))
                }
                _ => None,
            })
            .collect();
        chained.sort_unstable();
        for pair in chained.windows(2).filter(|p| p[0].0 == p[1].0) {
            ops[pair[1].2].after = pair[0].2;
        }
        let n = ops.len();
        let next = (0..=n).map(|i| (i + 1) % (n + 1)).collect();
        let prev = (0..=n).map(|i| (i + n) % (n + 1)).collect();
        Search { src, ops, next, prev, placed: vec![false; n + 1], fp: 0 }
    }

    /// Places op `i`, or undoes that; undos come in reverse order (dancing links).
    fn toggle(&mut self, i: usize, undo: bool) {
        let (p, n) = (self.prev[i], self.next[i]);
        (self.next[p], self.prev[n]) = if undo { (i, i) } else { (n, p) };
        self.placed[i] = !undo;
        self.fp ^= u128::from(mix(2 * i as u64)) << 64 | u128::from(mix(2 * i as u64 + 1));
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

    /// The ops that may come next at a node, with their states, last to try first: one
    /// state-keeping determinate op (pruning 2), or the determinate, then the unknown ones.
    /// `None` if every determinate op is placed: a linearization is found.
    fn children(&self, (s, ctx): At) -> Option<Vec<(usize, Reg)>> {
        let (head, (horizon, first)) = (self.ops.len(), self.horizon());
        let mut out = (first != head).then(Vec::new)?;
        let mut i = self.next[head];
        while i != head && self.ops[i].invoke <= horizon {
            let e = &self.ops[i];
            let chained = self.placed.get(e.after).is_some_and(|&done| !done);
            let needless = ctx.is_some_and(|before| e.eff.apply(before).is_some());
            if let Some(to) = e.eff.apply(s).filter(|_| !chained && !needless) {
                if e.det && to == s {
                    return Some(vec![(i, s)]);
                }
                out.push((i, to));
            }
            i = self.next[i];
        }
        out.reverse();
        out.sort_by_key(|&(i, _)| self.ops[i].det);
        Some(out)
    }

    /// Searches for a linearization; `Err` says why there is none, or that it gave up.
    fn run(&mut self, max_states: usize) -> Result<(), (ViolationKind, String)> {
        let (head, mut at) = (self.ops.len(), (Reg::ABSENT, None));
        let mut seen = HashSet::from([node_key(self.fp, at)]);
        let Some(children) = self.children(at) else { return Ok(()) };
        let mut stack = vec![Frame { op: head, before: at, children }];
        let mut best = (0, head, self.horizon().1);
        while let Some(top) = stack.last_mut() {
            if let Some((i, to)) = top.children.pop() {
                self.toggle(i, false);
                let to = (to, (!self.ops[i].det).then_some(at.0));
                if !seen.insert(node_key(self.fp, to)) {
                    self.toggle(i, true);
                    continue;
                }
                if seen.len() > max_states {
                    let why = format!("search gave up after {max_states} states on {head} ops");
                    return Err((ViolationKind::GaveUp, why));
                }
                let Some(children) = self.children(to) else { return Ok(()) };
                stack.push(Frame { op: i, before: at, children });
                at = to;
                if stack.len() > best.0 + 1 {
                    best = (stack.len() - 1, i, self.horizon().1);
                }
            } else if let Some(done) = stack.pop().filter(|f| f.op != head) {
                self.toggle(done.op, true);
                at = done.before;
            }
        }
        let show = |i: usize| self.src.get(i).map_or("nothing".to_string(), ToString::to_string);
        let (depth, last, next) = (best.0, show(best.1), show(best.2));
        let why = format!(
            "the longest linearizable prefix found places {depth} of {head} ops, ending with \
             {last}; no op can follow it, though {next} must"
        );
        Err((ViolationKind::NotLinearizable, why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses "client[/node] invoke-complete call value result, ..." on key "k": call is
    /// `r`, `w` or `c<expect>`; result is a revision, `?` (unknown) or `!` (refused).
    fn h(s: &str) -> Vec<Op> {
        let num = |x: &str| x.parse::<u64>().expect("a number");
        let parse = |o: &str| {
            let f: Vec<&str> = o.split_whitespace().collect();
            let ((client, node), (t0, t1)) =
                (f[0].split_once('/').unwrap_or((f[0], f[0])), f[1].split_once('-').expect("t"));
            let outcome = match (f[2], f[3], f[4]) {
                ("r", "-", _) => Outcome::Read(None),
                ("r", v, r) => Outcome::Read(Some((v.into(), num(r)))),
                (_, _, "?") => Outcome::Unknown,
                (_, _, "!") => Outcome::Refused,
                (_, _, r) => Outcome::Written(num(r)),
            };
            let (value, client, node) = (f[3].to_string(), num(client) as u32, num(node) as u32);
            let call = match f[2] {
                "r" => Call::Read,
                "w" => Call::Write { value },
                c => Call::Cas { expect: num(&c[1..]), value },
            };
            Op { client, node, key: "k".into(), invoke: num(t0), complete: num(t1), call, outcome }
        };
        s.split(',').map(parse).collect()
    }

    #[test]
    fn hand_made_histories() {
        let valid = [
            "0 0-1 r - -, 1 0-1 w a 1, 1 2-3 w b 5, 2 4-5 r b 5, 0 6-6 r b 5", // sequential
            "0 0-10 w a 1, 1 0-10 w b 2, 2 1-5 r a 1, 2 11-12 r b 2", // concurrent writes: a, b
            "0 0-10 w a 2, 1 0-10 w b 1, 2 1-5 r b 1, 2 11-12 r a 2", // concurrent writes: b, a
            "0 0-1 w a 1, 1 2-3 w b ?, 2 10-11 r b 3, 0 12-13 w c 4, 2 14-15 r c 4", // took effect
            "0 0-1 w a 1, 1 2-3 w b ?, 2 10-11 r a 1, 0 12-13 w c 4, 2 14-15 r c 4", // never did
            "3 0-1 c0 x !, 0 2-3 w a 1, 1 4-5 c1 b 2, 2 6-7 c1 c !, 2 8-9 c2 d ?, 0 10-11 r b 2",
            "0 0-1 w a 1, 0 2-10 w b 2, 1 3-9 r a 1, 2 4-5 r b 2", // read during a write: old
            "0 0-1 w a 1, 0 2-10 w b 2, 1 3-9 r b 2, 2 4-5 r a 1", // read during a write: new
        ];
        let invalid = [
            "0 0-1 w a 1, 0 2-3 w b 2, 1 4-5 r a 1", // stale read
            "0 0-1 w a 1, 1 2-3 r - -",              // lost write: absent
            "0 0-1 w z 1, 0 2-3 w a 2, 1 4-5 w b 3, 2 6-7 r z 1", // lost writes
            "0 0-1 w a 10, 1 2-3 w b 12, 2 4-5 r a 14", // write applied twice
            "0 0-1 w a 1, 0 2-3 w b 2, 1 4-5 c1 c 3", // CAS ok at wrong rev
            "0 0-1 w a 1, 1 2-3 c1 c !",             // CAS refused at expect
            "0 0-1 w a 1, 1 0-1 w b 2, 2 2-3 r b 2, 2 4-5 r a 1, 2 6-7 r b 2", // flip-flop
            "0 0-1 w a 1, 1 2-3 c5 x !, 2 4-5 r x 2", // refused CAS took effect
            "0 0-1 w a 1, 1 2-3 w b ?, 2 5-6 r b 3, 2 7-8 r a 1", // unknown write undone
            "0 0-1 w a 1, 1 2-3 c7 x ?, 2 4-5 r x 3", // unknown CAS, bad expect
            "0 0-1 w a 5, 1 2-3 w b 5",              // one revision, two writes
        ];
        for (case, ok) in valid.map(|c| (c, true)).into_iter().chain(invalid.map(|c| (c, false))) {
            assert_eq!(check_linearizable(&h(case)).is_ok(), ok, "{case}");
        }
    }

    #[test]
    fn session_checks() {
        let ryw = check_sessions(&h("0 0-1 w a 3, 0 2-3 w b 5, 1/0 4-5 r a 3"));
        assert!(ryw.len() == 1 && ryw[0].contains("read-your-writes"), "{ryw:?}");
        let back = check_sessions(&h("1/0 0-1 r b 5, 2/0 2-3 r a 3"));
        assert!(back.len() == 1 && back[0].contains("monotonic reads"), "{back:?}");
        // Node 1 lags behind node 0: fine per node, though not linearizable.
        let lag = h("0 0-1 w a 3, 0 2-3 w b 5, 1/1 4-5 r a 3, 2 0-1 c9 c !");
        assert!(check_sessions(&lag).is_empty() && check_linearizable(&lag).is_err());
        let s = summary(&lag);
        assert_eq!((s.ops, s.reads, s.writes, s.cas, s.unknown, s.refused), (4, 1, 2, 1, 0, 1));
    }

    fn lcg(mut state: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % n
        }
    }

    /// A valid history of `n` ops by `clients` clients: each op takes effect on a real register
    /// at a random instant of its interval; `unknown_pct`% of writes get an unknown outcome
    /// (half of those never take effect).
    fn simulate(seed: u64, n: usize, clients: usize, unknown_pct: u64) -> Vec<Op> {
        let (mut rng, mut clock, mut timed) = (lcg(seed), vec![0; clients], Vec::new());
        for i in 0..n {
            let c = (0..clients).min_by_key(|&c| clock[c]).unwrap_or(0);
            let (invoke, value) = (clock[c] + 1 + rng(5), format!("v{i}"));
            clock[c] = invoke + 1 + rng(100);
            let call = match rng(10) {
                0..5 => Call::Read,
                5..8 => Call::Write { value },
                _ => Call::Cas { expect: 0, value },
            };
            let (client, complete, outcome) = (c as u32, clock[c], Outcome::Unknown);
            let op = Op { client, node: client, key: "k".into(), invoke, complete, call, outcome };
            timed.push((invoke + rng(complete - invoke + 1), op));
        }
        timed.sort_by_key(|t| t.0);
        let (mut reg, mut rev) = (None::<(String, u64)>, 0);
        let mut history: Vec<Op> = timed.into_iter().map(|t| t.1).collect();
        for o in &mut history {
            let (at, unknown) = (reg.as_ref().map(|x| x.1), rng(100) < unknown_pct);
            if let Call::Cas { expect, .. } = &mut o.call {
                *expect = at.unwrap_or(1) - u64::from(rng(4) == 0);
            }
            o.outcome = match &o.call {
                Call::Read => Outcome::Read(reg.clone()),
                Call::Cas { expect, .. } if Some(*expect) != at => Outcome::Refused,
                _ if unknown && rng(2) == 0 => continue, // Unknown, never took effect.
                Call::Write { value } | Call::Cas { value, .. } => {
                    rev += 1 + rng(3);
                    reg = Some((value.clone(), rev));
                    Some(Outcome::Unknown).filter(|_| unknown).unwrap_or(Outcome::Written(rev))
                }
            };
        }
        history
    }

    #[test]
    fn five_thousand_ops_pass_and_one_stale_read_fails() {
        let mut history = simulate(42, 5000, 10, 2);
        let start = std::time::Instant::now();
        assert!(check_linearizable(&history).is_ok(), "{:?}", check_linearizable(&history));
        println!("5,000 valid ops checked in {:?}", start.elapsed());
        let answer = |i: &usize| matches!(history[*i].outcome, Outcome::Read(Some(_)));
        let (early, late) = ((0..5000).find(answer).expect("a read"), (2500..5000).find(answer));
        history[late.expect("a read")].outcome = history[early].outcome.clone();
        let e = check_linearizable(&history).expect_err("a stale read");
        assert_eq!(e.kind, ViolationKind::NotLinearizable, "{e}");
    }

    /// Plain WGL from the definition (`done` is a bit set): no memo, no prunings.
    fn brute(es: &[Entry], done: u32, s: Reg) -> bool {
        let open = |i: &usize| done >> i & 1 == 0;
        let det = (0..es.len()).filter(open).filter(|&i| es[i].det);
        let Some(horizon) = det.map(|i| es[i].complete).min() else { return true };
        let mut next = (0..es.len()).filter(open).filter(|&i| es[i].invoke <= horizon);
        next.any(|i| es[i].eff.apply(s).is_some_and(|n| brute(es, done | 1 << i, n)))
    }

    #[test]
    fn agrees_with_brute_force_on_small_histories() {
        let (mut rng, mut verdicts) = (lcg(7), [0; 2]);
        for seed in 0..4000 {
            let mut history = simulate(seed, 7, 2 + seed as usize % 3, seed % 5 * 20);
            for _ in 0..rng(4) {
                // Swapped answers make stale reads, reordered revisions, refused or impossible ops.
                let (i, j) = (rng(7) as usize, rng(7) as usize);
                let answers = (history[j].outcome.clone(), history[i].outcome.clone());
                (history[i].outcome, history[j].outcome) = answers;
            }
            let (es, fast) =
                (Search::new(history.iter().collect()).ops, check_linearizable(&history));
            assert_eq!(fast.is_ok(), brute(&es, 0, Reg::ABSENT), "{history:#?}");
            verdicts[usize::from(fast.is_ok())] += 1;
        }
        assert!(verdicts[0] > 500 && verdicts[1] > 500, "{verdicts:?}");
    }

    #[test]
    fn gives_up_past_the_state_bound() {
        let e = check_linearizable_bounded(&simulate(1, 200, 10, 0), 10).expect_err("bounded");
        assert!(e.kind == ViolationKind::GaveUp && e.to_string().contains("gave up after"), "{e}");
    }
}
