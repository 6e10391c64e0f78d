//! Restarts and concurrency: what survives a reopen, and revisions under load.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use skiff_store::{Op, Store, StoreConfig, Txn};

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn reopen_keeps_keys_values_revisions_and_history() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (revision, kvs, first_write) = {
        let store = Store::open(StoreConfig::new(dir.path())).await?;
        let first_write = store
            .txn(Txn::ops(vec![Op::put("/p/a", "1")]))
            .await?
            .revision;
        store.txn(Txn::ops(vec![Op::put("/p/b", "2")])).await?;
        store.txn(Txn::ops(vec![Op::put("/p/a", "1b")])).await?;
        store.txn(Txn::ops(vec![Op::delete("/p/b")])).await?;
        store.compact(first_write).await?;
        let kvs = store.range("/p/").await?.kvs;
        let revision = store.revision();
        store.close().await;
        (revision, kvs, first_write)
    };

    let store = Store::open(StoreConfig::new(dir.path())).await?;
    assert_eq!(store.revision(), revision);
    assert_eq!(store.range("/p/").await?.kvs, kvs);
    assert_eq!(store.compacted_revision(), first_write);
    let a = store.get("/p/a").await?.context("/p/a")?;
    assert_eq!((a.value.as_slice(), a.version), (&b"1b"[..], 2));

    // History after the compacted revision replays after the restart.
    let mut watch = store.watch("/p/", first_write)?;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(PATIENCE, watch.next())
            .await?
            .context("watch ended")??;
        replayed.push(event.kv.mod_revision);
    }
    assert_eq!(
        replayed,
        [first_write + 1, first_write + 2, first_write + 3]
    );

    // And new writes continue the same revision sequence.
    let next = store.txn(Txn::ops(vec![Op::put("/p/c", "3")])).await?;
    assert_eq!(next.revision, revision + 1);
    store.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_txns_get_distinct_consecutive_revisions() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path())).await?;
    let start = store.revision();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .txn(Txn::ops(vec![Op::put(format!("/load/{i}"), i.to_string())]))
                    .await
            })
        })
        .collect();
    let mut revisions = HashSet::new();
    for task in tasks {
        let response = task.await??;
        assert!(revisions.insert(response.revision), "revision reused");
    }
    let expected: HashSet<i64> = (start + 1..=start + 200).collect();
    assert_eq!(revisions, expected);
    assert_eq!(store.revision(), start + 200);
    assert_eq!(store.range("/load/").await?.kvs.len(), 200);
    store.close().await;
    Ok(())
}
