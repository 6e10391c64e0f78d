//! Crash recovery through the Raft log: the applied state can be rebuilt from it.

use crate::disk::Trees;
use crate::{Op, Store, StoreConfig, Txn};

/// As if every apply transaction had been lost while the flushed log survived: the
/// next open replays the log and ends with the same keys, revisions and history.
#[tokio::test]
async fn lost_applied_state_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).await.unwrap();
    for i in 0..30 {
        let ops = vec![Op::put(format!("/r/{}", i % 7), i.to_string())];
        store.txn(Txn::ops(ops)).await.unwrap();
    }
    store.txn(Txn::ops(vec![Op::delete("/r/3")])).await.unwrap();
    let before = store.range("/").await.unwrap();
    store.close().await;
    drop(store);

    {
        let trees = Trees::open(dir.path()).unwrap();
        for tree in [&trees.kv, &trees.events, &trees.meta, &trees.requests] {
            tree.clear().unwrap();
        }
        trees.db.flush().unwrap();
    }

    let store = Store::open(StoreConfig::new(dir.path())).await.unwrap();
    assert_eq!(store.range("/").await.unwrap(), before);
    assert_eq!(store.revision(), before.revision);
    let history = crate::watch::read_after(&store.inner_shared(), "/", 1).unwrap();
    assert_eq!(history.1, Some(before.revision));
    assert_eq!(history.0.len(), 31);
    store.close().await;
}

/// Entries already applied are skipped when raft hands them over again.
#[tokio::test]
async fn reopening_twice_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let store = Store::open(StoreConfig::new(dir.path())).await.unwrap();
        let kv = store.get("/count").await.unwrap();
        assert_eq!(kv.map_or(0, |kv| kv.version), round);
        store
            .txn(Txn::ops(vec![Op::put("/count", "x")]))
            .await
            .unwrap();
        store.close().await;
    }
}
