//! Raft snapshots of the applied MVCC state: built by a leader for a member that is
//! behind its compacted log, installed by that member in one sled transaction.
//!
//! A snapshot holds every `kv` and `events` record plus the revision and compacted
//! revision, whole, in memory: fine for the sizes a control plane stores, and the
//! place to start streaming in chunks if that stops being true.

use raft::prelude::{ConfState, HardState, Snapshot};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use crate::StoreError;
use crate::apply::AppliedState;
use crate::codec::{self, Records, SnapshotData};
use crate::disk::{
    APPLIED_INDEX, COMPACTED, CONF_STATE, HARD_STATE, MEMBER_PREFIX, REMOVED_PREFIX, REVISION,
    Trees,
};
use crate::raft_log::{encode, index_key, marker};

fn prefixed(tree: &sled::Tree, prefix: &[u8]) -> Result<Records, StoreError> {
    tree.scan_prefix(prefix)
        .map(|item| {
            let (key, value) = item.map_err(StoreError::sled("reading members for a snapshot"))?;
            Ok((key.to_vec(), value.to_vec()))
        })
        .collect()
}

fn records(tree: &sled::Tree) -> Result<Records, StoreError> {
    tree.iter()
        .map(|item| {
            let (key, value) = item.map_err(StoreError::sled("reading state for a snapshot"))?;
            Ok((key.to_vec(), value.to_vec()))
        })
        .collect()
}

/// The applied state as a snapshot whose metadata has the applied index; the caller
/// fills in its term and conf state.
pub(crate) fn build(trees: &Trees) -> Result<Snapshot, StoreError> {
    let state = AppliedState::load(&trees.meta)?;
    let data = SnapshotData {
        revision: state.revision,
        compacted: state.compacted,
        kv: records(&trees.kv)?,
        events: records(&trees.events)?,
        members: prefixed(&trees.meta, MEMBER_PREFIX)?,
        requests: records(&trees.requests)?,
        removed: prefixed(&trees.meta, REMOVED_PREFIX)?,
    };
    let mut snapshot = Snapshot::default();
    snapshot.set_data(codec::encode_snapshot(&data).into());
    snapshot.mut_metadata().index = state.index;
    Ok(snapshot)
}

/// Replaces the applied state and the Raft log with `snapshot` in one sled transaction
/// (a crash leaves either the old state or the new one), and returns the new applied
/// state and hard state. The caller flushes.
pub(crate) fn install(
    trees: &Trees,
    snapshot: &Snapshot,
    hard_state: &HardState,
) -> Result<(AppliedState, HardState, ConfState), StoreError> {
    let data = codec::decode_snapshot(snapshot.get_data())?;
    let metadata = snapshot.get_metadata();
    let state = AppliedState {
        index: metadata.index,
        revision: data.revision,
        compacted: data.compacted,
    };
    let mut hard_state = hard_state.clone();
    hard_state.term = hard_state.term.max(metadata.term);
    hard_state.commit = hard_state.commit.max(metadata.index);
    let conf_state = metadata.get_conf_state().clone();

    let keys = |tree: &sled::Tree| -> Result<Vec<sled::IVec>, StoreError> {
        tree.iter()
            .keys()
            .collect::<Result<_, _>>()
            .map_err(StoreError::sled("listing state replaced by a snapshot"))
    };
    let (old_kv, old_events, old_log, old_requests) = (
        keys(&trees.kv)?,
        keys(&trees.events)?,
        keys(&trees.raft_log)?,
        keys(&trees.requests)?,
    );
    let old_members: Vec<sled::IVec> = [MEMBER_PREFIX, REMOVED_PREFIX]
        .iter()
        .flat_map(|prefix| trees.meta.scan_prefix(prefix).keys())
        .collect::<Result<_, _>>()
        .map_err(StoreError::sled("listing members replaced by a snapshot"))?;
    let trees_in_txn = [
        &trees.kv,
        &trees.events,
        &trees.meta,
        &trees.raft_log,
        &trees.raft_state,
        &trees.requests,
    ];
    trees_in_txn
        .transaction(|t| {
            let (kv, events, meta, log, raft_state, requests) =
                (&t[0], &t[1], &t[2], &t[3], &t[4], &t[5]);
            for key in &old_kv {
                kv.remove(key)?;
            }
            for key in &old_events {
                events.remove(key)?;
            }
            for key in &old_log {
                log.remove(key)?;
            }
            for key in &old_requests {
                requests.remove(key)?;
            }
            for (key, value) in &data.requests {
                requests.insert(key.as_slice(), value.as_slice())?;
            }
            for (key, value) in &data.kv {
                kv.insert(key.as_slice(), value.as_slice())?;
            }
            for (key, value) in &data.events {
                events.insert(key.as_slice(), value.as_slice())?;
            }
            for key in &old_members {
                meta.remove(key)?;
            }
            for (key, value) in data.members.iter().chain(&data.removed) {
                meta.insert(key.as_slice(), value.as_slice())?;
            }
            meta.insert(APPLIED_INDEX, &state.index.to_be_bytes())?;
            meta.insert(REVISION, &state.revision.to_be_bytes())?;
            meta.insert(COMPACTED, &state.compacted.to_be_bytes())?;
            log.insert(
                &index_key(metadata.index),
                encode(&marker(metadata.index, metadata.term)),
            )?;
            raft_state.insert(HARD_STATE, encode(&hard_state))?;
            raft_state.insert(CONF_STATE, encode(&conf_state))?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })
        .map_err(|error| match error {
            sled::transaction::TransactionError::Abort(error) => error,
            sled::transaction::TransactionError::Storage(source) => StoreError::Sled {
                context: "installing a raft snapshot",
                source,
            },
        })?;
    Ok((state, hard_state, conf_state))
}
