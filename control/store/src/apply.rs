//! The apply step: turns committed Raft entries into key-value state. Each batch of
//! entries is applied in one sled transaction that also records the last applied
//! index, so after a crash the entries after that index are applied again, once.

use std::sync::Arc;

use raft::prelude::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Snapshot};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::{Batch, Transactional};

use crate::codec::{self, Command, KvRecord, Request};
use crate::disk::{self, APPLIED_INDEX, COMPACTED, CONF_STATE, DEDUP_WINDOW, REVISION, fatal};
use crate::mvcc::{self, KvAccess};
use crate::raft_log::encode;
use crate::shared::Shared;
use crate::snapshot;
use crate::{Member, Revision, StoreError, TxnResponse};

/// How often (in applied entries) the ids of requests older than the duplicate window
/// are dropped.
const PRUNE_REQUESTS_EVERY: u64 = 1024;

/// Requests skipped as duplicates by every member in this process so far (the fault
/// harness reports it).
static DUPLICATES_SKIPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(any(test, feature = "sim"))]
pub(crate) fn duplicates_skipped() -> u64 {
    DUPLICATES_SKIPPED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Revision of an empty store, as in etcd.
pub(crate) const FIRST_REVISION: Revision = 1;

/// What a proposer gets back once its entry is applied.
#[derive(Debug)]
pub(crate) enum Outcome {
    Txn(TxnResponse),
    Compacted,
    /// A membership change took effect; the members after it.
    Members(Vec<Member>),
}

pub(crate) type Applied = Vec<(u64, Result<Outcome, StoreError>)>;

/// The applied state, as last committed to sled.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AppliedState {
    pub index: u64,
    pub revision: Revision,
    pub compacted: Revision,
}

impl AppliedState {
    pub fn load(meta: &sled::Tree) -> Result<AppliedState, StoreError> {
        Ok(AppliedState {
            index: disk::read_u64(meta, APPLIED_INDEX, 0)?,
            revision: disk::read_u64(meta, REVISION, FIRST_REVISION as u64)? as Revision,
            compacted: disk::read_u64(meta, COMPACTED, 0)? as Revision,
        })
    }
}

pub(crate) struct StateMachine {
    shared: Arc<Shared>,
    state: AppliedState,
}

impl StateMachine {
    pub fn new(shared: Arc<Shared>, state: AppliedState) -> Result<StateMachine, StoreError> {
        let machine = StateMachine { shared, state };
        // A crash may have cut the removal of compacted events short; finish it.
        machine.remove_events_through(state.compacted)?;
        Ok(machine)
    }

    pub fn applied_index(&self) -> u64 {
        self.state.index
    }

    /// Replaces the applied state and the log with `snapshot` (see `snapshot::install`),
    /// with readers held off so none sees a mix of old and new state.
    pub fn install(
        &mut self,
        snapshot: &Snapshot,
        hard_state: &HardState,
    ) -> Result<(HardState, ConfState), StoreError> {
        let gate = self.shared.write_gate();
        let (state, hard_state, conf_state) =
            snapshot::install(&self.shared.trees, snapshot, hard_state)?;
        self.state = state;
        self.shared.publish(state.revision, state.compacted);
        drop(gate);
        self.shared
            .publish_members(disk::load_members(&self.shared.trees.meta)?);
        Ok((hard_state, conf_state))
    }

    /// Records a membership change committed at `index`: the applied index, the new
    /// conf state (none if Raft refused the change) and the member record, in one sled
    /// transaction, so a restart neither applies it twice nor forgets it.
    pub fn apply_membership(
        &mut self,
        index: u64,
        change: &ConfChange,
        conf_state: Option<&ConfState>,
    ) -> Vec<Member> {
        if index <= self.state.index {
            return self.shared.members().borrow().clone();
        }
        let trees = &self.shared.trees;
        let added: Option<Member> = match change.get_change_type() {
            ConfChangeType::AddNode if conf_state.is_some() => {
                match serde_json::from_slice(change.get_context()) {
                    Ok(member) => Some(member),
                    Err(error) => {
                        tracing::warn!(%error, id = change.node_id, "added member has no readable record");
                        None
                    }
                }
            }
            _ => None,
        };
        let removed =
            conf_state.is_some() && change.get_change_type() == ConfChangeType::RemoveNode;
        let committed = (&trees.meta, &trees.raft_state).transaction(|(meta, raft_state)| {
            meta.insert(APPLIED_INDEX, &index.to_be_bytes())?;
            if let Some(conf_state) = conf_state {
                raft_state.insert(CONF_STATE, encode(conf_state))?;
            }
            if let Some(member) = &added {
                meta.insert(disk::member_key(member.id), disk::encode_member(member))?;
                meta.remove(disk::removed_key(member.id))?;
            }
            if removed {
                meta.remove(disk::member_key(change.node_id))?;
                meta.insert(disk::removed_key(change.node_id), &[])?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        });
        if let Err(error) = committed {
            fatal(&format!("applying membership change {index}"), &error);
        }
        self.state.index = index;
        let members = match disk::load_members(&trees.meta) {
            Ok(members) => members,
            Err(error) => fatal("reading the member list", &error),
        };
        self.shared.publish_members(members.clone());
        members
    }

    /// Applies `entries` (in log order) and returns each request's outcome. Stops the
    /// process if sled cannot commit: the caller has no way to continue truthfully.
    pub fn apply(&mut self, entries: &[Entry]) -> Applied {
        let fresh: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.index > self.state.index)
            .collect();
        let Some(last) = fresh.last() else {
            return Vec::new();
        };
        let last_index = last.index;
        let requests: Vec<(u64, Request)> = fresh
            .iter()
            .filter_map(|entry| Some((entry.index, decode_entry(entry)?)))
            .collect();

        let trees = &self.shared.trees;
        let before = self.state;
        let gate = self.shared.write_gate();
        let committed = (&trees.kv, &trees.events, &trees.meta, &trees.requests).transaction(
            |(kv, events, meta, applied_requests)| {
                let mut state = before;
                let mut outcomes = Vec::with_capacity(requests.len());
                for (index, request) in &requests {
                    // A request applied lately came twice (the network duplicated a
                    // forwarded proposal): its proposer has had its answer already.
                    let id = request.id.to_be_bytes();
                    if let Some(seen) = applied_requests.get(id)?
                        && let Ok(seen) = <[u8; 8]>::try_from(seen.as_ref())
                        && let seen = u64::from_be_bytes(seen)
                        && seen < *index
                        && index - seen <= DEDUP_WINDOW
                    {
                        tracing::debug!(
                            request = request.id,
                            index,
                            first = seen,
                            "skipping a request applied before"
                        );
                        DUPLICATES_SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                    applied_requests.insert(&id, &index.to_be_bytes())?;
                    let outcome = match &request.command {
                        Command::Txn(txn) => {
                            let done = mvcc::execute(txn, state.revision, &TxKv(kv))?;
                            if !done.events.is_empty() {
                                events.insert(
                                    &codec::revision_key(done.response.revision),
                                    codec::encode_events(&done.events),
                                )?;
                            }
                            state.revision = done.response.revision;
                            Ok(Outcome::Txn(done.response))
                        }
                        Command::Compact(revision) => compact(&mut state, *revision),
                    };
                    outcomes.push((request.id, outcome));
                }
                state.index = last_index;
                meta.insert(APPLIED_INDEX, &state.index.to_be_bytes())?;
                meta.insert(REVISION, &state.revision.to_be_bytes())?;
                meta.insert(COMPACTED, &state.compacted.to_be_bytes())?;
                Ok((state, outcomes))
            },
        );
        let (state, outcomes) = match committed {
            Ok(done) => done,
            Err(error) => fatal(
                &format!("applying raft entries through index {last_index}"),
                &error,
            ),
        };
        self.state = state;
        self.shared.publish(state.revision, state.compacted);
        drop(gate);

        if state.compacted > before.compacted
            && let Err(error) = self.remove_events_through(state.compacted)
        {
            fatal("removing compacted history", &error);
        }
        if last_index / PRUNE_REQUESTS_EVERY != before.index / PRUNE_REQUESTS_EVERY
            && let Err(error) = self.prune_requests(last_index)
        {
            fatal("removing old request ids", &error);
        }
        outcomes
    }

    /// Forgets request ids applied more than [`DEDUP_WINDOW`] entries before `applied`.
    /// Outside the apply transaction on purpose: entries that old no longer count as
    /// duplicates whether they are still stored or not, so when (or whether) this runs
    /// changes no decision.
    fn prune_requests(&self, applied: u64) -> Result<(), StoreError> {
        let requests = &self.shared.trees.requests;
        let mut batch = Batch::default();
        for item in requests.iter() {
            let (id, index) = item.map_err(StoreError::sled("listing applied request ids"))?;
            let old = <[u8; 8]>::try_from(index.as_ref())
                .map(u64::from_be_bytes)
                .is_ok_and(|index| index + DEDUP_WINDOW < applied);
            if old {
                batch.remove(id);
            }
        }
        requests
            .apply_batch(batch)
            .map_err(StoreError::sled("removing old request ids"))
    }

    fn remove_events_through(&self, revision: Revision) -> Result<(), StoreError> {
        let events = &self.shared.trees.events;
        let end = codec::revision_key(revision);
        loop {
            let mut batch = Batch::default();
            let mut count = 0;
            for key in events.range(..=end).keys().take(1024) {
                batch.remove(key.map_err(StoreError::sled("listing compacted history"))?);
                count += 1;
            }
            if count == 0 {
                return Ok(());
            }
            events
                .apply_batch(batch)
                .map_err(StoreError::sled("removing compacted history"))?;
        }
    }
}

fn compact(state: &mut AppliedState, revision: Revision) -> Result<Outcome, StoreError> {
    if revision > state.revision {
        return Err(StoreError::FutureRevision {
            requested: revision,
            current: state.revision,
        });
    }
    state.compacted = state.compacted.max(revision);
    Ok(Outcome::Compacted)
}

/// The request in a normal entry; `None` for the empty entry a new leader appends.
fn decode_entry(entry: &Entry) -> Option<Request> {
    match entry.get_entry_type() {
        EntryType::EntryNormal if entry.get_data().is_empty() => None,
        EntryType::EntryNormal => match codec::decode_request(entry.get_data()) {
            Ok(request) => Some(request),
            Err(error) => fatal(
                &format!("decoding raft entry {} (the log is corrupt)", entry.index),
                &error,
            ),
        },
        // Membership changes are split off before this step (`RaftNode::apply`).
        other => fatal(
            &format!("applying raft entry {}", entry.index),
            &StoreError::codec("raft entry", format!("{other:?} is not supported yet")),
        ),
    }
}

struct TxKv<'a>(&'a TransactionalTree);

impl KvAccess for TxKv<'_> {
    type Error = ConflictableTransactionError<StoreError>;

    fn get(&self, key: &str) -> Result<Option<KvRecord>, Self::Error> {
        match self.0.get(key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => codec::decode_kv(&bytes)
                .map(Some)
                .map_err(ConflictableTransactionError::Abort),
        }
    }

    fn put(&self, key: &str, record: &KvRecord) -> Result<(), Self::Error> {
        self.0.insert(key.as_bytes(), codec::encode_kv(record))?;
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<(), Self::Error> {
        self.0.remove(key.as_bytes())?;
        Ok(())
    }
}
