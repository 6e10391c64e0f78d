//! The Skiff scheduler: binds each pending pod to a Ready node.
//!
//! It watches all pods (those without `spec.nodeName` are its queue, the rest
//! count against their node) and all nodes through the
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
mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Event, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
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
        // One watch of all pods feeds both the queue of pods to place and the
        // count of pods on each node, so no decision lists the pods again.
        let mut pod_events = watcher(pods, watcher::Config::default()).boxed();
        let mut node_events = watcher(nodes_api, watcher::Config::default()).boxed();
        let mut book = PodBook::default();
        let mut nodes: HashMap<String, Node> = HashMap::new();
        // The last FailedScheduling reason per pod, so a retry that fails the
        // same way does not record the same event again.
        let mut reported: HashMap<(String, String), String> = HashMap::new();
        let mut retry = tokio::time::interval(RETRY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                event = pod_events.next() => match event {
                    Some(Ok(event)) => book.track(event),
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
            if book.pending.is_empty() {
                continue;
            }
            reported.retain(|key, _| book.pending.contains_key(key));
            self.schedule_all(&mut book, &nodes, &mut reported).await;
        }
    }

    async fn schedule_all(
        &self,
        book: &mut PodBook,
        nodes: &HashMap<String, Node>,
        reported: &mut HashMap<(String, String), String>,
    ) {
        let keys: Vec<(String, String)> = book.pending.keys().cloned().collect();
        for key in keys {
            // Counted afresh for each pod: the binds just made count too.
            let counts = book.counts();
            let facts: Vec<NodeFacts> = nodes
                .values()
                .map(|n| NodeFacts::from_node(n, counts.get(&name_of(n)).copied().unwrap_or(0)))
                .collect();
            let pod = &book.pending[&key];
            let span = tracing::info_span!("schedule", pod = %format!("{}/{}", key.0, key.1));
            let _enter = span.enter();
            let total = facts.len();
            let facts = match volumes::allowed_nodes(&self.client, pod).await {
                Some(allowed) => facts
                    .into_iter()
                    .filter(|f| allowed.contains(&f.name))
                    .collect(),
                None => facts,
            };
            let picked = if facts.is_empty() && total > 0 {
                Err(format!(
                    "0/{total} nodes are available: {total} node(s) had volume node affinity conflict."
                ))
            } else {
                pick_node(&facts)
            };
            match picked {
                Ok(node) => match self.bind(pod, &node).await {
                    Ok(()) => {
                        tracing::info!(node, "bound");
                        book.pending.remove(&key);
                        book.placed.insert(key.clone(), node);
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

/// What the scheduler knows of pods: those waiting for a node, and the
/// node of each pod that holds one (bound and not finished).
#[derive(Default)]
struct PodBook {
    pending: BTreeMap<(String, String), Pod>,
    placed: HashMap<(String, String), String>,
}

impl PodBook {
    fn track(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => {
                self.pending.clear();
                self.placed.clear();
            }
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => self.note(pod),
            watcher::Event::Delete(pod) => {
                let key = pod_key(&pod);
                self.pending.remove(&key);
                self.placed.remove(&key);
            }
            watcher::Event::InitDone => {}
        }
    }

    fn note(&mut self, pod: Pod) {
        let key = pod_key(&pod);
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        match node {
            Some(node) if !finished => {
                self.pending.remove(&key);
                self.placed.insert(key, node);
            }
            Some(_) => {
                self.pending.remove(&key);
                self.placed.remove(&key);
            }
            None if wants_us(&pod) => {
                self.placed.remove(&key);
                self.pending.insert(key, pod);
            }
            None => {
                self.pending.remove(&key);
                self.placed.remove(&key);
            }
        }
    }

    /// Pods holding each node.
    fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for node in self.placed.values() {
            *counts.entry(node.clone()).or_default() += 1;
        }
        counts
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};

    fn pod(name: &str, node: Option<&str>, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(String::from),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn the_book_follows_pods_from_pending_to_placed_to_finished() {
        let mut book = PodBook::default();
        book.track(watcher::Event::Apply(pod("a", None, "Pending")));
        book.track(watcher::Event::Apply(pod("b", Some("n1"), "Running")));
        assert_eq!(book.pending.len(), 1);
        assert_eq!(book.counts().get("n1"), Some(&1));

        book.track(watcher::Event::Apply(pod("a", Some("n1"), "Running")));
        assert!(book.pending.is_empty());
        assert_eq!(book.counts().get("n1"), Some(&2));

        book.track(watcher::Event::Apply(pod("b", Some("n1"), "Succeeded")));
        book.track(watcher::Event::Delete(pod("a", Some("n1"), "Running")));
        assert_eq!(
            book.counts().get("n1"),
            None,
            "finished and deleted pods free their node"
        );

        let mut other = pod("c", None, "Pending");
        other.spec.as_mut().unwrap().scheduler_name = Some("someone-else".into());
        book.track(watcher::Event::Apply(other));
        assert!(
            book.pending.is_empty(),
            "pods for another scheduler are left alone"
        );
    }
}
