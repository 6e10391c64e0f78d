//! A damaged or truncated data directory is found at start and named in the error,
//! never a panic, and never a store that quietly serves less than it acknowledged.

use anyhow::Result;
use skiff_store::{Op, Store, StoreConfig, StoreError, Txn};

/// A one-member store with 20 puts, closed again.
async fn written_store(dir: &std::path::Path) -> Result<()> {
    let store = Store::open(StoreConfig::new(dir)).await?;
    for i in 0..20 {
        store
            .txn(Txn::ops(vec![Op::put(format!("/d/{i}"), "v")]))
            .await?;
    }
    store.close().await;
    drop(store);
    Ok(())
}

/// Opens the store's sled database directly, as a damaging hand would.
fn with_raft_log(dir: &std::path::Path, damage: impl FnOnce(&sled::Tree)) -> Result<()> {
    let db = sled::open(dir)?;
    let log = db.open_tree("raft_log")?;
    damage(&log);
    db.flush()?;
    Ok(())
}

async fn open_error(dir: &std::path::Path) -> StoreError {
    match Store::open(StoreConfig::new(dir)).await {
        Ok(store) => {
            store.close().await;
            panic!("a damaged data directory opened")
        }
        Err(error) => error,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_raft_log_is_refused_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    written_store(dir.path()).await?;
    with_raft_log(dir.path(), |log| {
        // The last five entries go, as if the log's tail was lost.
        let keys: Vec<_> = log.iter().keys().map(|k| k.unwrap()).collect();
        for key in &keys[keys.len() - 5..] {
            log.remove(key).unwrap();
        }
    })?;
    let error = open_error(dir.path()).await;
    let message = error.to_string();
    assert!(matches!(error, StoreError::Damaged { .. }), "{message}");
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("the log was truncated"), "{message}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_or_missing_raft_entry_is_refused_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    written_store(dir.path()).await?;
    let mut middle = Vec::new();
    with_raft_log(dir.path(), |log| {
        let keys: Vec<_> = log.iter().keys().map(|k| k.unwrap()).collect();
        middle = keys[keys.len() / 2].to_vec();
        log.insert(&middle, &b"\xff\xff\xff not protobuf"[..])
            .unwrap();
    })?;
    let index = u64::from_be_bytes(middle.as_slice().try_into()?);
    let message = open_error(dir.path()).await.to_string();
    assert!(
        message.contains(&format!("raft log entry {index} does not decode")),
        "{message}"
    );

    with_raft_log(dir.path(), |log| {
        log.remove(&middle).unwrap();
    })?;
    let message = open_error(dir.path()).await.to_string();
    assert!(
        message.contains(&format!(
            "the raft log skips from entry {} to entry {}",
            index - 1,
            index + 1
        )),
        "{message}"
    );
    Ok(())
}

/// sled recovers a truncated file to an older consistent state without complaint;
/// the record of the last flushed state catches it. So does a lost database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_lost_sled_files_are_refused_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    written_store(dir.path()).await?;
    let db = dir.path().join("db");
    let len = std::fs::metadata(&db)?.len();
    let file = std::fs::OpenOptions::new().write(true).open(&db)?;
    file.set_len(len / 3)?;
    drop(file);
    let message = open_error(dir.path()).await.to_string();
    assert!(
        message.contains("truncated or replaced by an older copy"),
        "{message}"
    );

    // sled's own files gone one by one: first it cannot read them, then (all gone) it
    // would start an empty database, which the record tells from a new store.
    std::fs::remove_file(&db)?;
    let error = open_error(dir.path()).await;
    let message = error.to_string();
    assert!(matches!(error, StoreError::Damaged { .. }), "{message}");
    assert!(message.contains("sled cannot read its files"), "{message}");
    for entry in std::fs::read_dir(dir.path())? {
        let path = entry?.path();
        if path.file_name() == Some("skiff-durable".as_ref()) {
            continue;
        }
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    let message = open_error(dir.path()).await.to_string();
    assert!(message.contains("files were lost or replaced"), "{message}");
    Ok(())
}

/// A store closed and opened again, with writes in between, is not mistaken for a
/// damaged one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_store_reopens_many_times() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for _ in 0..3 {
        written_store(dir.path()).await?;
    }
    let store = Store::open(StoreConfig::new(dir.path())).await?;
    assert_eq!(store.range("/d/").await?.kvs.len(), 20);
    store.close().await;
    Ok(())
}
