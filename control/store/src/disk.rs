//! The sled database and the names of its trees and keys (the layout is described in
//! the crate documentation; change both together).

use std::path::Path;

use raft::prelude::{ConfState, HardState};

use crate::raft_log::{encode, index_key, marker};
use crate::{Member, StoreConfig, StoreError};

pub(crate) const RAFT_LOG: &str = "raft_log";
pub(crate) const RAFT_STATE: &str = "raft_state";
pub(crate) const KV: &str = "kv";
pub(crate) const EVENTS: &str = "events";
pub(crate) const META: &str = "meta";
pub(crate) const REQUESTS: &str = "requests";

/// A request whose id was applied at most this many entries earlier is a duplicate
/// (a proposal the network delivered twice) and is not applied again. A constant,
/// not a setting: every member must make the same decision for the same log.
pub(crate) const DEDUP_WINDOW: u64 = 10_000;

pub(crate) const HARD_STATE: &[u8] = b"hard_state";
pub(crate) const CONF_STATE: &[u8] = b"conf_state";

pub(crate) const APPLIED_INDEX: &[u8] = b"applied_index";
pub(crate) const REVISION: &[u8] = b"revision";
pub(crate) const COMPACTED: &[u8] = b"compacted";
/// The context of the marker a new group's log starts with (at index 1), which tells
/// it apart from entry 1 of a log written before markers existed.
pub(crate) const BOOTSTRAP_MARKER: &[u8] = b"bootstrap";
/// `member/` + id (`u64`): the member's record as JSON (see [`Member`]).
pub(crate) const MEMBER_PREFIX: &[u8] = b"member/";

/// `removed/` + id (`u64`), empty value: a member removed from the group. Its id is
/// never given to another member, and a message from it is answered with
/// [`REMOVED_NOTICE`].
pub(crate) const REMOVED_PREFIX: &[u8] = b"removed/";

/// The context of the message that tells a member it was removed from the group.
pub(crate) const REMOVED_NOTICE: &[u8] = b"skiff/removed";

pub(crate) fn removed_key(id: u64) -> Vec<u8> {
    [REMOVED_PREFIX, &id.to_be_bytes()].concat()
}

/// The ids recorded as removed from the group in `meta`.
pub(crate) fn load_removed(meta: &sled::Tree) -> Result<Vec<u64>, StoreError> {
    meta.scan_prefix(REMOVED_PREFIX)
        .keys()
        .map(|key| {
            let key = key.map_err(StoreError::sled("reading the removed members"))?;
            <[u8; 8]>::try_from(&key[REMOVED_PREFIX.len()..])
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::codec("removed member key", "not a u64 id"))
        })
        .collect()
}

pub(crate) fn member_key(id: u64) -> Vec<u8> {
    [MEMBER_PREFIX, &id.to_be_bytes()].concat()
}

pub(crate) fn encode_member(member: &Member) -> Vec<u8> {
    serde_json::to_vec(member).expect("a member record always encodes")
}

/// The members recorded in `meta`, by id.
pub(crate) fn load_members(meta: &sled::Tree) -> Result<Vec<Member>, StoreError> {
    meta.scan_prefix(MEMBER_PREFIX)
        .values()
        .map(|value| {
            let value = value.map_err(StoreError::sled("reading the member list"))?;
            serde_json::from_slice(&value)
                .map_err(|e| StoreError::codec("member record", e.to_string()))
        })
        .collect()
}

/// Writes a new group to a data directory that has none: its conf state, and the
/// Raft log as if a snapshot of the empty store at index 1, term 1 were installed
/// (marker at 1, applied index 1). A member added later has an empty log, so the
/// leader can never send it entry 1 and sends a snapshot, which carries the group's
/// conf state and member list; replaying the log alone could not give it those.
/// A joining member (`members` empty) and an existing directory are left alone.
pub(crate) fn bootstrap(trees: &Trees, config: &StoreConfig) -> Result<(), StoreError> {
    let existing = trees
        .raft_state
        .get(CONF_STATE)
        .map_err(StoreError::sled("reading raft state"))?;
    if existing.is_some() || config.members.is_empty() {
        return Ok(());
    }
    let conf_state = ConfState::from((config.members.clone(), vec![]));
    let hard_state = HardState {
        term: 1,
        commit: 1,
        ..HardState::default()
    };
    let mut log = sled::Batch::default();
    let mut first = marker(1, 1);
    first.context = BOOTSTRAP_MARKER.to_vec().into();
    log.insert(&index_key(1), encode(&first));
    trees
        .raft_log
        .apply_batch(log)
        .map_err(StoreError::sled("writing a new raft log"))?;
    let mut meta = sled::Batch::default();
    meta.insert(APPLIED_INDEX, &1u64.to_be_bytes());
    for member in &config.member_info {
        meta.insert(member_key(member.id), encode_member(member));
    }
    trees
        .meta
        .apply_batch(meta)
        .map_err(StoreError::sled("writing the member list"))?;
    trees
        .raft_state
        .insert(HARD_STATE, encode(&hard_state))
        .map_err(StoreError::sled("writing the raft hard state"))?;
    // Last: its presence marks the bootstrap as done.
    trees
        .raft_state
        .insert(CONF_STATE, encode(&conf_state))
        .map_err(StoreError::sled("writing the raft conf state"))?;
    trees
        .db
        .flush()
        .map_err(StoreError::sled("flushing a new group"))?;
    Ok(())
}

/// The open database and one handle per tree; cloning is cheap (sled handles are `Arc`s).
#[derive(Clone)]
pub(crate) struct Trees {
    pub db: sled::Db,
    pub raft_log: sled::Tree,
    pub raft_state: sled::Tree,
    pub kv: sled::Tree,
    pub events: sled::Tree,
    pub meta: sled::Tree,
    /// Request id (`u64`) → the index of the entry that applied it (`u64`), for the
    /// last [`DEDUP_WINDOW`] entries at least.
    pub requests: sled::Tree,
}

impl Trees {
    pub fn open(dir: &Path) -> Result<Trees, StoreError> {
        let damaged = |problem: String| StoreError::Damaged {
            dir: dir.display().to_string(),
            problem,
        };
        // sled may panic rather than fail on some damaged files: either way the
        // caller gets an error naming the directory, never a crashed process.
        let opened = std::panic::catch_unwind(|| sled::Config::new().path(dir).open());
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(sled::Error::Io(error)))
                if error.kind() != std::io::ErrorKind::UnexpectedEof =>
            {
                return Err(StoreError::Sled {
                    context: "opening the data directory",
                    source: sled::Error::Io(error),
                });
            }
            Ok(Err(error)) => {
                return Err(damaged(format!("sled cannot read its files: {error}")));
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                return Err(damaged(format!("sled failed reading its files: {what}")));
            }
        };
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
            requests: tree(REQUESTS)?,
            db,
        })
    }
}

/// The file, beside sled's own in the data directory, where the Raft task records the
/// hard state it last knew to be flushed (at log compaction and at shutdown). sled
/// recovers a truncated file to an older consistent state without an error; this
/// record is how the next start finds out it went backwards.
pub(crate) const DURABLE_RECORD: &str = "skiff-durable";

/// Writes the record of a flushed hard state (term and commit only ever grow).
pub(crate) fn record_durable(dir: &Path, hard_state: &HardState) -> std::io::Result<()> {
    use std::io::Write;
    let temp = dir.join(format!("{DURABLE_RECORD}.tmp"));
    let mut file = std::fs::File::create(&temp)?;
    writeln!(
        file,
        "skiff-store flushed state v1\nterm {}\ncommit {}",
        hard_state.term, hard_state.commit
    )?;
    file.sync_all()?;
    std::fs::rename(&temp, dir.join(DURABLE_RECORD))
}

/// Compares what sled holds with the last record of a flushed state: a term or a
/// commit index below it means the files were truncated, lost or replaced by an
/// older copy, and a member that forgot its vote or its log must not rejoin.
pub(crate) fn check_durable(trees: &Trees, dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(DURABLE_RECORD);
    let damaged = |problem: String| StoreError::Damaged {
        dir: dir.display().to_string(),
        problem,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(damaged(format!("reading {}: {error}", path.display()))),
    };
    let field = |name: &str| -> Result<u64, StoreError> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .ok_or_else(|| damaged(format!("{} has no valid {name:?} line", path.display())))
    };
    let (term, commit) = (field("term")?, field("commit")?);
    let hard_state: HardState = match trees
        .raft_state
        .get(HARD_STATE)
        .map_err(StoreError::sled("reading raft state"))?
    {
        Some(bytes) => crate::raft_log::decode("raft hard state", &bytes)?,
        None => {
            return Err(damaged(format!(
                "it holds no raft state, but {} says term {term} and entries through \
                 {commit} were flushed: the store's files were lost or replaced",
                path.display()
            )));
        }
    };
    let applied = read_u64(&trees.meta, APPLIED_INDEX, 0)?;
    let held = hard_state.commit.max(applied);
    if hard_state.term < term || held < commit {
        return Err(damaged(format!(
            "it holds term {} and entries through {held}, but term {term} and entries \
             through {commit} had been flushed (recorded in {}): the store's files were \
             truncated or replaced by an older copy",
            hard_state.term,
            path.display()
        )));
    }
    Ok(())
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
