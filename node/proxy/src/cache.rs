//! Watch-fed caches of the objects the gateway routes by: Services,
//! EndpointSlices, Ingresses, Nodes, Deployments, NetworkPolicies, Pods,
//! Namespaces and Secrets (kube-runtime reflectors). Every
//! change bumps a counter on a `watch` channel, so the NodePort listeners
//! know when to look again.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The label every EndpointSlice carries with its Service's name.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Clone)]
pub struct Caches {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub ingresses: Store<Ingress>,
    pub nodes: Store<Node>,
    /// For the scaler: Deployments annotated for scale to zero or concurrency.
    pub deployments: Store<Deployment>,
    /// For NetworkPolicy: the policies, pods (both ends' labels) and namespaces.
    pub policies: Store<NetworkPolicy>,
    pub pods: Store<Pod>,
    pub namespaces: Store<Namespace>,
    /// For Ingress TLS: certificates and keys.
    pub secrets: Store<Secret>,
    changed: watch::Receiver<u64>,
}

impl Caches {
    /// Start the reflectors on `tasks`; they stop when `cancel` fires.
    pub fn start(client: &kube::Client, tasks: &TaskTracker, cancel: &CancellationToken) -> Caches {
        let (tx, changed) = watch::channel(0u64);
        let tx = Arc::new(tx);
        Caches {
            services: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            slices: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            ingresses: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            nodes: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            deployments: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            policies: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            pods: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            namespaces: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            secrets: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            changed,
        }
    }

    /// A receiver that sees a new value after any cached object changed.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }

    /// Wait until every cache has its first list; false when shutting down.
    pub async fn ready(&self) -> bool {
        ready(&self.services).await
            && ready(&self.slices).await
            && ready(&self.ingresses).await
            && ready(&self.nodes).await
            && ready(&self.deployments).await
            && ready(&self.policies).await
            && ready(&self.pods).await
            && ready(&self.namespaces).await
            && ready(&self.secrets).await
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(&ObjectRef::new(name).within(namespace))
    }

    /// The EndpointSlices of a Service.
    pub fn slices_of(&self, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
        let mut slices: Vec<Arc<EndpointSlice>> = self
            .slices
            .state()
            .into_iter()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(namespace)
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SERVICE_NAME_LABEL))
                        .map(String::as_str)
                        == Some(service)
            })
            .collect();
        slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        slices
    }

    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Arc<Deployment>> {
        self.deployments
            .get(&ObjectRef::new(name).within(namespace))
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods.get(&ObjectRef::new(name).within(namespace))
    }

    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.get(&ObjectRef::new(name))
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.secrets.get(&ObjectRef::new(name).within(namespace))
    }

    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(&ObjectRef::new(name))
    }
}

/// A store's first list. kube's `wait_until_ready` wakes only the last of
/// several tasks waiting at once, so each wait is short and polled again.
async fn ready<K>(store: &Store<K>) -> bool
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    loop {
        match tokio::time::timeout(READY_POLL, store.wait_until_ready()).await {
            Ok(result) => return result.is_ok(),
            Err(_) => continue,
        }
    }
}

const READY_POLL: std::time::Duration = std::time::Duration::from_millis(200);

fn reflect<K>(
    api: Api<K>,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
    changed: &Arc<watch::Sender<u64>>,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let cancel = cancel.clone();
    let changed = Arc::clone(changed);
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                event = stream.next() => match event {
                    Some(Ok(_)) => { changed.send_modify(|n| *n += 1); }
                    Some(Err(err)) => tracing::debug!(error = %err, "gateway watch error; retrying"),
                    None => break,
                },
            }
        }
    });
    store
}
