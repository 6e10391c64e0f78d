//! Ranges at older revisions, and pages of a range (limit + start key).

use anyhow::Result;
use skiff_store::{Op, RangeOptions, RangeResponse, Store, StoreConfig, StoreError, Txn};

fn at(revision: i64) -> RangeOptions {
    RangeOptions {
        revision: Some(revision),
        ..RangeOptions::default()
    }
}

/// Every revision's range, remembered as it was written, reads back the same later,
/// through puts, deletes and multi-key transactions; below the compacted revision the
/// answer is `Compacted`, above the current one `FutureRevision`.
#[tokio::test]
async fn a_range_at_an_older_revision_sees_that_revision() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path())).await?;
    let mut seen: Vec<RangeResponse> = vec![store.range("/h/").await?];
    for i in 0..40u32 {
        let key = format!("/h/{}", i % 6);
        let ops = match i % 5 {
            3 => vec![Op::delete(key)],
            4 => vec![
                Op::put(key, i.to_string()),
                Op::put(format!("/h/t{}", i % 3), "t"),
            ],
            _ => vec![Op::put(key, i.to_string())],
        };
        store.txn(Txn::ops(ops)).await?;
        // A key outside the prefix moves the revision too.
        if i % 7 == 0 {
            store.txn(Txn::ops(vec![Op::put("/other", "x")])).await?;
        }
        seen.push(store.range("/h/").await?);
    }
    for then in &seen {
        let read = store.range_page("/h/", &at(then.revision)).await?;
        assert_eq!(read.kvs, then.kvs, "at revision {}", then.revision);
        assert!(!read.more);
    }

    let middle = seen[20].revision;
    store.compact(middle).await?;
    let read = store.range_page("/h/", &at(middle)).await?;
    assert_eq!(
        read.kvs, seen[20].kvs,
        "the compacted revision itself stays readable"
    );
    match store.range_page("/h/", &at(middle - 1)).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!((requested, compacted), (middle - 1, middle));
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    let future = store.revision() + 1;
    assert!(matches!(
        store.range_page("/h/", &at(future)).await,
        Err(StoreError::FutureRevision { .. })
    ));
    store.close().await;
    Ok(())
}

/// Paging with a limit and the next start key returns every key once, as of the first
/// page's revision even when writes land between pages.
#[tokio::test]
async fn pages_with_limit_and_start_cover_the_range_at_one_revision() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig::new(dir.path())).await?;
    for i in 0..11 {
        let ops = vec![Op::put(format!("/p/{i:02}"), "v")];
        store.txn(Txn::ops(ops)).await?;
    }
    let whole = store.range("/p/").await?;

    let mut options = RangeOptions {
        limit: Some(4),
        ..RangeOptions::default()
    };
    let mut keys = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.range_page("/p/", &options).await?;
        pages += 1;
        assert!(page.kvs.len() <= 4);
        keys.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        if pages == 1 {
            // Changes after the first page must not show in later ones.
            store.txn(Txn::ops(vec![Op::delete("/p/09")])).await?;
            store.txn(Txn::ops(vec![Op::put("/p/99", "new")])).await?;
            options.revision = Some(page.revision);
        }
        if !page.more {
            break;
        }
        let last = page.kvs.last().expect("a page with more has keys");
        options.start = Some(format!("{}\0", last.key));
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = whole.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, expected);

    // A limit that takes everything says there is no more.
    let all = store
        .range_page(
            "/p/",
            &RangeOptions {
                limit: Some(100),
                ..RangeOptions::default()
            },
        )
        .await?;
    assert!(!all.more);
    assert_eq!(all.kvs.len(), 11);
    store.close().await;
    Ok(())
}
