//! A linearizability checker in the style of Wing & Gong with Lowe's memoization (as
//! Porcupine does): per key, search for an order of the operations that respects real
//! time and replays against a register. Operations with unknown outcome may be placed
//! anywhere after their call, or left out.

use std::collections::{BTreeMap, HashSet};

use super::history::{Kind, Operation, Value};

/// The result of checking one history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Keys whose operations have no linearization.
    pub violations: Vec<String>,
    /// Acknowledged writes whose effect the final read of their key does not show.
    pub lost_writes: usize,
}

/// Checks `operations`; `finals` holds the value each key was read to have after
/// recovery (those reads are part of `operations` as well).
pub fn check(operations: &[Operation], finals: &BTreeMap<String, Option<Value>>) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for operation in operations {
        by_key.entry(&operation.key).or_default().push(operation);
    }
    let mut verdict = Verdict::default();
    for (key, ops) in &by_key {
        if !linearizable(ops) {
            verdict.violations.push((*key).to_owned());
        }
        if let Some(last) = finals.get(*key) {
            verdict.lost_writes += lost(ops, *last);
        }
    }
    verdict
}

/// The register after `op`, or `None` if `op` cannot have seen `state`.
fn step(state: Option<Value>, op: &Operation) -> Option<Option<Value>> {
    match &op.kind {
        Kind::Write(value) => Some(*value),
        Kind::Read(seen) => (*seen == state).then_some(state),
        Kind::Cas {
            expect,
            new,
            succeeded,
        } => {
            let holds = state == Some(*expect);
            match succeeded {
                Some(s) if *s != holds => None,
                _ if holds => Some(Some(*new)),
                _ => Some(state),
            }
        }
    }
}

fn linearizable(ops: &[&Operation]) -> bool {
    assert!(
        ops.len() <= 128,
        "keep per-key histories within 128 operations"
    );
    let mut seen = HashSet::new();
    search(ops, 0, None, &mut seen)
}

fn search(
    ops: &[&Operation],
    done: u128,
    state: Option<Value>,
    seen: &mut HashSet<(u128, Option<Value>)>,
) -> bool {
    let pending = |i: &usize| done & (1u128 << i) == 0;
    if (0..ops.len())
        .filter(pending)
        .all(|i| !ops[i].acknowledged())
    {
        return true;
    }
    if !seen.insert((done, state)) {
        return false;
    }
    // Whatever goes next must have been invoked before every pending op returned.
    let horizon = (0..ops.len())
        .filter(pending)
        .map(|i| ops[i].ret)
        .min()
        .unwrap_or(u64::MAX);
    (0..ops.len())
        .filter(pending)
        .filter(|i| ops[*i].call < horizon)
        .any(|i| match step(state, ops[i]) {
            Some(next) => search(ops, done | (1u128 << i), next, seen),
            None => false,
        })
}

/// Acknowledged writes of one key that are missing from its final value `last`: every
/// write that could have produced `last` returned before they were invoked.
fn lost(ops: &[&Operation], last: Option<Value>) -> usize {
    let writers: Vec<&Operation> = ops
        .iter()
        .copied()
        .filter(|op| match &op.kind {
            Kind::Write(value) => *value == last,
            Kind::Cas { new, succeeded, .. } => Some(*new) == last && *succeeded != Some(false),
            Kind::Read(_) => false,
        })
        .collect();
    ops.iter()
        .filter(|w| w.acknowledged())
        .filter(|w| match &w.kind {
            Kind::Write(_) => true,
            Kind::Cas { succeeded, .. } => *succeeded == Some(true),
            Kind::Read(_) => false,
        })
        .filter(|w| {
            // The initial absence only counts as a writer of `None` for no one.
            writers.iter().all(|f| f.ret < w.call) && !writers.iter().any(|f| std::ptr::eq(*f, **w))
        })
        .count()
}

#[cfg(test)]
mod checker_tests {
    use super::*;

    fn op(kind: Kind, call: u64, ret: u64) -> Operation {
        Operation {
            key: "k".into(),
            kind,
            call,
            ret,
        }
    }

    #[test]
    fn accepts_concurrent_and_rejects_stale_reads() {
        let ok = vec![
            op(Kind::Write(Some(1)), 0, 3),
            op(Kind::Read(Some(1)), 1, 2),
            op(Kind::Read(None), 1, 4),
        ];
        assert!(check(&ok, &BTreeMap::new()).violations.is_empty());
        let stale = vec![op(Kind::Write(Some(1)), 0, 1), op(Kind::Read(None), 2, 3)];
        assert_eq!(check(&stale, &BTreeMap::new()).violations, vec!["k"]);
    }

    #[test]
    fn unknown_writes_may_apply_late_or_never() {
        let late = vec![
            op(Kind::Write(Some(1)), 0, u64::MAX),
            op(Kind::Read(None), 1, 2),
            op(Kind::Read(Some(1)), 3, 4),
        ];
        assert!(check(&late, &BTreeMap::new()).violations.is_empty());
        let never = vec![
            op(Kind::Write(Some(1)), 0, u64::MAX),
            op(Kind::Read(None), 1, 2),
        ];
        assert!(check(&never, &BTreeMap::new()).violations.is_empty());
        let flicker = vec![
            op(Kind::Write(Some(1)), 0, u64::MAX),
            op(Kind::Read(Some(1)), 1, 2),
            op(Kind::Read(None), 3, 4),
        ];
        assert!(!check(&flicker, &BTreeMap::new()).violations.is_empty());
    }

    #[test]
    fn cas_results_must_match_the_register() {
        let history = vec![
            op(Kind::Write(Some(1)), 0, 1),
            op(
                Kind::Cas {
                    expect: 1,
                    new: 2,
                    succeeded: Some(true),
                },
                2,
                3,
            ),
            op(
                Kind::Cas {
                    expect: 1,
                    new: 3,
                    succeeded: Some(true),
                },
                4,
                5,
            ),
        ];
        assert!(!check(&history, &BTreeMap::new()).violations.is_empty());
    }

    #[test]
    fn counts_acknowledged_writes_missing_at_the_end() {
        let history = vec![
            op(Kind::Write(Some(1)), 0, 1),
            op(Kind::Write(Some(2)), 2, 3),
        ];
        let finals = BTreeMap::from([("k".to_owned(), Some(1))]);
        assert_eq!(check(&history, &finals).lost_writes, 1);
        let finals = BTreeMap::from([("k".to_owned(), Some(2))]);
        assert_eq!(check(&history, &finals).lost_writes, 0);
        let finals = BTreeMap::from([("k".to_owned(), None)]);
        assert_eq!(check(&history, &finals).lost_writes, 2);
    }
}
