//! The task that owns the Raft node. It ticks, proposes, and for each `Ready`:
//! persists entries and hard state (one flush per `Ready`), only then sends the
//! messages that depend on them, hands committed entries to the apply step, answers
//! their proposers, and advances. One member has no one to send to, but the order is
//! kept so peers can be added without reshuffling it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use raft::StateRole;
use raft::prelude::{Entry, Message, RawNode};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::apply::{AppliedState, Outcome, StateMachine};
use crate::codec::{self, Command, Request};
use crate::disk::fatal;
use crate::logger::raft_logger;
use crate::raft_log::RaftLog;
use crate::shared::Shared;
use crate::{StoreConfig, StoreError};

/// The Raft id of the only member until membership changes exist.
const MEMBER_ID: u64 = 1;

/// A write waiting to go through the log.
pub(crate) struct Proposal {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

pub(crate) struct RaftNode {
    raw: RawNode<RaftLog>,
    machine: StateMachine,
    db: sled::Db,
    /// Proposers waiting for their entry to be applied, by request id.
    pending: HashMap<u64, oneshot::Sender<Result<Outcome, StoreError>>>,
    next_id: u64,
}

impl RaftNode {
    /// Loads the log, elects this member, and applies every committed entry the last
    /// run left unapplied, so the store is current when `open` returns.
    pub async fn start(
        config: &StoreConfig,
        shared: Arc<Shared>,
        state: AppliedState,
    ) -> Result<RaftNode, StoreError> {
        let storage = RaftLog::open(&shared.trees, MEMBER_ID)?;
        let raft_config = raft::Config {
            id: MEMBER_ID,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: state.index,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..raft::Config::default()
        };
        raft_config
            .validate()
            .map_err(StoreError::raft("validating the raft configuration"))?;
        let raw = RawNode::new(&raft_config, storage, &raft_logger())
            .map_err(StoreError::raft("creating the raft node"))?;
        let mut node = RaftNode {
            raw,
            machine: StateMachine::new(shared.clone(), state)?,
            db: shared.trees.db.clone(),
            pending: HashMap::new(),
            // Random so ids of entries replayed from an earlier run never match a
            // proposer of this run.
            next_id: RandomState::new().hash_one(std::process::id()),
        };
        // Alone, this member wins at once; waiting for an election timeout would only
        // delay the first write.
        node.raw
            .campaign()
            .map_err(StoreError::raft("campaigning"))?;
        while node.raw.has_ready() {
            node.handle_ready().await;
        }
        if node.raw.raft.state != StateRole::Leader {
            return Err(StoreError::raft("electing the only member")(
                raft::Error::ProposalDropped,
            ));
        }
        Ok(node)
    }

    /// Runs until `cancel` fires or every `Store` handle is gone, then fails whatever
    /// is still waiting with `StoreError::Stopped`.
    pub async fn run(
        mut self,
        mut proposals: mpsc::Receiver<Proposal>,
        cancel: CancellationToken,
        tick: Duration,
        max_batch: usize,
    ) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => {
                    self.raw.tick();
                }
                received = proposals.recv() => {
                    let Some(proposal) = received else { break };
                    self.propose(proposal);
                    // Take what else is waiting so one flush covers the whole batch.
                    for _ in 1..max_batch {
                        match proposals.try_recv() {
                            Ok(proposal) => self.propose(proposal),
                            Err(_) => break,
                        }
                    }
                }
            }
            while self.raw.has_ready() {
                self.handle_ready().await;
            }
        }
        self.stop(proposals).await;
    }

    fn propose(&mut self, proposal: Proposal) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let data = codec::encode_request(&Request {
            id,
            command: proposal.command,
        });
        match self.raw.propose(Vec::new(), data) {
            Ok(()) => {
                self.pending.insert(id, proposal.reply);
            }
            Err(source) => {
                // The receiver may have given up waiting; nothing else to tell.
                let _ = proposal.reply.send(Err(StoreError::Raft {
                    context: "proposing a write",
                    source,
                }));
            }
        }
    }

    async fn handle_ready(&mut self) {
        let mut ready = self.raw.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            fatal(
                "installing a raft snapshot",
                &StoreError::codec("raft snapshot", "snapshots are not supported yet"),
            );
        }
        self.apply(ready.take_committed_entries());

        let wrote = !ready.entries().is_empty() || ready.hs().is_some();
        if let Err(error) = self.raw.mut_store().append(ready.entries(), ready.hs()) {
            fatal("persisting raft entries", &error);
        }
        if wrote && let Err(error) = self.db.flush_async().await {
            fatal("flushing the raft log to disk", &error);
        }
        self.send(ready.take_persisted_messages());

        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            // Not flushed here: a lost commit index is learned again from the log.
            if let Err(error) = self.raw.mut_store().set_commit(commit) {
                fatal("recording the raft commit index", &error);
            }
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries());
        self.raw.advance_apply();
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        for (id, outcome) in self.machine.apply(&entries) {
            if let Some(reply) = self.pending.remove(&id) {
                let _ = reply.send(outcome);
            }
        }
    }

    fn send(&self, messages: Vec<Message>) {
        if !messages.is_empty() {
            tracing::warn!(
                count = messages.len(),
                "dropping raft messages: a one-member group has no peers"
            );
        }
    }

    async fn stop(mut self, mut proposals: mpsc::Receiver<Proposal>) {
        proposals.close();
        while let Ok(proposal) = proposals.try_recv() {
            let _ = proposal.reply.send(Err(StoreError::Stopped));
        }
        // These entries may still be in the log and be applied on the next open: to
        // their proposers the outcome is unknown, as after any lost connection.
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(StoreError::Stopped));
        }
        if let Err(error) = self.db.flush_async().await {
            tracing::error!(%error, "flushing the store on shutdown failed");
        }
        tracing::info!(
            applied_index = self.machine.applied_index(),
            "raft task stopped"
        );
    }
}
