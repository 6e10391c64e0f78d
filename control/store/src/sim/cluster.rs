//! A group of members in one process over a [`Network`], each in its own data
//! directory, which survives crashes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Failpoints, Faults, Network};
use crate::{Member, Store, StoreConfig, StoreError};

pub struct Cluster {
    pub ids: Vec<u64>,
    pub network: Arc<Network>,
    dirs: HashMap<u64, tempfile::TempDir>,
    /// Each member's failpoints; they outlive restarts.
    pub failpoints: HashMap<u64, Arc<Failpoints>>,
    /// Members started after the group (by [`Cluster::join`]): they open with an empty
    /// member list and wait for the leader's snapshot.
    joined: Vec<u64>,
    base: StoreConfig,
    seed: u64,
    /// How many times each member has been started: each start gets its own seed
    /// (request ids must not repeat those of an earlier run of the member).
    starts: std::sync::Mutex<HashMap<u64, u64>>,
}

fn data_dir() -> Result<tempfile::TempDir, StoreError> {
    // tmpfs when there is one: fsync is then cheap and seeds run fast.
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .map_err(|e| StoreError::Config(format!("creating a data dir: {e}")))
}

impl Cluster {
    /// Starts `size` members with ids 1..=size. `base` supplies timing and limits.
    pub async fn start(
        size: u64,
        seed: u64,
        faults: Faults,
        base: StoreConfig,
    ) -> Result<Cluster, StoreError> {
        let ids: Vec<u64> = (1..=size).collect();
        let mut dirs = HashMap::new();
        for id in &ids {
            dirs.insert(*id, data_dir()?);
        }
        let cluster = Cluster {
            ids: ids.clone(),
            network: Network::new(seed, faults),
            failpoints: ids.iter().map(|id| (*id, Arc::default())).collect(),
            dirs,
            joined: Vec::new(),
            base,
            seed,
            starts: Default::default(),
        };
        for id in cluster.ids.clone() {
            cluster.restart(id).await?;
        }
        Ok(cluster)
    }

    /// Starts member `id` in a new data directory with an empty member list, as a
    /// member added to the running group (by [`Store::add_member`]) starts.
    pub async fn join(&mut self, id: u64) -> Result<(), StoreError> {
        self.dirs.insert(id, data_dir()?);
        self.failpoints.insert(id, Arc::default());
        self.joined.push(id);
        self.ids.push(id);
        self.restart(id).await
    }

    pub fn config(&self, id: u64) -> StoreConfig {
        let initial: Vec<u64> = self
            .ids
            .iter()
            .copied()
            .filter(|id| !self.joined.contains(id))
            .collect();
        StoreConfig {
            id,
            member_info: if self.joined.contains(&id) {
                Vec::new()
            } else {
                initial
                    .iter()
                    .map(|id| Member {
                        id: *id,
                        name: format!("n{id}"),
                        peer_addr: String::new(),
                    })
                    .collect()
            },
            members: if self.joined.contains(&id) {
                Vec::new()
            } else {
                initial
            },
            data_dir: self.dirs[&id].path().join("store"),
            failpoints: self.failpoints.get(&id).cloned(),
            ..self.base.clone()
        }
    }

    /// The running member `id`, if it is up (a member a failpoint crashed is not).
    pub fn store(&self, id: u64) -> Option<Store> {
        self.network.member(id).filter(|store| !store.is_stopped())
    }

    pub fn running(&self) -> Vec<u64> {
        self.ids
            .iter()
            .copied()
            .filter(|id| self.store(*id).is_some())
            .collect()
    }

    /// Stops member `id` between two Raft `Ready`s: in-flight requests and messages
    /// are lost, the data directory stays.
    pub async fn crash(&self, id: u64) {
        if let Some(store) = self.network.detach(id) {
            store.close().await;
        }
    }

    /// Opens member `id` from its data directory (no-op if it is up).
    pub async fn restart(&self, id: u64) -> Result<(), StoreError> {
        if self.store(id).is_some() {
            return Ok(());
        }
        // Crashed by a failpoint: still attached, its task gone.
        self.crash(id).await;
        let mut attempts = 0;
        let start = {
            let mut starts = self.starts.lock().unwrap_or_else(|e| e.into_inner());
            let count = starts.entry(id).or_default();
            *count += 1;
            *count
        };
        let mut mix = super::Rng::new(self.seed ^ (id << 32) ^ start);
        let config = StoreConfig {
            sim_seed: Some(mix.next_u64()),
            ..self.config(id)
        };
        loop {
            let transport = self.network.transport(id);
            match Store::open_member(config.clone(), transport).await {
                Ok(store) => {
                    self.network.attach(store);
                    return Ok(());
                }
                // A client of the crashed member may still hold its handle, and with
                // it sled's directory lock, for a moment.
                Err(StoreError::Sled { .. }) if attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Restarts every member, heals the network and stops injecting faults (failpoints
    /// included).
    pub async fn recover(&self) -> Result<(), StoreError> {
        for failpoints in self.failpoints.values() {
            failpoints.disarm();
        }
        self.network.heal();
        self.network.set_faults(Faults::none());
        for id in self.ids.clone() {
            self.restart(id).await?;
        }
        Ok(())
    }

    pub async fn shutdown(&self) {
        for id in self.ids.clone() {
            self.crash(id).await;
        }
    }
}
