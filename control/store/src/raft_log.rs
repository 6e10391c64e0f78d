//! Raft's log and hard state in sled: the `raft::Storage` the `RawNode` reads, plus the
//! writes the Raft task makes before it acts on a `Ready`.
//!
//! Log compaction and snapshots are not written yet: the log starts at index 1 and is
//! kept whole. When they come, a truncated index/term record in `raft_state` will move
//! `first_index` and answer `term(first_index - 1)`.

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use sled::Batch;

use crate::StoreError;
use crate::disk::{CONF_STATE, HARD_STATE, Trees};

pub(crate) struct RaftLog {
    log: sled::Tree,
    state: sled::Tree,
    hard_state: HardState,
    conf_state: ConfState,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn decode<M: protobuf::Message>(what: &'static str, bytes: &[u8]) -> Result<M, StoreError> {
    M::parse_from_bytes(bytes).map_err(|e| StoreError::codec(what, e.to_string()))
}

fn encode(message: &impl protobuf::Message) -> Vec<u8> {
    message
        .write_to_bytes()
        .expect("encoding a raft message in memory cannot fail")
}

impl RaftLog {
    /// Opens the log; a data directory never used before becomes a one-member group
    /// whose only voter is `member_id`.
    pub fn open(trees: &Trees, member_id: u64) -> Result<RaftLog, StoreError> {
        let read = |key: &[u8]| {
            trees
                .raft_state
                .get(key)
                .map_err(StoreError::sled("reading raft state"))
        };
        let hard_state = match read(HARD_STATE)? {
            Some(bytes) => decode("raft hard state", &bytes)?,
            None => HardState::default(),
        };
        let conf_state = match read(CONF_STATE)? {
            Some(bytes) => decode("raft conf state", &bytes)?,
            None => {
                let conf_state = ConfState::from((vec![member_id], vec![]));
                trees
                    .raft_state
                    .insert(CONF_STATE, encode(&conf_state))
                    .map_err(StoreError::sled("writing the initial raft conf state"))?;
                conf_state
            }
        };
        Ok(RaftLog {
            log: trees.raft_log.clone(),
            state: trees.raft_state.clone(),
            hard_state,
            conf_state,
        })
    }

    /// Appends `entries`, replacing any entries at or after the first one's index (a
    /// new leader may overwrite an uncommitted tail), then the hard state. Entries go
    /// first so a crash can never leave a commit index pointing past the log. The caller
    /// flushes before acting on them.
    pub fn append(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StoreError> {
        if let Some(first) = entries.first() {
            let mut batch = Batch::default();
            for key in self.log.range(index_key(first.index)..).keys() {
                batch.remove(key.map_err(StoreError::sled("reading the raft log tail"))?);
            }
            for entry in entries {
                batch.insert(&index_key(entry.index), encode(entry));
            }
            self.log
                .apply_batch(batch)
                .map_err(StoreError::sled("appending to the raft log"))?;
        }
        if let Some(hard_state) = hard_state {
            self.set_hard_state(hard_state.clone())?;
        }
        Ok(())
    }

    pub fn set_commit(&mut self, commit: u64) -> Result<(), StoreError> {
        let mut hard_state = self.hard_state.clone();
        hard_state.commit = commit;
        self.set_hard_state(hard_state)
    }

    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StoreError> {
        self.state
            .insert(HARD_STATE, encode(&hard_state))
            .map_err(StoreError::sled("writing the raft hard state"))?;
        self.hard_state = hard_state;
        Ok(())
    }

    fn last(&self) -> Result<u64, StoreError> {
        match self
            .log
            .last()
            .map_err(StoreError::sled("reading the raft log"))?
        {
            Some((key, _)) => Ok(u64::from_be_bytes(key.as_ref().try_into().map_err(
                |_| StoreError::codec("raft log key", format!("{} bytes, want 8", key.len())),
            )?)),
            None => Ok(0),
        }
    }

    fn entry(&self, index: u64) -> Result<Option<Entry>, StoreError> {
        self.log
            .get(index_key(index))
            .map_err(StoreError::sled("reading the raft log"))?
            .map(|bytes| decode("raft log entry", &bytes))
            .transpose()
    }
}

fn other(error: StoreError) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(error)))
}

impl Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index()? {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let last = self.last().map_err(other)?;
        assert!(
            high <= last + 1,
            "raft asked for entries up to {high} but the log ends at {last}"
        );
        let mut entries = self
            .log
            .range(index_key(low)..index_key(high))
            .values()
            .map(|bytes| {
                let bytes =
                    bytes.map_err(|e| other(StoreError::sled("reading the raft log")(e)))?;
                decode("raft log entry", &bytes).map_err(other)
            })
            .collect::<raft::Result<Vec<Entry>>>()?;
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        // Index 0 is the empty prefix before the first entry; its term is 0.
        if index == 0 {
            return Ok(0);
        }
        match self.entry(index).map_err(other)? {
            Some(entry) => Ok(entry.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.last().map_err(other)
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Only a leader sends snapshots, to followers; a one-member group has none.
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}
