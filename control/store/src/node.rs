//! The task that owns the Raft node: it ticks, steps messages from peers, proposes,
//! starts ReadIndex requests, and hands each `Ready` to module `ready`.
//!
//! Proposals made on a follower are forwarded to the leader by Raft itself (as
//! `MsgPropose`); the entry carries the proposer's request id, so the proposing member
//! answers its caller when it applies the entry, like every member applies it.
//! Proposals that Raft drops because no leader is known wait here and are proposed
//! again on the next tick; the caller's `request_timeout` bounds the wait.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use raft::prelude::{ConfChange, Message, MessageType, RawNode};
use raft::{ReadOnlyOption, StateRole};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::apply::{AppliedState, Outcome, StateMachine};
use crate::codec::{self, Command, Request};
use crate::logger::raft_logger;
use crate::raft_log::RaftLog;
use crate::shared::Shared;
use crate::transport::Transport;
use crate::{StoreConfig, StoreError};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// The first request id of this run of the member: random, so ids of entries replayed
/// from an earlier run, or proposed by another member, never match a proposer of this
/// one (the fault harness derives it from its seed, one per start of a member).
fn first_request_id(config: &StoreConfig) -> u64 {
    #[cfg(any(test, feature = "sim"))]
    if let Some(seed) = config.sim_seed {
        return crate::sim::Rng::new(seed).next_u64();
    }
    RandomState::new().hash_one((std::process::id(), config.id))
}

/// The fault harness's election timeouts: its generator, their range in ticks
/// (raft-rs's default: the election ticks up to twice that), and the (term, role) for
/// which it last chose one.
#[cfg(any(test, feature = "sim"))]
struct ElectionRng {
    rng: crate::sim::Rng,
    low: u64,
    high: u64,
    chosen_for: (u64, StateRole),
}

/// What the `Store` handle and the transport send to the Raft task.
pub(crate) enum Input {
    /// A write to go through the log.
    Propose(Command, Reply<Outcome>),
    /// Answered once this member has applied everything committed when it asked.
    Read(Reply<()>),
    /// Messages from other members.
    Messages(Vec<Message>),
    TransferLeader(u64),
    /// A membership change to go through the log.
    ChangeMembers(ConfChange, Reply<Outcome>),
}

/// Linearizable reads that share one ReadIndex request.
pub(crate) struct ReadBatch {
    pub ctx: Vec<u8>,
    pub replies: Vec<Reply<()>>,
    /// The commit index the leader confirmed, once known.
    pub index: Option<u64>,
}

pub(crate) struct RaftNode {
    pub raw: RawNode<RaftLog>,
    pub machine: StateMachine,
    pub shared: Arc<Shared>,
    pub transport: Arc<dyn Transport>,
    /// Proposers waiting for their entry to be applied, by request id (ordered, so
    /// failing them at shutdown wakes them in the same order on every run).
    pub pending: BTreeMap<u64, Reply<Outcome>>,
    /// Proposals Raft dropped for want of a leader, to propose again.
    stalled: Vec<(u64, Vec<u8>, Reply<Outcome>)>,
    pub reads: Vec<ReadBatch>,
    next_id: u64,
    ticks: u64,
    heartbeat_ticks: u64,
    pub log_compaction_entries: u64,
    /// The index the log is being compacted up to (a few entries per turn; see
    /// `after_ready`); 0 before the first compaction.
    pub compacting: u64,
    /// Where [`crate::disk::record_durable`] writes.
    pub data_dir: std::path::PathBuf,
    /// A failpoint fired: the task stops where it is, as a crashed process would.
    pub crashed: bool,
    /// Members removed from the group (as applied here): a message from one is
    /// answered with a notice that it was removed.
    pub removed: BTreeSet<u64>,
    /// This member learned it was removed: the task stops (cleanly) after this turn.
    leaving: bool,
    /// Failpoints fire only once the node runs (not while `start` replays the log).
    running: bool,
    #[cfg(any(test, feature = "sim"))]
    failpoints: Option<Arc<crate::sim::Failpoints>>,
    #[cfg(any(test, feature = "sim"))]
    election_rng: Option<ElectionRng>,
}

impl RaftNode {
    /// Loads the log and applies every committed entry the last run left unapplied, so
    /// the store is current when `open` returns. A one-member group also elects itself.
    pub async fn start(
        config: &StoreConfig,
        shared: Arc<Shared>,
        state: AppliedState,
        transport: Arc<dyn Transport>,
    ) -> Result<RaftNode, StoreError> {
        let mut storage = RaftLog::open(&shared.trees, &config.members)?;
        storage
            .check(state.index)
            .map_err(|problem| StoreError::Damaged {
                dir: config.data_dir.display().to_string(),
                problem,
            })?;
        // The apply step runs before the `Ready`'s hard state is written, so a crash in
        // between (or sled persisting the apply transaction first) leaves a commit index
        // below the applied index. What was applied was committed: raise it.
        if storage.hard_state().commit < state.index {
            tracing::info!(
                commit = storage.hard_state().commit,
                applied = state.index,
                "raising the recorded commit index to the applied index"
            );
            storage.set_commit(state.index)?;
        }
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: state.index,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            // A partitioned member must not disrupt the group when it comes back, and
            // a leader cut off from a quorum must step down so it stops serving reads.
            pre_vote: true,
            check_quorum: true,
            read_only_option: ReadOnlyOption::Safe,
            ..raft::Config::default()
        };
        raft_config
            .validate()
            .map_err(StoreError::raft("validating the raft configuration"))?;
        let raw = RawNode::new(&raft_config, storage, &raft_logger())
            .map_err(StoreError::raft("creating the raft node"))?;
        let alone = raw.raft.prs().conf().voters().ids().len() == 1;
        let removed = crate::disk::load_removed(&shared.trees.meta)?;
        let mut node = RaftNode {
            raw,
            machine: StateMachine::new(shared.clone(), state)?,
            shared,
            transport,
            pending: BTreeMap::new(),
            stalled: Vec::new(),
            reads: Vec::new(),
            next_id: first_request_id(config),
            ticks: 0,
            heartbeat_ticks: config.heartbeat_ticks as u64,
            log_compaction_entries: config.log_compaction_entries,
            compacting: 0,
            data_dir: config.data_dir.clone(),
            crashed: false,
            removed: removed.into_iter().collect(),
            leaving: false,
            running: false,
            #[cfg(any(test, feature = "sim"))]
            failpoints: config.failpoints.clone(),
            #[cfg(any(test, feature = "sim"))]
            election_rng: config.sim_seed.map(|seed| ElectionRng {
                rng: crate::sim::Rng::new(seed ^ 0xe1ec_7100),
                low: config.election_ticks as u64,
                high: 2 * config.election_ticks as u64,
                chosen_for: (u64::MAX, StateRole::Follower),
            }),
        };
        node.seed_election_timeout();
        if alone {
            // Alone, this member wins at once; waiting for an election timeout would
            // only delay the first write.
            node.raw
                .campaign()
                .map_err(StoreError::raft("campaigning"))?;
        }
        while node.raw.has_ready() {
            node.handle_ready();
        }
        if alone && node.raw.raft.state != StateRole::Leader {
            return Err(StoreError::raft("electing the only member")(
                raft::Error::ProposalDropped,
            ));
        }
        node.after_ready();
        node.running = true;
        Ok(node)
    }

    /// In the fault harness, replaces the election timeout raft-rs drew from the
    /// thread's random generator (at each change of term or role, which is when it
    /// draws) with one from the run's seed, so a seed replays. No-op elsewhere.
    pub(crate) fn seed_election_timeout(&mut self) {
        #[cfg(any(test, feature = "sim"))]
        if let Some(election) = &mut self.election_rng {
            let raft = &mut self.raw.raft;
            let now = (raft.term, raft.state);
            if election.chosen_for != now {
                election.chosen_for = now;
                let timeout = election.low + election.rng.below(election.high - election.low);
                raft.set_randomized_election_timeout(timeout as usize);
            }
        }
    }

    /// True (and the task is then crashed) if the fault harness armed a crash at
    /// `point`. Always false outside the harness.
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn fail(&mut self, point: crate::sim::FailPoint) -> bool {
        if self.running
            && let Some(failpoints) = &self.failpoints
            && failpoints.hit(point)
        {
            tracing::info!(?point, "failpoint: crashing the raft task");
            self.crashed = true;
        }
        self.crashed
    }

    /// Runs until `cancel` fires or every `Store` handle is gone, then fails whatever
    /// is still waiting with `StoreError::Stopped`.
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        cancel: CancellationToken,
        tick: Duration,
        max_batch: usize,
    ) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            // Biased: a fixed order of branches keeps runs of the fault harness
            // replayable (the ticker is ready once per tick, so inputs never starve it).
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = ticker.tick() => self.tick(),
                received = inputs.recv() => {
                    let Some(input) = received else { break };
                    let mut reads = Vec::new();
                    self.take(input, &mut reads);
                    // Take what else is waiting so one flush covers the whole batch.
                    for _ in 1..max_batch {
                        match inputs.try_recv() {
                            Ok(input) => self.take(input, &mut reads),
                            Err(_) => break,
                        }
                    }
                    if !reads.is_empty() {
                        self.start_read(reads);
                    }
                }
            }
            self.seed_election_timeout();
            while !self.crashed && self.raw.has_ready() {
                self.handle_ready();
            }
            self.seed_election_timeout();
            if self.leaving {
                cancel.cancel();
                break;
            }
            if self.crashed {
                // Gone as a crashed process is: no flush, nothing more sent.
                cancel.cancel();
                break;
            }
            self.after_ready();
        }
        self.stop(inputs).await;
    }

    fn take(&mut self, input: Input, reads: &mut Vec<Reply<()>>) {
        match input {
            Input::Propose(command, reply) => self.propose(command, reply),
            Input::Read(reply) => reads.push(reply),
            Input::Messages(messages) => {
                for message in messages {
                    if self.removed.contains(&message.from) {
                        self.tell_removed(message.from);
                        continue;
                    }
                    if message.get_msg_type() == MessageType::MsgUnreachable
                        && message.get_context() == crate::disk::REMOVED_NOTICE
                    {
                        self.learn_removed(message.from);
                        continue;
                    }
                    if let Err(error) = self.raw.step(message) {
                        tracing::debug!(%error, "ignoring a raft message");
                    }
                }
            }
            // On a follower Raft forwards the request to the leader it knows.
            Input::TransferLeader(to) => self.raw.transfer_leader(to),
            Input::ChangeMembers(change, reply) => self.change_members(change, reply),
        }
    }

    /// Answers a message from a member removed from the group: it may have been down
    /// when the removal was committed, and it would otherwise never hear of it (the
    /// group sends it nothing) and go on campaigning and serving stale reads.
    fn tell_removed(&mut self, to: u64) {
        tracing::debug!(member = to, "telling a removed member it was removed");
        let mut notice = Message::default();
        notice.set_msg_type(MessageType::MsgUnreachable);
        notice.from = self.raw.raft.id;
        notice.to = to;
        notice.context = crate::disk::REMOVED_NOTICE.to_vec().into();
        self.transport.send(to, vec![notice]);
    }

    /// Another member says this one was removed from the group (only a member that
    /// applied the committed removal says so, and ids are never given out again):
    /// record it, so a restart refuses to serve, and stop.
    fn learn_removed(&mut self, from: u64) {
        let id = self.raw.raft.id;
        tracing::warn!(
            member = id,
            told_by = from,
            "this member was removed from the group while it was away; it stops serving"
        );
        let meta = &self.shared.trees.meta;
        let recorded = meta
            .insert(crate::disk::removed_key(id), &[])
            .and_then(|_| meta.remove(crate::disk::member_key(id)));
        if let Err(error) = recorded {
            crate::disk::fatal("recording this member's removal", &error);
        }
        match crate::disk::load_members(meta) {
            Ok(members) => self.shared.publish_members(members),
            Err(error) => crate::disk::fatal("reading the member list", &error),
        }
        self.leaving = true;
    }

    fn tick(&mut self) {
        self.raw.tick();
        self.ticks += 1;
        if self.ticks.is_multiple_of(self.heartbeat_ticks) {
            self.pending.retain(|_, reply| !reply.is_closed());
            self.retry_stalled();
            self.retry_reads();
        }
    }

    fn propose(&mut self, command: Command, reply: Reply<Outcome>) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let data = codec::encode_request(&Request { id, command });
        self.propose_data(id, data, reply);
    }

    fn propose_data(&mut self, id: u64, data: Vec<u8>, reply: Reply<Outcome>) {
        if reply.is_closed() {
            return;
        }
        match self.raw.propose(Vec::new(), data.clone()) {
            Ok(()) => {
                self.pending.insert(id, reply);
            }
            // Never entered the log, so proposing the same request again is safe.
            Err(raft::Error::ProposalDropped) => self.stalled.push((id, data, reply)),
            Err(source) => {
                // The receiver may have given up waiting; nothing else to tell.
                let _ = reply.send(Err(StoreError::Raft {
                    context: "proposing a write",
                    source,
                }));
            }
        }
    }

    /// Proposes a membership change; the entry's context is the request id, so the
    /// apply step answers `reply`. Raft drops it without a leader, and the leader turns
    /// it into an empty entry while another change is pending: then `reply` waits for
    /// its timeout, and the caller may ask again.
    fn change_members(&mut self, change: ConfChange, reply: Reply<Outcome>) {
        if self.raw.raft.leader_id == raft::INVALID_ID {
            let _ = reply.send(Err(StoreError::Membership(
                "no leader is known; try again once one is elected".into(),
            )));
            return;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        match self
            .raw
            .propose_conf_change(id.to_be_bytes().to_vec(), change)
        {
            Ok(()) => {
                self.pending.insert(id, reply);
            }
            Err(error) => {
                let _ = reply.send(Err(StoreError::Membership(error.to_string())));
            }
        }
    }

    fn retry_stalled(&mut self) {
        if self.raw.raft.leader_id == raft::INVALID_ID {
            return;
        }
        for (id, data, reply) in std::mem::take(&mut self.stalled) {
            self.propose_data(id, data, reply);
        }
    }

    fn start_read(&mut self, replies: Vec<Reply<()>>) {
        let ctx = self.next_id.to_be_bytes().to_vec();
        self.next_id = self.next_id.wrapping_add(1);
        self.raw.read_index(ctx.clone());
        self.reads.push(ReadBatch {
            ctx,
            replies,
            index: None,
        });
    }

    /// Asks again for reads still without an index: Raft drops a ReadIndex request
    /// when no leader is known or the leader has not committed in its term yet.
    fn retry_reads(&mut self) {
        self.reads.retain_mut(|batch| {
            batch.replies.retain(|reply| !reply.is_closed());
            !batch.replies.is_empty()
        });
        let waiting: Vec<Vec<u8>> = self
            .reads
            .iter()
            .filter(|batch| batch.index.is_none())
            .map(|batch| batch.ctx.clone())
            .collect();
        for ctx in waiting {
            self.raw.read_index(ctx);
        }
    }

    /// Records the hard state as flushed; call only right after a flush.
    pub fn record_durable(&self) {
        let hard_state = self.raw.store().hard_state();
        if let Err(error) = crate::disk::record_durable(&self.data_dir, hard_state) {
            tracing::warn!(%error, "recording the flushed raft state failed");
        }
    }

    async fn stop(mut self, mut inputs: mpsc::Receiver<Input>) {
        inputs.close();
        while let Ok(input) = inputs.try_recv() {
            match input {
                Input::Propose(_, reply) | Input::ChangeMembers(_, reply) => {
                    let _ = reply.send(Err(StoreError::Stopped));
                }
                Input::Read(reply) => {
                    let _ = reply.send(Err(StoreError::Stopped));
                }
                Input::Messages(_) | Input::TransferLeader(_) => {}
            }
        }
        // These entries may still be in the log and be applied on the next open: to
        // their proposers the outcome is unknown, as after any lost connection.
        for (_, reply) in std::mem::take(&mut self.pending) {
            let _ = reply.send(Err(StoreError::Stopped));
        }
        for (_, _, reply) in self.stalled.drain(..) {
            let _ = reply.send(Err(StoreError::Stopped));
        }
        for batch in self.reads.drain(..) {
            for reply in batch.replies {
                let _ = reply.send(Err(StoreError::Stopped));
            }
        }
        if self.crashed {
            return;
        }
        // Blocking like every flush of this task (see `flush`): awaiting sled's
        // flush on its own thread would let a paused clock jump meanwhile.
        self.flush();
        self.record_durable();
        tracing::info!(
            applied_index = self.machine.applied_index(),
            "raft task stopped"
        );
    }
}
