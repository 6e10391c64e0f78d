//! The agent itself: serve HTTP, register the Node, keep it Ready, and keep
//! one pod worker per pod bound to this node.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{Cluster, PodChange};
use crate::config::{AgentConfig, ConfigError};
use crate::driver::{ContainerDriver, error_chain};
use crate::events::EventSink;
use crate::kube_cluster::KubeCluster;
use crate::logs::LogBook;
use crate::metrics::NodeMetrics;
use crate::node::{MachineFacts, heartbeat, node_object};
use crate::pod::stage::StopReason;
use crate::pod::worker::{NodeContext, PodWorker, WorkerCommand};
use crate::ports::PortTable;
use crate::running::RunningTable;
use crate::sources::Allocatable;

/// Longest wait between attempts to register the Node.
const MAX_REGISTER_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid agent configuration")]
    Config(#[from] ConfigError),
    #[error("creating the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("binding the agent's HTTP server to {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("the agent's HTTP server failed")]
    Serve(#[source] io::Error),
}

/// The node agent (kubelet equivalent). Build it, then [`run`](NodeAgent::run) it.
pub struct NodeAgent {
    config: AgentConfig,
    cluster: Arc<dyn Cluster>,
    driver: Arc<dyn ContainerDriver>,
    ports: Arc<PortTable>,
}

impl NodeAgent {
    /// An agent talking to the API server through `client`.
    pub fn new(
        config: AgentConfig,
        client: kube::Client,
        driver: impl ContainerDriver,
    ) -> NodeAgent {
        NodeAgent::with_cluster(config, Arc::new(KubeCluster::new(client)), Arc::new(driver))
    }

    /// An agent over any [`Cluster`] (tests use an in-memory one).
    pub fn with_cluster(
        config: AgentConfig,
        cluster: Arc<dyn Cluster>,
        driver: Arc<dyn ContainerDriver>,
    ) -> NodeAgent {
        NodeAgent {
            config,
            cluster,
            driver,
            ports: Arc::default(),
        }
    }

    /// The node ports of the pods' serving containers, kept up to date while
    /// the agent runs (for the node's routing layer).
    pub fn ports(&self) -> Arc<PortTable> {
        Arc::clone(&self.ports)
    }

    /// Runs until `cancel` fires, then stops every pod's containers and returns.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), AgentError> {
        self.config.validate()?;
        let pods_dir = self.config.data_dir.join("pods");
        tokio::fs::create_dir_all(&pods_dir)
            .await
            .map_err(|source| AgentError::DataDir {
                path: pods_dir.clone(),
                source,
            })?;
        let listener = TcpListener::bind(self.config.listen_addr)
            .await
            .map_err(|source| AgentError::Bind {
                addr: self.config.listen_addr,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| AgentError::Bind {
            addr: self.config.listen_addr,
            source,
        })?;
        let ip = self.config.advertised_ip();
        let node_name = self.config.node_name.clone();
        tracing::info!(node = %node_name, %bound, %ip, "node agent starting");

        let logs = Arc::new(LogBook::new(pods_dir));
        let tracker = TaskTracker::new();
        let shutdown = cancel.clone();
        let running = Arc::new(RunningTable::default());
        let metrics = Arc::new(NodeMetrics::default());
        let router = crate::http::router_with(
            Arc::clone(&logs),
            Arc::clone(&self.ports),
            Some(crate::http::Workloads {
                running: Arc::clone(&running),
                driver: Arc::clone(&self.driver),
                metrics: Arc::clone(&metrics),
            }),
        );
        let server = tracker.spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        });

        let since = Timestamp::now();
        let machine = MachineFacts::gather();
        let node = node_object(&self.config, &machine, ip, bound.port(), since);
        if register(self.cluster.as_ref(), &node, &cancel).await {
            tracker.spawn(heartbeat(
                Arc::clone(&self.cluster),
                node_name.clone(),
                self.config.heartbeat_interval,
                since,
                Arc::clone(&self.driver),
                cancel.clone(),
            ));
            tracker.spawn(
                crate::reclaim::Reclaimer {
                    cluster: Arc::clone(&self.cluster),
                    node_name: node_name.clone(),
                    data_dir: self.config.data_dir.clone(),
                    running: Arc::clone(&running),
                }
                .run(cancel.clone()),
            );
            let context = Arc::new(NodeContext {
                node_name: node_name.clone(),
                host_ip: ip.to_string(),
                cluster: Arc::clone(&self.cluster),
                events: EventSink::start(Arc::clone(&self.cluster), cancel.clone()),
                driver: Arc::clone(&self.driver),
                logs,
                ports: Arc::clone(&self.ports),
                running,
                metrics,
                data_dir: self.config.data_dir.clone(),
                allocatable: Allocatable {
                    cpu_cores: machine.cpus as f64,
                    memory_bytes: machine.memory_kib as f64 * 1024.0,
                },
                shutdown: cancel.clone(),
            });
            PodDirectory::new(context, tracker.clone())
                .run(&cancel)
                .await;
        }

        tracker.close();
        tracker.wait().await;
        tracing::info!(node = %node_name, "node agent stopped");
        match server.await {
            Ok(result) => result.map_err(AgentError::Serve),
            Err(join) => Err(AgentError::Serve(io::Error::other(join))),
        }
    }
}

/// Registers the Node, retrying with a growing delay; false if cancelled first.
async fn register(
    cluster: &dyn Cluster,
    node: &k8s_openapi::api::core::v1::Node,
    cancel: &CancellationToken,
) -> bool {
    let mut delay = Duration::from_secs(1);
    loop {
        match cluster.register_node(node).await {
            Ok(()) => return true,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), retry_in = ?delay, "registering the node failed");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_REGISTER_DELAY);
    }
}

/// The pod workers by pod uid, kept in step with the pod watch.
struct PodDirectory {
    context: Arc<NodeContext>,
    tracker: TaskTracker,
    workers: HashMap<String, mpsc::UnboundedSender<WorkerCommand>>,
    /// The uids seen since the watch began relisting, until the listing ends.
    relisted: Option<HashSet<String>>,
    /// Pods this agent deleted, so a late watch event does not bring them back.
    deleted: HashSet<String>,
    /// Pods this agent evicted: a late watch event from before the eviction must
    /// not start them again (a deletion still finishes them off).
    evicted: HashSet<String>,
    done_tx: mpsc::UnboundedSender<(String, StopReason)>,
    done: mpsc::UnboundedReceiver<(String, StopReason)>,
}

fn is_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

impl PodDirectory {
    fn new(context: Arc<NodeContext>, tracker: TaskTracker) -> PodDirectory {
        let (done_tx, done) = mpsc::unbounded_channel();
        PodDirectory {
            context,
            tracker,
            workers: HashMap::new(),
            relisted: None,
            deleted: HashSet::new(),
            evicted: HashSet::new(),
            done_tx,
            done,
        }
    }

    async fn run(mut self, cancel: &CancellationToken) {
        let mut changes = self.context.cluster.watch_pods(&self.context.node_name);
        let mut watching = true;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                change = changes.next(), if watching => match change {
                    Some(Ok(change)) => self.apply(change),
                    Some(Err(error)) => tracing::warn!(error = %error_chain(&error), "pod watch failed; retrying"),
                    None => {
                        tracing::warn!("pod watch ended; no more pod updates until restart");
                        watching = false;
                    }
                },
                Some((uid, reason)) = self.done.recv() => {
                    self.workers.remove(&uid);
                    match reason {
                        StopReason::Deleted => drop(self.deleted.insert(uid)),
                        StopReason::Evicted => drop(self.evicted.insert(uid)),
                        StopReason::Vanished | StopReason::Shutdown => {}
                    }
                }
            }
        }
        // The workers stop by themselves: their tokens are children of `cancel`.
    }

    fn apply(&mut self, change: PodChange) {
        match change {
            PodChange::Relisting => self.relisted = Some(HashSet::new()),
            PodChange::Applied(pod) => self.applied(*pod),
            PodChange::Deleted(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.deleted.remove(uid);
                    self.evicted.remove(uid);
                    self.send(uid, WorkerCommand::Vanished);
                }
            }
            PodChange::Listed => {
                let Some(listed) = self.relisted.take() else {
                    return;
                };
                let gone: Vec<String> = self
                    .workers
                    .keys()
                    .filter(|uid| !listed.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.send(&uid, WorkerCommand::Vanished);
                }
                self.deleted.retain(|uid| listed.contains(uid));
                self.evicted.retain(|uid| listed.contains(uid));
                // What the driver still holds for pods no longer here can go.
                let driver = Arc::clone(&self.context.driver);
                self.tracker
                    .spawn(async move { driver.retain_pods(&listed).await });
            }
        }
    }

    fn applied(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(listed) = &mut self.relisted {
            listed.insert(uid.clone());
        }
        if self.workers.contains_key(&uid) {
            self.send(&uid, WorkerCommand::Update(Box::new(pod)));
            return;
        }
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let finished = is_terminal(&pod) || self.evicted.contains(&uid);
        if self.deleted.contains(&uid) || (finished && !deleting) {
            // Finished pods are not run again (e.g. after an agent restart).
            return;
        }
        let Some((worker, commands)) = PodWorker::new(&pod, Arc::clone(&self.context)) else {
            tracing::warn!(uid, "ignoring a pod without name or spec");
            return;
        };
        self.workers.insert(uid.clone(), commands);
        let done = self.done_tx.clone();
        self.tracker.spawn(async move {
            let reason = worker.run().await;
            let _ = done.send((uid, reason));
        });
    }

    fn send(&mut self, uid: &str, command: WorkerCommand) {
        if let Some(worker) = self.workers.get(uid)
            && worker.send(command).is_err()
        {
            self.workers.remove(uid);
        }
    }
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
