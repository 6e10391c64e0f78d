//! Watch: history then live events, no gaps or duplicates, prefixes, compaction.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use skiff_store::{EventKind, Op, Store, StoreConfig, StoreError, Txn, Watch, WatchEvent};

const PATIENCE: Duration = Duration::from_secs(30);

async fn next_event(watch: &mut Watch) -> Result<WatchEvent> {
    let item = tokio::time::timeout(PATIENCE, watch.next())
        .await
        .context("no watch event arrived")?
        .context("watch ended")?;
    Ok(item?)
}

async fn put(store: &Store, key: &str, value: &str) -> Result<i64> {
    Ok(store
        .txn(Txn::ops(vec![Op::put(key, value)]))
        .await?
        .revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_history_then_live_without_gaps_or_duplicates() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path())).await?;
    let mut revisions = Vec::new();
    for i in 0..10 {
        revisions.push(put(&store, &format!("/w/{i}"), "old").await?);
        put(&store, &format!("/other/{i}"), "ignored").await?;
    }
    let from = revisions[3];
    let mut watch = store.watch("/w/", from)?;

    // Writers race the watch while it is still replaying.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut live = Vec::new();
            for i in 0..50 {
                live.push(put(&store, &format!("/w/live/{i}"), "new").await?);
                put(&store, &format!("/other/live/{i}"), "ignored").await?;
            }
            anyhow::Ok(live)
        })
    };
    let live = writer.await??;

    let expected: Vec<i64> = revisions[4..].iter().chain(&live).copied().collect();
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let event = next_event(&mut watch).await?;
        assert!(
            event.kv.key.starts_with("/w/"),
            "prefix filter: {}",
            event.kv.key
        );
        assert_eq!(event.kind, EventKind::Put);
        seen.push(event.kv.mod_revision);
    }
    assert_eq!(seen, expected, "every revision once, in order");

    // Deletes arrive with the deleted kv as prev and the delete's revision.
    let deleted = store
        .txn(Txn::ops(vec![Op::delete("/w/0")]))
        .await?
        .revision;
    let event = next_event(&mut watch).await?;
    assert_eq!(event.kind, EventKind::Delete);
    assert_eq!(
        (event.kv.key.as_str(), event.kv.mod_revision),
        ("/w/0", deleted)
    );
    assert!(event.kv.value.is_empty());
    assert_eq!(event.prev.context("delete without prev")?.value, b"old");
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn a_txn_touching_several_keys_is_one_revision_of_events() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path())).await?;
    let mut watch = store.watch("/m/", store.revision())?;
    let response = store
        .txn(Txn::ops(vec![
            Op::put("/m/a", "1"),
            Op::put("/m/b", "2"),
            Op::put("/x", "3"),
        ]))
        .await?;
    let first = next_event(&mut watch).await?;
    let second = next_event(&mut watch).await?;
    assert_eq!(
        [first.kv.key.as_str(), second.kv.key.as_str()],
        ["/m/a", "/m/b"]
    );
    assert_eq!(first.kv.mod_revision, response.revision);
    assert_eq!(second.kv.mod_revision, response.revision);
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn watching_from_a_compacted_revision_fails() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path())).await?;
    let mut revisions = Vec::new();
    for i in 0..6 {
        revisions.push(put(&store, &format!("/c/{i}"), "v").await?);
    }
    store.compact(revisions[3]).await?;

    match store.watch("/c/", revisions[1]) {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!((requested, compacted), (revisions[1], revisions[3]));
        }
        Err(other) => bail!("expected Compacted, got {other}"),
        Ok(_) => bail!("watch from a compacted revision was accepted"),
    }
    // From the compacted revision itself, the kept history replays.
    let mut watch = store.watch("/c/", revisions[3])?;
    assert_eq!(next_event(&mut watch).await?.kv.mod_revision, revisions[4]);
    assert_eq!(next_event(&mut watch).await?.kv.mod_revision, revisions[5]);

    // Compacting the past again is harmless; the future is refused.
    store.compact(revisions[2]).await?;
    assert!(matches!(
        store.compact(store.revision() + 1).await,
        Err(StoreError::FutureRevision { .. })
    ));
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn compaction_overtaking_a_stalled_watch_ends_it_with_compacted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = StoreConfig {
        watch_buffer: 1,
        ..StoreConfig::new(dir.path())
    };
    let store = Store::open(config).await?;
    let mut watch = store.watch("/s/", store.revision())?;
    let mut last = 0;
    for i in 0..20 {
        last = put(&store, &format!("/s/{i}"), "v").await?;
    }
    store.compact(last).await?;
    // Whatever was already buffered may arrive first; then the error, never a gap.
    let mut previous = 1;
    loop {
        let item = tokio::time::timeout(PATIENCE, watch.next())
            .await
            .context("watch went quiet")?
            .context("watch ended without an error")?;
        match item {
            Ok(event) => {
                assert_eq!(event.kv.mod_revision, previous + 1, "gap in the stream");
                previous = event.kv.mod_revision;
            }
            Err(StoreError::Compacted { compacted, .. }) => {
                assert_eq!(compacted, last);
                break;
            }
            Err(other) => bail!("unexpected error {other}"),
        }
    }
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn close_ends_watches_with_stopped() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path())).await?;
    let mut watch = store.watch("/", store.revision())?;
    store.close().await;
    let item = tokio::time::timeout(PATIENCE, watch.next()).await?;
    assert!(matches!(item, Some(Err(StoreError::Stopped))), "{item:?}");
    assert!(matches!(
        store.txn(Txn::ops(vec![Op::put("/late", "x")])).await,
        Err(StoreError::Stopped)
    ));
    Ok(())
}
