//! The Skiff scheduler: binds each pending pod to a node, as kube-scheduler
//! does.
//!
//! It watches pods (those without `spec.nodeName` are its queue, the rest
//! count against their node), nodes and RuntimeClasses. Each decision is the
//! pure [`plan::decide`]: filters (node unschedulable, taints and
//! tolerations, `nodeSelector` and node affinity, the RuntimeClass handler,
//! the node a bound local PersistentVolume is pinned to,
//! host ports, resource requests against allocatable, topology spread, pod
//! affinity and anti-affinity), then scores (least allocated, balanced,
//! preferred affinities, PreferNoSchedule taints, spreading), and when no
//! node fits, preemption of lower-priority pods. Pods are taken in priority
//! order; a chosen node holds the pod at once (it is "assumed") while the
//! binding is sent through `pods/binding`, many at a time. Pods that fit
//! nowhere get a `FailedScheduling` event in kube-scheduler's words and are
//! retried when nodes or pods change, and every few seconds.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! let cancel = tokio_util::sync::CancellationToken::new();
//! skiff_scheduler::Scheduler::new(client).run(cancel).await.unwrap();
//! # }
//! ```

pub mod cluster;
mod events;
pub mod facts;
pub mod filter;
pub mod labels;
pub mod plan;
mod queue;
mod score;
mod volumes;
mod writes;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use cluster::Cluster;
pub use facts::{NodeFacts, PodInfo};
pub use plan::{Decision, decide};

use queue::Queue;
use writes::{Outcome, Writer};

/// The name pods ask for in `spec.schedulerName`.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// How the scheduler paces itself.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Bindings in flight at once.
    pub bind_concurrency: usize,
    /// How often pods that fit nowhere are tried again without a change.
    pub retry: Duration,
    /// Pods decided per turn of the loop before watch events are read again.
    pub batch: usize,
}

impl Default for SchedulerConfig {
    fn default() -> SchedulerConfig {
        SchedulerConfig {
            // kube-scheduler binds each pod in its own goroutine; many
            // bindings at once let the store put them in one Raft batch and
            // one fsync.
            bind_concurrency: 128,
            retry: Duration::from_secs(5),
            batch: 64,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("the scheduler configuration is invalid: {0}")]
    Config(&'static str),
}

impl SchedulerConfig {
    pub fn validate(&self) -> Result<(), SchedulerError> {
        if self.bind_concurrency == 0 {
            return Err(SchedulerError::Config(
                "bind_concurrency must be at least 1",
            ));
        }
        if self.batch == 0 {
            return Err(SchedulerError::Config("batch must be at least 1"));
        }
        Ok(())
    }
}

pub struct Scheduler {
    client: kube::Client,
    config: SchedulerConfig,
}

type Key = (String, String);

/// The loop's state: the cluster picture, the queue, and what is in flight.
#[derive(Default)]
struct State {
    cluster: Cluster,
    queue: Queue,
    /// Pods placed by this scheduler whose binding the watch has not shown
    /// yet; a stale "pending" event for them is ignored.
    assumed: HashSet<Key>,
    /// The last FailedScheduling message per pod, so a retry that fails the
    /// same way does not record the same event again.
    reported: HashMap<Key, String>,
}

impl Scheduler {
    pub fn new(client: kube::Client) -> Scheduler {
        Scheduler::with_config(client, SchedulerConfig::default())
    }

    pub fn with_config(client: kube::Client, config: SchedulerConfig) -> Scheduler {
        Scheduler { client, config }
    }

    /// Schedule until cancelled.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), SchedulerError> {
        self.config.validate()?;
        let client = self.client.clone();
        let mut pod_events =
            watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).boxed();
        let mut node_events =
            watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).boxed();
        let mut class_events = watcher(
            Api::<RuntimeClass>::all(client.clone()),
            watcher::Config::default(),
        )
        .boxed();
        let mut budget_events = watcher(
            Api::<PodDisruptionBudget>::all(client.clone()),
            watcher::Config::default(),
        )
        .boxed();
        let permits = Arc::new(Semaphore::new(self.config.bind_concurrency));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
        let (events, event_writer) = events::Recorder::new(client.clone());
        let events_cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = events_cancel.cancelled() => {}
                _ = event_writer => {}
            }
        });
        let writer = Writer::new(client, done_tx, events);
        let mut state = State::default();
        let mut retry = tokio::time::interval(self.config.retry);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                event = pod_events.next() => match event {
                    Some(Ok(event)) => state.pod_event(event),
                    Some(Err(err)) => watch_error("pod", err).await,
                    None => return Ok(()),
                },
                event = node_events.next() => match event {
                    Some(Ok(event)) => state.node_event(event),
                    Some(Err(err)) => watch_error("node", err).await,
                    None => return Ok(()),
                },
                event = class_events.next() => match event {
                    Some(Ok(event)) => state.class_event(event),
                    Some(Err(err)) => watch_error("runtimeclass", err).await,
                    None => return Ok(()),
                },
                event = budget_events.next() => match event {
                    Some(Ok(event)) => state.budget_event(event),
                    Some(Err(err)) => watch_error("poddisruptionbudget", err).await,
                    None => return Ok(()),
                },
                Some(outcome) = done_rx.recv() => state.outcome(outcome),
                _ = retry.tick() => state.queue.unpark_all(),
                _ = std::future::ready(()), if state.queue.has_active() && permits.available_permits() > 0 => {
                    state.schedule_batch(&self.client, &writer, &permits, self.config.batch).await;
                }
            }
        }
    }
}

async fn watch_error(kind: &str, err: watcher::Error) {
    tracing::warn!(%err, kind, "watch error; retrying");
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Pods this scheduler should place: ours by name, unbound, not being deleted.
fn wants_us(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let scheduler = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(SCHEDULER_NAME);
    scheduler == SCHEDULER_NAME
        && node_of(pod).is_none()
        && pod.metadata.deletion_timestamp.is_none()
        && !finished(pod)
        && spec
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_none_or(|g| g.is_empty())
}

impl State {
    fn pod_event(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => {
                // A relist: the picture is rebuilt from what follows.
                let nodes: Vec<NodeFacts> = self
                    .cluster
                    .known_nodes()
                    .map(|n| n.facts.clone())
                    .collect();
                let classes = std::mem::take(&mut self.cluster.runtime_classes);
                self.cluster = Cluster::default();
                self.cluster.runtime_classes = classes;
                for facts in nodes {
                    self.cluster.upsert_node(facts);
                }
                self.queue.clear();
                self.assumed.clear();
            }
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => self.note(&pod),
            watcher::Event::Delete(pod) => {
                let info = PodInfo::from_pod(&pod);
                let key = info.key();
                self.queue.remove(&key);
                self.assumed.remove(&key);
                self.cluster.clear_nomination(&key);
                if self.cluster.unplace(&key.0, &key.1).is_some() {
                    self.queue.unpark_all();
                }
            }
            watcher::Event::InitDone => {}
        }
    }

    fn note(&mut self, pod: &Pod) {
        let info = PodInfo::from_pod(pod);
        let key = info.key();
        match node_of(pod) {
            Some(node) if !finished(pod) => {
                self.queue.remove(&key);
                self.assumed.remove(&key);
                self.cluster.place(node, Arc::new(info));
            }
            Some(_) => {
                self.queue.remove(&key);
                self.assumed.remove(&key);
                if self.cluster.unplace(&key.0, &key.1).is_some() {
                    self.queue.unpark_all();
                }
            }
            None if self.assumed.contains(&key) => {}
            None if wants_us(pod) => self.queue.upsert(Arc::new(info)),
            None => {
                self.queue.remove(&key);
                self.cluster.clear_nomination(&key);
            }
        }
    }

    fn node_event(&mut self, event: watcher::Event<Node>) {
        match event {
            watcher::Event::Init | watcher::Event::InitDone => {}
            watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
                let facts = NodeFacts::from_node(&node);
                let changed = self
                    .cluster
                    .node(&facts.name)
                    .is_none_or(|old| !same_for_scheduling(&old.facts, &facts));
                self.cluster.upsert_node(facts);
                if changed {
                    self.queue.unpark_all();
                }
            }
            watcher::Event::Delete(node) => {
                self.cluster
                    .remove_node(node.metadata.name.as_deref().unwrap_or_default());
            }
        }
    }

    fn class_event(&mut self, event: watcher::Event<RuntimeClass>) {
        let classes = &mut self.cluster.runtime_classes;
        match event {
            watcher::Event::Init => classes.clear(),
            watcher::Event::InitDone => {}
            watcher::Event::Apply(class) | watcher::Event::InitApply(class) => {
                let name = class.metadata.name.clone().unwrap_or_default();
                classes.insert(name, cluster::RuntimeClassInfo::from_class(&class));
                self.queue.unpark_all();
            }
            watcher::Event::Delete(class) => {
                classes.remove(class.metadata.name.as_deref().unwrap_or_default());
            }
        }
    }

    fn budget_event(&mut self, event: watcher::Event<PodDisruptionBudget>) {
        let budgets = &mut self.cluster.budgets;
        let key = |pdb: &PodDisruptionBudget| {
            (
                pdb.metadata.namespace.clone().unwrap_or_default(),
                pdb.metadata.name.clone().unwrap_or_default(),
            )
        };
        match event {
            watcher::Event::Init => budgets.clear(),
            watcher::Event::InitDone => {}
            watcher::Event::Apply(pdb) | watcher::Event::InitApply(pdb) => {
                budgets.insert(key(&pdb), cluster::Budget::from_pdb(&pdb));
            }
            watcher::Event::Delete(pdb) => {
                budgets.remove(&key(&pdb));
            }
        }
    }

    fn outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Bound => {}
            Outcome::BindFailed { pod, retry } => {
                let key = pod.key();
                self.assumed.remove(&key);
                self.cluster.unplace(&key.0, &key.1);
                if retry {
                    self.queue.park(pod);
                }
            }
        }
    }

    async fn schedule_batch(
        &mut self,
        client: &kube::Client,
        writer: &Writer,
        permits: &Arc<Semaphore>,
        batch: usize,
    ) {
        self.reported.retain(|key, _| self.queue.contains(key));
        for _ in 0..batch {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                return;
            };
            let Some(mut pod) = self.queue.pop() else {
                return;
            };
            if !pod.claims.is_empty() {
                // Local volumes pin the pod to their node (read afresh: the
                // provisioner binds claims as pods land).
                let nodes = volumes::allowed_nodes(client, &pod.namespace, &pod.claims).await;
                Arc::make_mut(&mut pod).volume_nodes = nodes;
            }
            let span =
                tracing::debug_span!("schedule", pod = %format!("{}/{}", pod.namespace, pod.name));
            let _enter = span.enter();
            match plan::decide(&mut self.cluster, &pod) {
                Decision::Bind(node) => {
                    self.assumed.insert(pod.key());
                    self.reported.remove(&pod.key());
                    self.cluster.place(&node, pod.clone());
                    writer.bind(pod, node, permit);
                }
                Decision::Preempt {
                    node,
                    victims,
                    message,
                } => {
                    tracing::info!(node, victims = victims.len(), "preempting");
                    self.cluster.nominate(&node, pod.clone());
                    writer.preempt(pod.clone(), node, victims, message.clone(), permit);
                    self.reported.insert(pod.key(), message);
                    self.queue.park(pod);
                }
                Decision::Unschedulable(message) => {
                    if self.reported.get(&pod.key()) != Some(&message) {
                        tracing::info!(message, "unschedulable");
                        writer.failed(&pod, message.clone());
                        self.reported.insert(pod.key(), message);
                    }
                    self.queue.park(pod);
                }
            }
        }
    }
}

/// Whether a node change can matter to pods that did not fit before.
fn same_for_scheduling(old: &NodeFacts, new: &NodeFacts) -> bool {
    old.ready == new.ready
        && old.unschedulable == new.unschedulable
        && old.labels == new.labels
        && old.taints == new.taints
        && old.allocatable == new.allocatable
        && old.runtime_handlers == new.runtime_handlers
}

#[cfg(test)]
mod tests;
