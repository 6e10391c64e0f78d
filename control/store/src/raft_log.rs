//! Raft's log and hard state in sled: the `raft::Storage` the `RawNode` reads, plus the
//! writes the Raft task makes before it acts on a `Ready`.
//!
//! The log always holds a *marker* entry, the last entry compacted away (index 0, term 0
//! in a new log): it answers `term(first_index - 1)` and makes `first_index` the key
//! after it. Log compaction and snapshot installation both move the marker forward in
//! one sled batch with the removal of the entries it replaces.

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use sled::Batch;

use crate::StoreError;
use crate::disk::{BOOTSTRAP_MARKER, CONF_STATE, HARD_STATE, Trees};
use crate::snapshot;

pub(crate) struct RaftLog {
    trees: Trees,
    log: sled::Tree,
    state: sled::Tree,
    hard_state: HardState,
    conf_state: ConfState,
}

pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(crate) fn decode<M: protobuf::Message>(
    what: &'static str,
    bytes: &[u8],
) -> Result<M, StoreError> {
    M::parse_from_bytes(bytes).map_err(|e| StoreError::codec(what, e.to_string()))
}

pub(crate) fn encode(message: &impl protobuf::Message) -> Vec<u8> {
    message
        .write_to_bytes()
        .expect("encoding a raft message in memory cannot fail")
}

/// The dataless entry kept at the compaction point.
pub(crate) fn marker(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Entry::default()
    }
}

fn decode_index(key: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(key.try_into().map_err(|_| {
        StoreError::codec("raft log key", format!("{} bytes, want 8", key.len()))
    })?))
}

impl RaftLog {
    /// Opens the log; a data directory never used before becomes a group whose voters
    /// are `members`.
    pub fn open(trees: &Trees, members: &[u64]) -> Result<RaftLog, StoreError> {
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
                let conf_state = ConfState::from((members.to_vec(), vec![]));
                trees
                    .raft_state
                    .insert(CONF_STATE, encode(&conf_state))
                    .map_err(StoreError::sled("writing the initial raft conf state"))?;
                conf_state
            }
        };
        let log = RaftLog {
            trees: trees.clone(),
            log: trees.raft_log.clone(),
            state: trees.raft_state.clone(),
            hard_state,
            conf_state,
        };
        // A log never compacted (new, or written before markers existed) starts at 1.
        let pre_marker = match log.first_key()? {
            None => true,
            Some(1) => log
                .entry(1)?
                .is_none_or(|entry| entry.get_context() != BOOTSTRAP_MARKER),
            Some(_) => false,
        };
        if pre_marker {
            log.log
                .insert(index_key(0), encode(&marker(0, 0)))
                .map_err(StoreError::sled("writing the raft log marker"))?;
        }
        Ok(log)
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

    /// Checks at start that the log can be what the hard state and the applied state
    /// say it is: a marker, then entries at consecutive indexes that decode, with
    /// terms that never go down, reaching the commit index and the applied index.
    /// A truncated or damaged log fails here with what is wrong, instead of Raft
    /// panicking on it later.
    pub fn check(&self, applied: u64) -> Result<(), String> {
        let mut expected: Option<u64> = None;
        let mut last_term = 0;
        for item in self.log.iter() {
            let (key, bytes) = item.map_err(|e| format!("reading the raft log: {e}"))?;
            let index = decode_index(&key).map_err(|e| e.to_string())?;
            if let Some(expected) = expected
                && index != expected
            {
                return Err(format!(
                    "the raft log skips from entry {} to entry {index}",
                    expected - 1
                ));
            }
            let entry: Entry = decode("raft log entry", &bytes)
                .map_err(|e| format!("raft log entry {index} does not decode: {e}"))?;
            if entry.index != index {
                return Err(format!(
                    "raft log entry stored at {index} says it is entry {}",
                    entry.index
                ));
            }
            if entry.term < last_term {
                return Err(format!(
                    "raft log entry {index} has term {} after term {last_term}",
                    entry.term
                ));
            }
            last_term = entry.term;
            expected = Some(index + 1);
        }
        let Some(next) = expected else {
            return Err("the raft log is empty (no marker entry)".into());
        };
        let last = next - 1;
        let marker = self.first_key().map_err(|e| e.to_string())?.unwrap_or(0);
        let commit = self.hard_state.commit;
        if commit > last {
            return Err(format!(
                "the hard state says entries up to {commit} are committed but the raft \
                 log ends at {last}: the log was truncated"
            ));
        }
        if applied > last {
            return Err(format!(
                "entries up to {applied} were applied but the raft log ends at {last}: \
                 the log was truncated"
            ));
        }
        // Marker 1 is the bootstrap marker (the empty store), which applied 0 matches.
        if applied < marker && marker > 1 {
            return Err(format!(
                "entries up to {applied} were applied but the raft log starts after \
                 {marker}: the applied state is older than the log"
            ));
        }
        Ok(())
    }

    pub fn set_commit(&mut self, commit: u64) -> Result<(), StoreError> {
        let mut hard_state = self.hard_state.clone();
        hard_state.commit = commit;
        self.set_hard_state(hard_state)
    }

    /// One step of compacting the log up to `index`: drops at most `limit` of the
    /// lowest entries before `index`, and once none is left makes entry `index` the
    /// (dataless) marker. Returns true when the log starts at `index`. The caller must
    /// have flushed the applied state through `index` first: after this the log cannot
    /// replay those entries.
    ///
    /// Between steps the lowest entry left serves as the marker (only its index and
    /// term are read), so every step leaves a valid log and a crash between steps
    /// leaves a longer one, compacted again later.
    pub fn compact_step(&mut self, index: u64, limit: usize) -> Result<bool, StoreError> {
        let mut batch = Batch::default();
        let mut dropped = 0;
        for key in self.log.range(..index_key(index)).keys().take(limit) {
            batch.remove(key.map_err(StoreError::sled("listing compacted raft entries"))?);
            dropped += 1;
        }
        let done = dropped < limit || self.log.range(..index_key(index)).nth(limit).is_none();
        if done {
            let Some(entry) = self.entry(index)? else {
                // A snapshot moved the log past `index` meanwhile.
                return Ok(true);
            };
            batch.insert(&index_key(index), encode(&marker(index, entry.term)));
        }
        self.log
            .apply_batch(batch)
            .map_err(StoreError::sled("compacting the raft log"))?;
        Ok(done)
    }

    /// Records what installing `snapshot` wrote to disk (see `snapshot::install`).
    pub fn restored(&mut self, hard_state: HardState, conf_state: ConfState) {
        self.hard_state = hard_state;
        self.conf_state = conf_state;
    }

    /// Records the conf state a membership change wrote to disk (in the apply step).
    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StoreError> {
        self.state
            .insert(HARD_STATE, encode(&hard_state))
            .map_err(StoreError::sled("writing the raft hard state"))?;
        self.hard_state = hard_state;
        Ok(())
    }

    fn first_key(&self) -> Result<Option<u64>, StoreError> {
        match self
            .log
            .first()
            .map_err(StoreError::sled("reading the raft log"))?
        {
            Some((key, _)) => Ok(Some(decode_index(&key)?)),
            None => Ok(None),
        }
    }

    fn marker_index(&self) -> Result<u64, StoreError> {
        self.first_key()?
            .ok_or_else(|| StoreError::codec("raft log", "the marker entry is missing"))
    }

    fn last(&self) -> Result<u64, StoreError> {
        match self
            .log
            .last()
            .map_err(StoreError::sled("reading the raft log"))?
        {
            Some((key, _)) => decode_index(&key),
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
        if index < self.marker_index().map_err(other)? {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.entry(index).map_err(other)? {
            Some(entry) => Ok(entry.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.marker_index().map_err(other)? + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.last().map_err(other)
    }

    /// A snapshot of the applied state. Only the Raft task applies entries and it is
    /// the caller here, so the trees hold one consistent applied state.
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let mut snap = snapshot::build(&self.trees).map_err(other)?;
        let index = snap.get_metadata().index;
        let term = self.term(index)?;
        let metadata = snap.mut_metadata();
        metadata.term = term;
        metadata.set_conf_state(self.conf_state.clone());
        Ok(snap)
    }
}
