//! The meaning of a transaction, apart from where keys are stored: compare, pick a
//! branch, run its ops at the next revision, and describe the changes as events.
//! The apply step runs this inside a sled transaction; tests run it over a map.

use std::collections::HashSet;

use crate::codec::KvRecord;
use crate::{
    CompareTarget, EventKind, KeyValue, MAX_KEY_BYTES, MAX_TXN_BYTES, MAX_VALUE_BYTES, Op,
    OpResult, Revision, StoreError, Txn, TxnResponse, WatchEvent,
};

/// Read and write access to the latest state of each key.
pub(crate) trait KvAccess {
    type Error;
    fn get(&self, key: &str) -> Result<Option<KvRecord>, Self::Error>;
    fn put(&self, key: &str, record: &KvRecord) -> Result<(), Self::Error>;
    fn remove(&self, key: &str) -> Result<(), Self::Error>;
}

/// A transaction's response and the events it produced (empty if it changed nothing).
pub(crate) struct Execution {
    pub response: TxnResponse,
    pub events: Vec<WatchEvent>,
}

/// Rejects transactions etcd would reject, before they reach the Raft log: empty keys,
/// one key written twice in a branch (which would make its events ambiguous), and
/// keys, values or transactions above the size limits.
pub(crate) fn validate(txn: &Txn) -> Result<(), StoreError> {
    if txn.compare.iter().any(|c| c.key.is_empty()) {
        return Err(StoreError::InvalidTxn("a compare has an empty key".into()));
    }
    check_sizes(txn)?;
    for (branch, ops) in [("success", &txn.success), ("failure", &txn.failure)] {
        let mut seen = HashSet::new();
        for op in ops {
            if op.key().is_empty() {
                return Err(StoreError::InvalidTxn(format!(
                    "an op in the {branch} branch has an empty key"
                )));
            }
            if !seen.insert(op.key()) {
                return Err(StoreError::InvalidTxn(format!(
                    "key {:?} is written twice in the {branch} branch",
                    op.key()
                )));
            }
        }
    }
    Ok(())
}

fn too_large(what: String, size: usize, limit: usize) -> StoreError {
    StoreError::TooLarge { what, size, limit }
}

/// Every key at most [`MAX_KEY_BYTES`], every value at most [`MAX_VALUE_BYTES`], and the
/// keys and values of the whole transaction together at most [`MAX_TXN_BYTES`].
fn check_sizes(txn: &Txn) -> Result<(), StoreError> {
    let mut total = 0usize;
    let key = |key: &str| {
        if key.len() > MAX_KEY_BYTES {
            let shown: String = key.chars().take(64).collect();
            return Err(too_large(
                format!("key {shown:?}…"),
                key.len(),
                MAX_KEY_BYTES,
            ));
        }
        Ok(key.len())
    };
    let value = |key: &str, value: &[u8]| {
        if value.len() > MAX_VALUE_BYTES {
            return Err(too_large(
                format!("the value of key {key:?}"),
                value.len(),
                MAX_VALUE_BYTES,
            ));
        }
        Ok(value.len())
    };
    for compare in &txn.compare {
        total += key(&compare.key)?;
        if let CompareTarget::Value(expected) = &compare.target {
            total += value(&compare.key, expected)?;
        }
    }
    for op in txn.success.iter().chain(&txn.failure) {
        total += key(op.key())?;
        if let Op::Put { key, value: bytes } = op {
            total += value(key, bytes)?;
        }
    }
    if total > MAX_TXN_BYTES {
        return Err(too_large(
            "the transaction's keys and values".into(),
            total,
            MAX_TXN_BYTES,
        ));
    }
    Ok(())
}

/// Runs `txn` against `kv`, whose latest revision is `current`.
pub(crate) fn execute<A: KvAccess>(
    txn: &Txn,
    current: Revision,
    kv: &A,
) -> Result<Execution, A::Error> {
    let mut succeeded = true;
    for compare in &txn.compare {
        let record = kv.get(&compare.key)?;
        let holds = match (&compare.target, &record) {
            (CompareTarget::ModRevision(want), r) => {
                r.as_ref().map_or(0, |r| r.mod_revision) == *want
            }
            (CompareTarget::CreateRevision(want), r) => {
                r.as_ref().map_or(0, |r| r.create_revision) == *want
            }
            (CompareTarget::Value(want), Some(r)) => r.value == *want,
            (CompareTarget::Value(_), None) => false,
        };
        if !holds {
            succeeded = false;
            break;
        }
    }

    let next = current + 1;
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    let mut results = Vec::with_capacity(ops.len());
    let mut events = Vec::new();
    for op in ops {
        match op {
            Op::Put { key, value } => {
                let prev = kv.get(key)?;
                let record = KvRecord {
                    create_revision: prev.as_ref().map_or(next, |p| p.create_revision),
                    mod_revision: next,
                    version: prev.as_ref().map_or(0, |p| p.version) + 1,
                    value: value.clone(),
                };
                kv.put(key, &record)?;
                let kv = record.into_key_value(key.clone());
                let prev = prev.map(|p| p.into_key_value(key.clone()));
                events.push(WatchEvent {
                    kind: EventKind::Put,
                    kv: kv.clone(),
                    prev: prev.clone(),
                });
                results.push(OpResult::Put { kv, prev });
            }
            Op::Delete { key } => {
                let prev = kv.get(key)?.map(|p| p.into_key_value(key.clone()));
                if prev.is_some() {
                    kv.remove(key)?;
                    events.push(WatchEvent {
                        kind: EventKind::Delete,
                        kv: KeyValue {
                            key: key.clone(),
                            value: Vec::new(),
                            create_revision: 0,
                            mod_revision: next,
                            version: 0,
                        },
                        prev: prev.clone(),
                    });
                }
                results.push(OpResult::Delete { prev });
            }
        }
    }

    let revision = if events.is_empty() { current } else { next };
    Ok(Execution {
        response: TxnResponse {
            succeeded,
            revision,
            results,
        },
        events,
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::convert::Infallible;

    use super::*;
    use crate::Compare;

    #[derive(Default)]
    struct MapKv(RefCell<BTreeMap<String, KvRecord>>);

    impl KvAccess for MapKv {
        type Error = Infallible;
        fn get(&self, key: &str) -> Result<Option<KvRecord>, Infallible> {
            Ok(self.0.borrow().get(key).cloned())
        }
        fn put(&self, key: &str, record: &KvRecord) -> Result<(), Infallible> {
            self.0.borrow_mut().insert(key.into(), record.clone());
            Ok(())
        }
        fn remove(&self, key: &str) -> Result<(), Infallible> {
            self.0.borrow_mut().remove(key);
            Ok(())
        }
    }

    fn run(kv: &MapKv, txn: Txn, current: Revision) -> Execution {
        execute(&txn, current, kv).unwrap()
    }

    #[test]
    fn put_tracks_create_mod_and_version() {
        let kv = MapKv::default();
        let first = run(&kv, Txn::ops(vec![Op::put("/a", "1")]), 1);
        assert_eq!(first.response.revision, 2);
        let second = run(&kv, Txn::ops(vec![Op::put("/a", "2")]), 2);
        let OpResult::Put { kv: now, prev } = &second.response.results[0] else {
            panic!("expected a put result");
        };
        assert_eq!(
            (now.create_revision, now.mod_revision, now.version),
            (2, 3, 2)
        );
        assert_eq!(prev.as_ref().unwrap().value, b"1");
        assert_eq!(second.events[0].prev.as_ref().unwrap().mod_revision, 2);
    }

    #[test]
    fn failed_compare_runs_failure_branch_and_writes_nothing() {
        let kv = MapKv::default();
        run(&kv, Txn::ops(vec![Op::put("/a", "1")]), 1);
        let txn = Txn {
            compare: vec![Compare::mod_revision("/a", 7)],
            success: vec![Op::put("/a", "2")],
            failure: Vec::new(),
        };
        let done = run(&kv, txn, 2);
        assert!(!done.response.succeeded);
        assert_eq!(done.response.revision, 2);
        assert!(done.events.is_empty());
        assert_eq!(kv.0.borrow()["/a"].value, b"1");
    }

    #[test]
    fn deleting_an_absent_key_changes_nothing() {
        let kv = MapKv::default();
        let done = run(&kv, Txn::ops(vec![Op::delete("/nope")]), 5);
        assert_eq!(done.response.revision, 5);
        assert_eq!(done.response.results, vec![OpResult::Delete { prev: None }]);
        assert!(done.events.is_empty());
    }

    #[test]
    fn value_compare_never_matches_an_absent_key() {
        let kv = MapKv::default();
        let txn = Txn {
            compare: vec![Compare {
                key: "/a".into(),
                target: CompareTarget::Value(Vec::new()),
            }],
            ..Txn::default()
        };
        assert!(!run(&kv, txn, 1).response.succeeded);
    }

    #[test]
    fn validate_rejects_empty_and_duplicate_keys() {
        assert!(validate(&Txn::ops(vec![Op::put("", "x")])).is_err());
        assert!(validate(&Txn::ops(vec![Op::put("/a", "x"), Op::delete("/a")])).is_err());
        assert!(validate(&Txn::ops(vec![Op::put("/a", "x"), Op::delete("/b")])).is_ok());
    }

    #[test]
    fn validate_rejects_oversized_keys_values_and_transactions() {
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        let err = validate(&Txn::ops(vec![Op::delete(long_key)])).unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { size, limit, .. }
                if size == MAX_KEY_BYTES + 1 && limit == MAX_KEY_BYTES),
            "{err}"
        );
        assert!(err.to_string().starts_with("key \"kkk"), "{err}");
        let big = vec![b'v'; MAX_VALUE_BYTES + 1];
        let err = validate(&Txn::ops(vec![Op::put("/a", big)])).unwrap_err();
        assert!(err.to_string().contains("the value of key \"/a\""), "{err}");
        // At the limit, a value compared and written passes; three such puts are too
        // much together.
        let max = vec![b'v'; MAX_VALUE_BYTES];
        let replace = Txn {
            compare: vec![crate::Compare {
                key: "/a".into(),
                target: CompareTarget::Value(max.clone()),
            }],
            success: vec![Op::put("/a", max.clone())],
            failure: vec![],
        };
        assert!(validate(&replace).is_ok());
        let err = validate(&Txn::ops(vec![
            Op::put("/a", max.clone()),
            Op::put("/b", max.clone()),
            Op::put("/c", max.clone()),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("transaction"), "{err}");
    }
}
