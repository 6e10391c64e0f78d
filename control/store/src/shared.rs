//! What the apply step publishes and readers (get, range, watch) read.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::disk::Trees;
use crate::{Member, Revision};

pub(crate) struct Shared {
    pub trees: Trees,
    /// Held for writing while a batch of entries is applied and its revision published,
    /// and for reading by `get`/`range`: sled iterators may otherwise see half of a
    /// multi-key transaction, and a range must match the revision it reports.
    gate: RwLock<()>,
    /// The latest applied revision; watchers wait on changes to it.
    revision: watch::Sender<Revision>,
    /// History at or below this revision is gone. Raised *before* events are removed,
    /// so a watcher that re-checks it after reading never mistakes a hole for quiet.
    compacted: AtomicI64,
    /// The member this one last heard lead (0: none known).
    leader: AtomicU64,
    /// The group's members as this member has applied them.
    members: watch::Sender<Vec<Member>>,
}

impl Shared {
    pub fn new(
        trees: Trees,
        revision: Revision,
        compacted: Revision,
        members: Vec<Member>,
    ) -> Shared {
        Shared {
            trees,
            gate: RwLock::new(()),
            revision: watch::Sender::new(revision),
            compacted: AtomicI64::new(compacted),
            leader: AtomicU64::new(0),
            members: watch::Sender::new(members),
        }
    }

    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Revision> {
        self.revision.subscribe()
    }

    pub fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::SeqCst)
    }

    pub fn leader(&self) -> Option<u64> {
        Some(self.leader.load(Ordering::SeqCst)).filter(|id| *id != 0)
    }

    pub fn set_leader(&self, id: u64) {
        self.leader.store(id, Ordering::SeqCst);
    }

    pub fn members(&self) -> watch::Receiver<Vec<Member>> {
        self.members.subscribe()
    }

    /// Called after a membership change or snapshot installation is on disk.
    pub fn publish_members(&self, members: Vec<Member>) {
        self.members.send_if_modified(|current| {
            let changed = *current != members;
            *current = members;
            changed
        });
    }

    pub fn read_gate(&self) -> RwLockReadGuard<'_, ()> {
        // A poisoned gate only means a reader panicked; the data it guards is in sled.
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write_gate(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the apply step with the write gate held.
    pub fn publish(&self, revision: Revision, compacted: Revision) {
        self.compacted.fetch_max(compacted, Ordering::SeqCst);
        self.revision.send_if_modified(|current| {
            let changed = *current != revision;
            *current = revision;
            changed
        });
    }
}
