//! The Skiff scheduler: binds each pending pod to a Ready node.
//!
//! It watches unscheduled pods (`spec.nodeName=`) and nodes through the
//! Kubernetes API, picks a node with [`pick_node`] (a pure function: filter
//! the nodes that can take the pod, then prefer the one running the fewest
//! pods), and binds through `pods/binding`, recording a `Scheduled` or
//! `FailedScheduling` event as `kubectl describe` shows them. Pods that fit
//! nowhere are retried when nodes change and every few seconds.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! let cancel = tokio_util::sync::CancellationToken::new();
//! skiff_scheduler::Scheduler::new(client).run(cancel).await.unwrap();
//! # }
//! ```

mod plan;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Event, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

pub use plan::{NodeFacts, pick_node};

/// The name pods ask for in `spec.schedulerName`.
pub const SCHEDULER_NAME: &str = "default-scheduler";
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("the pod watch failed")]
    Watch(#[source] watcher::Error),
}

pub struct Scheduler {
    client: kube::Client,
}

impl Scheduler {
    pub fn new(client: kube::Client) -> Scheduler {
        Scheduler { client }
    }

    /// Schedule until cancelled.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), SchedulerError> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let nodes_api: Api<Node> = Api::all(self.client.clone());
        let pending_config = watcher::Config::default().fields("spec.nodeName=");
        let mut pod_events = watcher(pods.clone(), pending_config).boxed();
        let mut node_events = watcher(nodes_api, watcher::Config::default()).boxed();
        let mut pending: BTreeMap<(String, String), Pod> = BTreeMap::new();
        let mut nodes: HashMap<String, Node> = HashMap::new();
        // The last FailedScheduling reason per pod, so a retry that fails the
        // same way does not record the same event again.
        let mut reported: HashMap<(String, String), String> = HashMap::new();
        let mut retry = tokio::time::interval(RETRY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                event = pod_events.next() => match event {
                    Some(Ok(event)) => track_pods(&mut pending, event),
                    Some(Err(err)) => {
                        tracing::warn!(%err, "pod watch error; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    None => return Ok(()),
                },
                event = node_events.next() => match event {
                    Some(Ok(event)) => track_nodes(&mut nodes, event),
                    Some(Err(err)) => {
                        tracing::warn!(%err, "node watch error; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    None => return Ok(()),
                },
                _ = retry.tick() => {}
            }
            if pending.is_empty() {
                continue;
            }
            reported.retain(|key, _| pending.contains_key(key));
            self.schedule_all(&pods, &mut pending, &nodes, &mut reported)
                .await;
        }
    }

    async fn schedule_all(
        &self,
        pods: &Api<Pod>,
        pending: &mut BTreeMap<(String, String), Pod>,
        nodes: &HashMap<String, Node>,
        reported: &mut HashMap<(String, String), String>,
    ) {
        let counts = match pod_counts(pods).await {
            Ok(counts) => counts,
            Err(err) => {
                tracing::warn!(%err, "counting pods per node");
                return;
            }
        };
        let facts: Vec<NodeFacts> = nodes
            .values()
            .map(|n| NodeFacts::from_node(n, counts.get(&name_of(n)).copied().unwrap_or(0)))
            .collect();
        let keys: Vec<(String, String)> = pending.keys().cloned().collect();
        for key in keys {
            let pod = &pending[&key];
            let span = tracing::info_span!("schedule", pod = %format!("{}/{}", key.0, key.1));
            let _enter = span.enter();
            match pick_node(&facts) {
                Ok(node) => match self.bind(pod, &node).await {
                    Ok(()) => {
                        tracing::info!(node, "bound");
                        pending.remove(&key);
                    }
                    Err(err) => tracing::warn!(%err, node, "binding failed"),
                },
                Err(reason) => {
                    if reported.get(&key) != Some(&reason) {
                        tracing::info!(reason, "unschedulable");
                        self.event(pod, "Warning", "FailedScheduling", &reason)
                            .await;
                        reported.insert(key.clone(), reason);
                    }
                }
            }
        }
    }

    async fn bind(&self, pod: &Pod, node: &str) -> Result<(), kube::Error> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.into()),
                ..ObjectReference::default()
            },
        };
        let _: serde_json::Value = api
            .create_subresource("binding", &name, &PostParams::default(), &binding)
            .await?;
        let message = format!("Successfully assigned {namespace}/{name} to {node}");
        self.event(pod, "Normal", "Scheduled", &message).await;
        Ok(())
    }

    async fn event(&self, pod: &Pod, kind: &str, reason: &str, message: &str) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let now = jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}.")),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                namespace: Some(namespace.clone()),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                ..ObjectReference::default()
            },
            type_: Some(kind.into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            count: Some(1),
            reporting_component: Some(SCHEDULER_NAME.into()),
            reporting_instance: Some(SCHEDULER_NAME.into()),
            action: Some("Binding".into()),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some(SCHEDULER_NAME.into()),
                host: None,
            }),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(err) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(%err, reason, "recording event");
        }
    }
}

fn name_of(node: &Node) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

fn wants_us(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let scheduler = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(SCHEDULER_NAME);
    scheduler == SCHEDULER_NAME
        && spec
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("")
            .is_empty()
        && pod.metadata.deletion_timestamp.is_none()
}

fn pod_key(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

fn track_pods(pending: &mut BTreeMap<(String, String), Pod>, event: watcher::Event<Pod>) {
    match event {
        watcher::Event::Init => pending.clear(),
        watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
            if wants_us(&pod) {
                pending.insert(pod_key(&pod), pod);
            } else {
                pending.remove(&pod_key(&pod));
            }
        }
        watcher::Event::Delete(pod) => {
            pending.remove(&pod_key(&pod));
        }
        watcher::Event::InitDone => {}
    }
}

fn track_nodes(nodes: &mut HashMap<String, Node>, event: watcher::Event<Node>) {
    match event {
        watcher::Event::Init => nodes.clear(),
        watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
            nodes.insert(name_of(&node), node);
        }
        watcher::Event::Delete(node) => {
            nodes.remove(&name_of(&node));
        }
        watcher::Event::InitDone => {}
    }
}

/// Pods bound to each node that still hold it (not finished).
async fn pod_counts(pods: &Api<Pod>) -> Result<HashMap<String, usize>, kube::Error> {
    let mut counts = HashMap::new();
    for pod in pods.list(&ListParams::default()).await?.items {
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if let Some(node) = pod.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty())
            && !finished
        {
            *counts.entry(node).or_default() += 1;
        }
    }
    Ok(counts)
}
