//! Watch-fed caches of the objects the gateway routes by: Services,
//! EndpointSlices, Ingresses, Nodes, Deployments, NetworkPolicies, Pods,
//! Namespaces and Secrets (kube-runtime reflectors). Every
//! change bumps a counter on a `watch` channel, so the NodePort listeners
//! know when to look again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    /// The EndpointSlices by Service, rebuilt after a slice changed.
    slice_index: Arc<Mutex<SliceIndex>>,
    slices_changed: watch::Receiver<u64>,
}

/// `(namespace, service)` → its EndpointSlices in name order, as of one
/// value of the slices' change counter. A lookup per request stays O(1)
/// however many Services the node routes to.
#[derive(Default)]
struct SliceIndex {
    version: Option<u64>,
    by_service: HashMap<(String, String), Vec<Arc<EndpointSlice>>>,
}

impl Caches {
    /// Start the reflectors on `tasks`; they stop when `cancel` fires.
    pub fn start(client: &kube::Client, tasks: &TaskTracker, cancel: &CancellationToken) -> Caches {
        let (tx, changed) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let (slices_tx, slices_changed) = watch::channel(0u64);
        let slices_tx = Arc::new(slices_tx);
        Caches {
            services: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            slices: reflect_also(
                Api::all(client.clone()),
                tasks,
                cancel,
                &tx,
                Some(slices_tx),
            ),
            ingresses: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            nodes: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            deployments: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            policies: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            pods: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            namespaces: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            secrets: reflect(Api::all(client.clone()), tasks, cancel, &tx),
            changed,
            slice_index: Arc::default(),
            slices_changed,
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

    /// The EndpointSlices of a Service, in name order.
    pub fn slices_of(&self, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
        let version = *self.slices_changed.borrow();
        let mut index = self.slice_index.lock().expect("slice index lock");
        if index.version != Some(version) {
            let mut by_service: HashMap<(String, String), Vec<Arc<EndpointSlice>>> = HashMap::new();
            for slice in self.slices.state() {
                let Some(owner) = slice
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                else {
                    continue;
                };
                let key = (
                    slice.metadata.namespace.clone().unwrap_or_default(),
                    owner.clone(),
                );
                by_service.entry(key).or_default().push(slice);
            }
            for slices in by_service.values_mut() {
                slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            }
            *index = SliceIndex {
                version: Some(version),
                by_service,
            };
        }
        index
            .by_service
            .get(&(namespace.to_string(), service.to_string()))
            .cloned()
            .unwrap_or_default()
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
    reflect_also(api, tasks, cancel, changed, None)
}

/// [`reflect`], bumping `also` too on each change of this kind.
fn reflect_also<K>(
    api: Api<K>,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
    changed: &Arc<watch::Sender<u64>>,
    also: Option<Arc<watch::Sender<u64>>>,
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
    // Every event, not only touched objects: the end of a re-list replaces the
    // store (dropping objects deleted meanwhile) without touching any object.
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let cancel = cancel.clone();
    let changed = Arc::clone(changed);
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                event = stream.next() => match event {
                    Some(Ok(_)) => {
                        // The kind's own counter first: whoever wakes on the
                        // shared one must find the kind's index stale already.
                        if let Some(also) = &also {
                            also.send_modify(|n| *n += 1);
                        }
                        changed.send_modify(|n| *n += 1);
                    }
                    Some(Err(err)) => tracing::debug!(error = %err, "gateway watch error; retrying"),
                    None => break,
                },
            }
        }
    });
    store
}
