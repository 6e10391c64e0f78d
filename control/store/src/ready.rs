//! One `Ready` of the Raft node, in the order that keeps a crash from losing what a
//! message already promised: send what the leader may send at once, install a
//! snapshot, apply committed entries, persist entries and hard state with one flush,
//! only then send the messages that depend on them, advance.

use std::collections::BTreeMap;

use raft::prelude::{ConfChange, Entry, EntryType, Message, MessageType};
use raft::{SnapshotStatus, StateRole};

use crate::apply::Outcome;
use crate::disk::fatal;
use crate::node::RaftNode;
use crate::raft_log::decode;

/// True if the fault harness crashes the task at this step (never outside it).
macro_rules! crash_at {
    ($node:expr, $point:ident) => {{
        #[cfg(any(test, feature = "sim"))]
        let crash = $node.fail(crate::sim::FailPoint::$point);
        #[cfg(not(any(test, feature = "sim")))]
        let crash = false;
        crash
    }};
}

/// The most Raft log entries one turn of the Raft task drops when compacting.
const COMPACTION_STEP: usize = 512;

impl RaftNode {
    pub(crate) fn handle_ready(&mut self) {
        let mut ready = self.raw.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let hard_state = self.raw.store().hard_state().clone();
            match self.machine.install(ready.snapshot(), &hard_state) {
                Ok((hard_state, conf_state)) => {
                    if crash_at!(self, MidSnapshotInstall) {
                        return;
                    }
                    self.raw.mut_store().restored(hard_state, conf_state);
                }
                Err(error) => fatal("installing a raft snapshot", &error),
            }
            self.reload_removed();
            tracing::info!(
                index = ready.snapshot().get_metadata().index,
                "installed a snapshot from the leader"
            );
            self.flush();
        }
        for state in ready.take_read_states() {
            if let Some(batch) = self.reads.iter_mut().find(|b| b.ctx == state.request_ctx) {
                batch.index.get_or_insert(state.index);
            }
        }
        self.apply(ready.take_committed_entries());
        if self.crashed || crash_at!(self, AfterApply) {
            return;
        }

        let wrote = !ready.entries().is_empty() || ready.hs().is_some();
        if let Err(error) = self.raw.mut_store().append(ready.entries(), None) {
            fatal("persisting raft entries", &error);
        }
        if !ready.entries().is_empty() && crash_at!(self, BetweenEntriesAndHardState) {
            return;
        }
        if let Err(error) = self.raw.mut_store().append(&[], ready.hs()) {
            fatal("persisting the raft hard state", &error);
        }
        if wrote {
            self.flush();
        }
        self.send(ready.take_persisted_messages());

        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            // Not flushed here: a lost commit index is learned again from the leader.
            if let Err(error) = self.raw.mut_store().set_commit(commit) {
                fatal("recording the raft commit index", &error);
            }
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries());
        if self.crashed || crash_at!(self, AfterApply) {
            return;
        }
        self.raw.advance_apply();
    }

    /// Work after the `Ready`s of one loop turn: answer reads whose index is applied,
    /// publish who leads, and compact the log once it is long enough.
    pub(crate) fn after_ready(&mut self) {
        let applied = self.machine.applied_index();
        self.reads.retain_mut(|batch| match batch.index {
            Some(index) if index <= applied => {
                for reply in batch.replies.drain(..) {
                    let _ = reply.send(Ok(()));
                }
                false
            }
            _ => true,
        });
        let leader = match self.raw.raft.state {
            StateRole::Leader => self.raw.raft.id,
            _ => self.raw.raft.leader_id,
        };
        self.shared.set_leader(leader);

        // Compaction drops at most COMPACTION_STEP entries per turn of the task, so
        // dropping thousands never stalls the requests of one turn.
        let first = self
            .raw
            .raft
            .raft_log
            .first_index()
            .max(self.compacting + 1);
        if applied >= first + self.log_compaction_entries {
            // The applied state must be on disk before the log that rebuilds it goes.
            self.flush();
            self.record_durable();
            self.compacting = applied;
        }
        if self.compacting >= self.raw.raft.raft_log.first_index() {
            match self
                .raw
                .mut_store()
                .compact_step(self.compacting, COMPACTION_STEP)
            {
                Ok(true) => tracing::debug!(through = self.compacting, "compacted the raft log"),
                Ok(false) => {}
                Err(error) => fatal("compacting the raft log", &error),
            }
        }
    }

    /// Applies committed entries in order: runs of normal entries in one transaction
    /// each, membership changes one by one between them.
    fn apply(&mut self, entries: Vec<Entry>) {
        let mut run = 0;
        for (at, entry) in entries.iter().enumerate() {
            if entry.get_entry_type() != EntryType::EntryNormal {
                self.apply_normal(&entries[run..at]);
                self.apply_conf_change(entry);
                if crash_at!(self, AfterMembershipChange) {
                    return;
                }
                run = at + 1;
            }
        }
        self.apply_normal(&entries[run..]);
    }

    fn apply_normal(&mut self, entries: &[Entry]) {
        for (id, outcome) in self.machine.apply(entries) {
            if let Some(reply) = self.pending.remove(&id) {
                let _ = reply.send(outcome);
            }
        }
    }

    fn apply_conf_change(&mut self, entry: &Entry) {
        if entry.index <= self.machine.applied_index() {
            return;
        }
        if entry.get_entry_type() != EntryType::EntryConfChange {
            fatal(
                &format!("applying raft entry {}", entry.index),
                &crate::StoreError::codec("raft entry", "ConfChangeV2 is not supported"),
            );
        }
        let change: ConfChange = match decode("membership change", entry.get_data()) {
            Ok(change) => change,
            Err(error) => fatal(
                &format!("decoding raft entry {} (the log is corrupt)", entry.index),
                &error,
            ),
        };
        let outcome = match self.raw.apply_conf_change(&change) {
            Ok(conf_state) => {
                let members =
                    self.machine
                        .apply_membership(entry.index, &change, Some(&conf_state));
                tracing::info!(
                    index = entry.index,
                    change = ?change.get_change_type(),
                    member = change.node_id,
                    voters = ?conf_state.voters,
                    "membership changed"
                );
                self.reload_removed();
                let removed = !conf_state.voters.contains(&self.raw.raft.id);
                self.raw.mut_store().set_conf_state(conf_state);
                if removed && self.raw.raft.state == StateRole::Leader {
                    // A leader that removed itself would otherwise go on leading a
                    // group it is not in (raft-rs leaves this case to the caller).
                    let term = self.raw.raft.term + 1;
                    self.raw.raft.become_follower(term, raft::INVALID_ID);
                }
                Ok(Outcome::Members(members))
            }
            Err(error) => {
                self.machine.apply_membership(entry.index, &change, None);
                Err(crate::StoreError::Membership(error.to_string()))
            }
        };
        let id = <[u8; 8]>::try_from(entry.get_context()).map(u64::from_be_bytes);
        if let Ok(id) = id
            && let Some(reply) = self.pending.remove(&id)
        {
            let _ = reply.send(outcome);
        }
    }

    /// Reads the removed members again after a membership change or a snapshot.
    fn reload_removed(&mut self) {
        match crate::disk::load_removed(&self.shared.trees.meta) {
            Ok(removed) => self.removed = removed.into_iter().collect(),
            Err(error) => fatal("reading the removed members", &error),
        }
    }

    /// Hands messages to the transport, one batch per destination. A snapshot counts as
    /// delivered once handed over: if it was lost, the follower's next rejection makes
    /// the leader probe again and send another.
    fn send(&mut self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let mut batches: BTreeMap<u64, Vec<Message>> = BTreeMap::new();
        for message in messages {
            batches.entry(message.to).or_default().push(message);
        }
        for (to, batch) in batches {
            let snapshot = batch
                .iter()
                .any(|m| m.get_msg_type() == MessageType::MsgSnapshot);
            self.transport.send(to, batch);
            if snapshot {
                self.raw.report_snapshot(to, SnapshotStatus::Finish);
            }
        }
    }

    /// One fsync of everything written so far. Blocking on purpose: nothing in this
    /// task may run before the write is durable, and in a paused-clock test an `.await`
    /// here would let simulated time jump while the disk works.
    pub(crate) fn flush(&self) {
        let db = &self.shared.trees.db;
        let result = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| db.flush())
            }
            _ => db.flush(),
        };
        if let Err(error) = result {
            fatal("flushing the raft log to disk", &error);
        }
    }
}
