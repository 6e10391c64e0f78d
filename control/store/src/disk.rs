//! The sled database and the names of its trees and keys (the layout is described in
//! the crate documentation; change both together).

use std::path::Path;

use crate::StoreError;

pub(crate) const RAFT_LOG: &str = "raft_log";
pub(crate) const RAFT_STATE: &str = "raft_state";
pub(crate) const KV: &str = "kv";
pub(crate) const EVENTS: &str = "events";
pub(crate) const META: &str = "meta";

pub(crate) const HARD_STATE: &[u8] = b"hard_state";
pub(crate) const CONF_STATE: &[u8] = b"conf_state";

pub(crate) const APPLIED_INDEX: &[u8] = b"applied_index";
pub(crate) const REVISION: &[u8] = b"revision";
pub(crate) const COMPACTED: &[u8] = b"compacted";

/// The open database and one handle per tree; cloning is cheap (sled handles are `Arc`s).
#[derive(Clone)]
pub(crate) struct Trees {
    pub db: sled::Db,
    pub raft_log: sled::Tree,
    pub raft_state: sled::Tree,
    pub kv: sled::Tree,
    pub events: sled::Tree,
    pub meta: sled::Tree,
}

impl Trees {
    pub fn open(dir: &Path) -> Result<Trees, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(StoreError::sled("opening the data directory"))?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(StoreError::sled("opening a sled tree"))
        };
        Ok(Trees {
            raft_log: tree(RAFT_LOG)?,
            raft_state: tree(RAFT_STATE)?,
            kv: tree(KV)?,
            events: tree(EVENTS)?,
            meta: tree(META)?,
            db,
        })
    }
}

/// Reads a big-endian integer stored under `key`, or `default` if it was never written.
pub(crate) fn read_u64(tree: &sled::Tree, key: &[u8], default: u64) -> Result<u64, StoreError> {
    match tree
        .get(key)
        .map_err(StoreError::sled("reading store metadata"))?
    {
        None => Ok(default),
        Some(bytes) => {
            let raw: [u8; 8] = bytes.as_ref().try_into().map_err(|_| {
                StoreError::codec("store metadata", format!("{} bytes, want 8", bytes.len()))
            })?;
            Ok(u64::from_be_bytes(raw))
        }
    }
}

/// Stops the process: the disk refused a write, so any answer from here on could be a lie.
pub(crate) fn fatal(what: &str, error: &dyn std::error::Error) -> ! {
    tracing::error!(error = %error, "{what} failed; stopping the process");
    eprintln!("skiff-store: {what} failed: {error}; stopping the process");
    std::process::abort()
}
