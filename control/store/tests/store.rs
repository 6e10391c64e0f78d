//! Behaviour of the store as its users see it: through `Store` only.

use anyhow::{Context, Result, bail};
use skiff_store::{
    Compare, CompareTarget, KeyValue, Op, OpResult, Store, StoreConfig, StoreError, Txn,
};
use tempfile::TempDir;

async fn open(dir: &TempDir) -> Result<Store> {
    Store::open(StoreConfig::new(dir.path()))
        .await
        .context("opening the store")
}

async fn put(store: &Store, key: &str, value: &str) -> Result<KeyValue> {
    let response = store.txn(Txn::ops(vec![Op::put(key, value)])).await?;
    match response.results.as_slice() {
        [OpResult::Put { kv, .. }] => Ok(kv.clone()),
        other => bail!("unexpected results {other:?}"),
    }
}

#[tokio::test]
async fn put_get_and_range_by_prefix() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir).await?;
    assert_eq!(store.revision(), 1, "an empty store is at revision 1");
    assert_eq!(store.get("/a/x").await?, None);

    put(&store, "/a/y", "2").await?;
    let x = put(&store, "/a/x", "1").await?;
    put(&store, "/b/z", "3").await?;

    let got = store.get("/a/x").await?.context("/a/x missing")?;
    assert_eq!(got, x);
    assert_eq!(got.value, b"1");
    assert_eq!(
        (got.create_revision, got.mod_revision, got.version),
        (3, 3, 1)
    );

    let range = store.range("/a/").await?;
    let keys: Vec<_> = range.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/a/x", "/a/y"], "sorted by key, only the prefix");
    assert_eq!(range.revision, 4);
    assert_eq!(store.range("").await?.kvs.len(), 3);

    let second = put(&store, "/a/x", "1b").await?;
    assert_eq!(
        (second.create_revision, second.mod_revision, second.version),
        (3, 5, 2)
    );
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn compare_and_put_only_on_matching_mod_revision() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir).await?;
    let first = put(&store, "/k", "v1").await?;

    let stale = store
        .txn(Txn {
            compare: vec![Compare::mod_revision("/k", first.mod_revision - 1)],
            success: vec![Op::put("/k", "lost")],
            failure: vec![],
        })
        .await?;
    assert!(!stale.succeeded);
    assert!(stale.results.is_empty());
    assert_eq!(stale.revision, first.mod_revision, "nothing written");
    assert_eq!(store.get("/k").await?.context("/k")?.value, b"v1");

    let fresh = store
        .txn(Txn {
            compare: vec![Compare::mod_revision("/k", first.mod_revision)],
            success: vec![Op::put("/k", "v2")],
            failure: vec![],
        })
        .await?;
    assert!(fresh.succeeded);
    assert_eq!(fresh.revision, first.mod_revision + 1);
    match &fresh.results[..] {
        [
            OpResult::Put {
                kv,
                prev: Some(prev),
            },
        ] => {
            assert_eq!(kv.value, b"v2");
            assert_eq!(prev, &first);
        }
        other => bail!("unexpected results {other:?}"),
    }

    // The failure branch runs when compares fail, e.g. to read back the current value.
    let other_branch = store
        .txn(Txn {
            compare: vec![Compare {
                key: "/k".into(),
                target: CompareTarget::Value(b"v1".to_vec()),
            }],
            success: vec![Op::put("/k", "nope")],
            failure: vec![Op::put("/conflicts", "1")],
        })
        .await?;
    assert!(!other_branch.succeeded);
    assert_eq!(store.get("/k").await?.context("/k")?.value, b"v2");
    assert!(store.get("/conflicts").await?.is_some());
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn create_only_and_delete() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir).await?;
    let create = |value: &'static str| Txn {
        compare: vec![Compare::absent("/only")],
        success: vec![Op::put("/only", value)],
        failure: vec![],
    };
    assert!(store.txn(create("first")).await?.succeeded);
    let again = store.txn(create("second")).await?;
    assert!(!again.succeeded);
    assert_eq!(store.get("/only").await?.context("/only")?.value, b"first");

    let before = store.revision();
    let deleted = store.txn(Txn::ops(vec![Op::delete("/only")])).await?;
    assert_eq!(deleted.revision, before + 1);
    match &deleted.results[..] {
        [OpResult::Delete { prev: Some(prev) }] => assert_eq!(prev.value, b"first"),
        other => bail!("unexpected results {other:?}"),
    }
    assert_eq!(store.get("/only").await?, None);

    let nothing = store.txn(Txn::ops(vec![Op::delete("/only")])).await?;
    assert_eq!(
        nothing.revision,
        before + 1,
        "deleting nothing writes nothing"
    );
    assert_eq!(store.revision(), before + 1);

    // Recreated after delete: a new life with a new create revision and version 1.
    let reborn = store.txn(create("third")).await?;
    assert!(reborn.succeeded);
    let kv = store.get("/only").await?.context("/only")?;
    assert_eq!((kv.create_revision, kv.version), (reborn.revision, 1));
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn revisions_increase_by_one_per_writing_txn() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir).await?;
    let mut expected = store.revision();
    for i in 0..20 {
        let response = store
            .txn(Txn::ops(vec![
                Op::put(format!("/r/{i}/a"), "x"),
                Op::put(format!("/r/{i}/b"), "y"),
            ]))
            .await?;
        expected += 1;
        assert_eq!(response.revision, expected);
        assert_eq!(store.revision(), expected);
        for result in &response.results {
            let OpResult::Put { kv, .. } = result else {
                bail!("expected puts")
            };
            assert_eq!(
                kv.mod_revision, expected,
                "all ops of a txn share its revision"
            );
        }
    }
    let empty = store.txn(Txn::default()).await?;
    assert!(empty.succeeded);
    assert_eq!(empty.revision, expected);
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn invalid_txns_are_rejected_before_the_log() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(&dir).await?;
    let duplicate = Txn::ops(vec![Op::put("/d", "1"), Op::delete("/d")]);
    assert!(matches!(
        store.txn(duplicate).await,
        Err(StoreError::InvalidTxn(_))
    ));
    assert_eq!(store.revision(), 1);
    store.close().await;
    Ok(())
}

/// The apiserver holds a `Store` in shared state and awaits it from axum handlers.
#[test]
fn handles_and_futures_can_cross_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    fn stream<T: futures::Stream + Send + Unpin>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Store>();
    stream::<skiff_store::Watch>();
    let dir = tempfile::tempdir().unwrap();
    let open = Store::open(StoreConfig::new(dir.path()));
    send(&open);
}

#[tokio::test]
async fn read_futures_are_send() -> Result<()> {
    fn send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir()?;
    let store = open(&dir).await?;
    let (get, range, txn) = (store.get("/a"), store.range("/"), store.txn(Txn::default()));
    send(&get);
    send(&range);
    send(&txn);
    assert_eq!(get.await?, None);
    assert!(range.await?.kvs.is_empty());
    assert!(txn.await?.succeeded);
    store.close().await;
    Ok(())
}
