//! The `Store` handle: opens the data directory, starts the Raft task, and answers
//! reads from the applied state and writes through the log.

use std::sync::Arc;

use raft::prelude::{ConfChange, ConfChangeType};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::apply::{AppliedState, Outcome};
use crate::codec::{self, Command};
use crate::disk::{self, Trees};
use crate::history;
use crate::node::{Input, RaftNode};
use crate::shared::Shared;
use crate::transport::{NoPeers, RaftMessage, Transport};
use crate::watch::{self, Watch};
use crate::{
    KeyValue, Member, RangeOptions, RangeResponse, Revision, StoreConfig, StoreError, Txn,
    TxnResponse, mvcc,
};

/// A handle to an open store; clones share it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// How current a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Sees every write acknowledged before the read started, on any member: the
    /// member confirms the leader's commit index (Raft ReadIndex) and waits until it
    /// has applied that far.
    #[default]
    Linearizable,
    /// This member's applied state as it is: no round trip, possibly stale on a
    /// follower or a deposed leader, never going backwards on one member.
    Serializable,
}

struct Inner {
    id: u64,
    shared: Arc<Shared>,
    inputs: mpsc::Sender<Input>,
    request_timeout: std::time::Duration,
    cancel: CancellationToken,
    tracker: TaskTracker,
    watch_buffer: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) a one-member store in `config.data_dir`. Entries committed
    /// but not applied by the previous run are applied before this returns. A config
    /// naming other members needs [`Store::open_member`].
    pub async fn open(config: StoreConfig) -> Result<Store, StoreError> {
        if config.members.len() > 1 {
            return Err(StoreError::Config(format!(
                "members {:?} name other members: open them with a transport",
                config.members
            )));
        }
        Store::open_member(config, Arc::new(NoPeers)).await
    }

    /// Opens (or creates) member `config.id` of a group, sending Raft messages through
    /// `transport`; messages for this member go to [`Store::receive`]. Returns before a
    /// leader is elected: requests wait for one, up to `request_timeout`.
    pub async fn open_member(
        config: StoreConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Store, StoreError> {
        config.validate()?;
        let trees = Trees::open(&config.data_dir)?;
        disk::check_durable(&trees, &config.data_dir)?;
        disk::bootstrap(&trees, &config)?;
        if disk::load_removed(&trees.meta)?.contains(&config.id) {
            return Err(StoreError::Membership(format!(
                "member {} was removed from its group and cannot serve again; to rejoin, \
                 start it with a new data directory and join the group as a new member",
                config.id
            )));
        }
        let state = AppliedState::load(&trees.meta)?;
        let members = disk::load_members(&trees.meta)?;
        let shared = Arc::new(Shared::new(trees, state.revision, state.compacted, members));
        let node = RaftNode::start(&config, shared.clone(), state, transport).await?;

        let (inputs, receiver) = mpsc::channel(config.max_batch * 4);
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(node.run(
            receiver,
            cancel.clone(),
            config.tick_interval,
            config.max_batch,
        ));
        tracing::info!(
            data_dir = %config.data_dir.display(),
            revision = shared.revision(),
            compacted = shared.compacted(),
            "store opened"
        );
        Ok(Store {
            inner: Arc::new(Inner {
                id: config.id,
                shared,
                inputs,
                request_timeout: config.request_timeout,
                cancel,
                tracker,
                watch_buffer: config.watch_buffer,
            }),
        })
    }

    /// The latest applied revision. An empty store is at revision 1, as in etcd, so
    /// the first write makes revision 2.
    pub fn revision(&self) -> Revision {
        self.inner.shared.revision()
    }

    /// The revision at or below which history has been dropped (0 if never compacted).
    pub fn compacted_revision(&self) -> Revision {
        self.inner.shared.compacted()
    }

    /// True once the store was closed or its Raft task ended: requests fail with
    /// `Stopped`.
    pub fn is_stopped(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// This member's Raft id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The member this one last knew to lead, if any.
    pub fn leader(&self) -> Option<u64> {
        self.inner.shared.leader()
    }

    /// Hands Raft messages from another member to this one. Never blocks: if the Raft
    /// task is this far behind, the messages are dropped as a lossy network would.
    pub fn receive(&self, messages: Vec<RaftMessage>) {
        if self
            .inner
            .inputs
            .try_send(Input::Messages(messages))
            .is_err()
        {
            tracing::debug!(
                member = self.inner.id,
                "raft inbox full or closed; dropping messages"
            );
        }
    }

    /// Asks the leader (through this member, which forwards the request if it follows)
    /// to hand leadership to member `to`. Raft gives up the transfer if `to` does not
    /// catch up within an election timeout; watch [`Store::leader`] for the outcome.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), StoreError> {
        self.ensure_running()?;
        self.inner
            .inputs
            .send(Input::TransferLeader(to))
            .await
            .map_err(|_| StoreError::Stopped)
    }

    /// The group's members as this member has applied them (names and peer addresses
    /// as recorded when each was added; empty for in-process groups).
    pub fn members(&self) -> Vec<Member> {
        self.inner.shared.members().borrow().clone()
    }

    /// The ids of members removed from the group (as applied here); they are never
    /// given to a new member.
    pub fn removed_members(&self) -> Result<Vec<u64>, StoreError> {
        disk::load_removed(&self.inner.shared.trees.meta)
    }

    /// [`Store::members`], changing as membership changes are applied.
    pub fn watch_members(&self) -> tokio::sync::watch::Receiver<Vec<Member>> {
        self.inner.shared.members()
    }

    /// Adds `member` to the group as a voter, through the log; returns the members
    /// once the change is applied here. Start the new member (with an empty `members`
    /// list) before or after: the leader brings it up to date with a snapshot.
    pub async fn add_member(&self, member: Member) -> Result<Vec<Member>, StoreError> {
        if member.id == 0 {
            return Err(StoreError::Membership("member id 0 is not allowed".into()));
        }
        if self.members().iter().any(|m| m.id == member.id) {
            return Err(StoreError::Membership(format!(
                "member {} is already in the group",
                member.id
            )));
        }
        if self.removed_members()?.contains(&member.id) {
            return Err(StoreError::Membership(format!(
                "member id {} belonged to a removed member; ids are not given out again",
                member.id
            )));
        }
        let mut change = ConfChange::default();
        change.set_change_type(ConfChangeType::AddNode);
        change.node_id = member.id;
        change.context = serde_json::to_vec(&member)
            .expect("a member record always encodes")
            .into();
        self.change_members(change).await
    }

    /// Removes member `id` from the group through the log; returns the members once
    /// the change is applied here. The removed member stops hearing from the group.
    pub async fn remove_member(&self, id: u64) -> Result<Vec<Member>, StoreError> {
        if !self.members().iter().any(|m| m.id == id) {
            return Err(StoreError::Membership(format!(
                "member {id} is not in the group"
            )));
        }
        let mut change = ConfChange::default();
        change.set_change_type(ConfChangeType::RemoveNode);
        change.node_id = id;
        self.change_members(change).await
    }

    async fn change_members(&self, change: ConfChange) -> Result<Vec<Member>, StoreError> {
        self.ensure_running()?;
        match self
            .request("a membership change", |reply| {
                Input::ChangeMembers(change, reply)
            })
            .await?
        {
            Outcome::Members(members) => Ok(members),
            _ => unreachable!("a membership entry is answered with the members"),
        }
    }

    /// The latest value of `key`, linearizable.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.get_with(key, ReadConsistency::Linearizable).await
    }

    /// The latest value of `key` as of `consistency`.
    pub async fn get_with(
        &self,
        key: &str,
        consistency: ReadConsistency,
    ) -> Result<Option<KeyValue>, StoreError> {
        self.read_barrier(consistency).await?;
        let shared = &self.inner.shared;
        let _gate = shared.read_gate();
        shared
            .trees
            .kv
            .get(key.as_bytes())
            .map_err(StoreError::sled("reading a key"))?
            .map(|bytes| Ok(codec::decode_kv(&bytes)?.into_key_value(key.to_owned())))
            .transpose()
    }

    /// All live keys starting with `prefix`, sorted by key, plus the revision they were
    /// read at; linearizable.
    pub async fn range(&self, prefix: &str) -> Result<RangeResponse, StoreError> {
        self.range_with(prefix, ReadConsistency::Linearizable).await
    }

    /// [`Store::range`] as of `consistency`.
    pub async fn range_with(
        &self,
        prefix: &str,
        consistency: ReadConsistency,
    ) -> Result<RangeResponse, StoreError> {
        let options = RangeOptions {
            consistency,
            ..RangeOptions::default()
        };
        self.range_page(prefix, &options).await
    }

    /// Keys starting with `prefix`, sorted, as of `options`: at an older revision, from a
    /// start key, at most a limit of them (module `history` rebuilds older states).
    pub async fn range_page(
        &self,
        prefix: &str,
        options: &RangeOptions,
    ) -> Result<RangeResponse, StoreError> {
        self.read_barrier(options.consistency).await?;
        let shared = &self.inner.shared;
        let _gate = shared.read_gate();
        history::range(
            &shared.trees,
            shared.revision(),
            shared.compacted(),
            prefix,
            options,
        )
    }

    /// Runs `txn` through the Raft log and returns once it is applied.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        mvcc::validate(&txn)?;
        match self.propose(Command::Txn(txn)).await? {
            Outcome::Txn(response) => Ok(response),
            _ => unreachable!("a txn entry is answered with a txn outcome"),
        }
    }

    /// Events with revision > `after` for keys starting with `prefix`: first the
    /// history, then live events, in revision order with no gap and no duplicate.
    /// Fails at once with `Compacted` if `after` is below the compacted revision; the
    /// stream ends with that error if compaction overtakes a slow reader.
    pub fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        self.ensure_running()?;
        let compacted = self.inner.shared.compacted();
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        Ok(watch::spawn(
            self.inner.shared.clone(),
            prefix.to_owned(),
            after,
            self.inner.watch_buffer,
            self.inner.cancel.clone(),
            &self.inner.tracker,
        ))
    }

    /// Drops history at or below `revision`; watches from before it then fail with
    /// `Compacted`. Compacting at or below the current compacted revision does nothing.
    pub async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let current = self.revision();
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        match self.propose(Command::Compact(revision)).await? {
            Outcome::Compacted => Ok(()),
            _ => unreachable!("a compact entry is answered with a compact outcome"),
        }
    }

    /// Stops the Raft task and the watches and flushes to disk. Proposals still in
    /// flight fail with `Stopped` (they may yet be applied on the next open). The data
    /// directory is unlocked once every clone of this handle is dropped.
    pub async fn close(&self) {
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    #[cfg(test)]
    pub(crate) fn inner_shared(&self) -> Arc<Shared> {
        self.inner.shared.clone()
    }

    fn ensure_running(&self) -> Result<(), StoreError> {
        if self.inner.cancel.is_cancelled() {
            Err(StoreError::Stopped)
        } else {
            Ok(())
        }
    }

    async fn read_barrier(&self, consistency: ReadConsistency) -> Result<(), StoreError> {
        self.ensure_running()?;
        if consistency == ReadConsistency::Serializable {
            return Ok(());
        }
        self.request("a linearizable read", Input::Read).await
    }

    async fn propose(&self, command: Command) -> Result<Outcome, StoreError> {
        self.ensure_running()?;
        self.request("a write", |reply| Input::Propose(command, reply))
            .await
    }

    /// Sends an input to the Raft task and waits for its answer, at most
    /// `request_timeout`.
    async fn request<T>(
        &self,
        what: &'static str,
        input: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Input,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            self.inner
                .inputs
                .send(input(reply))
                .await
                .map_err(|_| StoreError::Stopped)?;
            answer.await.map_err(|_| StoreError::Stopped)?
        };
        let after = self.inner.request_timeout;
        tokio::time::timeout(after, exchange)
            .await
            .map_err(|_| StoreError::Timeout { what, after })?
    }
}
