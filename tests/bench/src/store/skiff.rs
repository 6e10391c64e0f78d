//! The Skiff store, ours: `skiff-store` members opened in this process, each on its
//! own sled directory, joined by an in-process transport. Clients call the `Store`
//! handle directly: no network, no encoding, unlike etcd behind loopback HTTP.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use futures::stream::BoxStream;
use skiff_store::{EventKind, Op, RaftMessage, Store, StoreConfig, Transport, Txn};

use super::workload::{Backend, VALUE_BYTES};

/// Hands each member's Raft messages straight to the addressed member's inbox.
/// `Store::receive` never blocks, as `Transport::send` requires.
#[derive(Default)]
struct InProcess {
    members: RwLock<HashMap<u64, Store>>,
}

impl Transport for InProcess {
    fn send(&self, to: u64, messages: Vec<RaftMessage>) {
        // A member not registered yet is a member not reachable yet: Raft resends.
        if let Some(store) = self.members.read().unwrap().get(&to) {
            store.receive(messages);
        }
    }
}

/// A running group; [`SkiffCluster::stop`] closes every member.
pub struct SkiffCluster {
    stores: Vec<Store>,
    network: Arc<InProcess>,
    _dir: tempfile::TempDir,
}

impl SkiffCluster {
    pub async fn start(size: usize) -> Result<SkiffCluster> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-bench-store-")
            .tempdir()?;
        let ids: Vec<u64> = (1..=size as u64).collect();
        let network = Arc::new(InProcess::default());
        let mut stores = Vec::new();
        for &id in &ids {
            let config = StoreConfig {
                id,
                members: ids.clone(),
                ..StoreConfig::new(dir.path().join(format!("m{id}")))
            };
            let store = if size == 1 {
                Store::open(config).await
            } else {
                Store::open_member(config, network.clone()).await
            }
            .with_context(|| format!("opening store member {id}"))?;
            network.members.write().unwrap().insert(id, store.clone());
            stores.push(store);
        }
        let cluster = SkiffCluster {
            stores,
            network,
            _dir: dir,
        };
        cluster.wait_leader(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    /// Every member agrees on one leader.
    async fn wait_leader(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let leaders: Vec<Option<u64>> = self.stores.iter().map(Store::leader).collect();
            if leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0]) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("no agreed leader within {timeout:?}: {leaders:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn client(&self) -> SkiffClient {
        SkiffClient {
            stores: Arc::new(self.stores.clone()),
            value: Arc::from(vec![b'v'; VALUE_BYTES]),
        }
    }

    pub async fn stop(self) {
        self.network.members.write().unwrap().clear();
        for store in &self.stores {
            store.close().await;
        }
    }
}

#[derive(Clone)]
pub struct SkiffClient {
    stores: Arc<Vec<Store>>,
    value: Arc<[u8]>,
}

impl Backend for SkiffClient {
    fn members(&self) -> usize {
        self.stores.len()
    }

    async fn put(&self, member: usize, key: String) -> Result<()> {
        self.stores[member]
            .txn(Txn::ops(vec![Op::put(key, self.value.to_vec())]))
            .await?;
        Ok(())
    }

    async fn get(&self, member: usize, key: String) -> Result<()> {
        // `get` is linearizable (ReadIndex) by default.
        if self.stores[member].get(&key).await?.is_none() {
            bail!("the store has no value at {key}");
        }
        Ok(())
    }

    async fn watch(
        &self,
        member: usize,
        prefix: String,
    ) -> Result<BoxStream<'static, Result<String>>> {
        let store = &self.stores[member];
        let watch = store.watch(&prefix, store.revision())?;
        Ok(watch
            .filter_map(|event| async move {
                match event {
                    Ok(event) if event.kind == EventKind::Put => Some(Ok(event.kv.key)),
                    Ok(_) => None,
                    Err(err) => Some(Err(err.into())),
                }
            })
            .boxed())
    }
}
