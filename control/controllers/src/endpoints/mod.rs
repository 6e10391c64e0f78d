//! The EndpointSlice and Endpoints controller: for every Service with a
//! selector, the pods it selects as `discovery.k8s.io/v1` EndpointSlices
//! (what the node gateway routes by) and the legacy core/v1 Endpoints
//! object (what `kubectl describe service` and older clients read).
//!
//! Slices carry `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by`, and both kinds an owner
//! reference to the Service, so the garbage collector removes them with it.

mod plan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

pub use plan::{
    Desired, MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, SliceContent, manages, plan,
    resolve_target, selects,
};

use crate::Error;
use crate::runtime::{Backoff, cache_ready, key_of, run_controller};

/// A safety net for a missed watch event.
const RESYNC: Duration = Duration::from_secs(300);

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    backoff: Backoff,
}

/// Run the controller until `cancel` fires.
pub async fn run(client: kube::Client, cancel: CancellationToken) {
    let (pods, writer) = reflector::store();
    let pod_events = reflector(
        writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff(),
    )
    .touched_objects();
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let services = controller.store();
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let context = Arc::new(Context {
        client: client.clone(),
        pods,
        backoff: Backoff::default(),
    });
    let controller = controller
        // A pod's labels may have stopped matching, so a pod event concerns
        // every Service in its namespace; the cost is one cheap plan each.
        .watches_stream(pod_events, move |pod| {
            services_in(&services, pod.metadata.namespace.as_deref())
        })
        .owns(Api::<EndpointSlice>::all(client), managed);
    run_controller(
        "endpoints",
        "service",
        controller,
        Duration::from_millis(50),
        cancel,
        reconcile,
        context,
    )
    .await;
}

fn services_in(services: &Store<Service>, namespace: Option<&str>) -> Vec<ObjectRef<Service>> {
    services
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == namespace && manages(s))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

async fn reconcile(service: Arc<Service>, context: Arc<Context>) -> Result<Action, Error> {
    if !manages(&service) || service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    cache_ready(&context.pods).await?;
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = context
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .collect();
    let desired = plan(&service, &pods);
    sync_slices(&service, &desired.slices, &context.client).await?;
    sync_endpoints(&service, &desired, &context.client).await?;
    context.backoff.succeeded(&key_of(service.as_ref()));
    Ok(Action::requeue(RESYNC))
}

fn owner_reference(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The slice object for `content`, named `name` or generated from the Service's name.
fn slice_object(service: &Service, content: &SliceContent, name: Option<String>) -> EndpointSlice {
    let service_name = service.metadata.name.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = service.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), service_name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: name.is_none().then(|| format!("{service_name}-")),
            name,
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner_reference(service)]),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: content.endpoints.clone(),
        ports: Some(content.ports.clone()),
    }
}

async fn sync_slices(
    service: &Service,
    desired: &[SliceContent],
    client: &kube::Client,
) -> Result<(), Error> {
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let service_name = service.metadata.name.clone().unwrap_or_default();
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
    let selector = format!("{SERVICE_NAME_LABEL}={service_name},{MANAGED_BY_LABEL}={MANAGED_BY}");
    let mut existing = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Read {
            what: "endpointslices",
            namespace: namespace.clone(),
            source,
        })?
        .items;
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    // A Service with no ready pods still gets one (empty) slice, as in Kubernetes.
    let empty = [SliceContent::default()];
    let desired = if desired.is_empty() {
        &empty[..]
    } else {
        desired
    };
    let mut existing = existing.into_iter();
    for content in desired {
        match existing.next() {
            Some(current) => {
                let name = current.metadata.name.clone().unwrap_or_default();
                let mut wanted = slice_object(service, content, Some(name.clone()));
                let same = current.endpoints == wanted.endpoints
                    && current.ports.clone().unwrap_or_default() == content.ports
                    && current.metadata.labels == wanted.metadata.labels;
                if same {
                    continue;
                }
                wanted.metadata.resource_version = current.metadata.resource_version.clone();
                api.replace(&name, &PostParams::default(), &wanted)
                    .await
                    .map_err(|source| {
                        Error::write("updating endpointslice", &namespace, &name, source)
                    })?;
                tracing::debug!(slice = %name, endpoints = content.endpoints.len(), "updated endpointslice");
            }
            None => {
                let created = api
                    .create(
                        &PostParams::default(),
                        &slice_object(service, content, None),
                    )
                    .await
                    .map_err(|source| {
                        Error::write(
                            "creating endpointslice for",
                            &namespace,
                            &service_name,
                            source,
                        )
                    })?;
                tracing::info!(slice = ?created.metadata.name, "created endpointslice");
            }
        }
    }
    for surplus in existing {
        let name = surplus.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(slice = %name, "deleted endpointslice"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(Error::write(
                    "deleting endpointslice",
                    &namespace,
                    &name,
                    source,
                ));
            }
        }
    }
    Ok(())
}

async fn sync_endpoints(
    service: &Service,
    desired: &Desired,
    client: &kube::Client,
) -> Result<(), Error> {
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let api: Api<Endpoints> = Api::namespaced(client.clone(), &namespace);
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let mut wanted = Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![owner_reference(service)]),
            ..ObjectMeta::default()
        },
        subsets: Some(desired.subsets.clone()).filter(|s| !s.is_empty()),
    };
    let current = api.get_opt(&name).await.map_err(|source| Error::Read {
        what: "endpoints",
        namespace: namespace.clone(),
        source,
    })?;
    match current {
        None => {
            api.create(&PostParams::default(), &wanted)
                .await
                .map_err(|source| Error::write("creating endpoints", &namespace, &name, source))?;
        }
        Some(current) => {
            let subsets = |e: &Endpoints| e.subsets.clone().unwrap_or_default();
            if subsets(&current) == desired.subsets
                && current.metadata.labels == wanted.metadata.labels
            {
                return Ok(());
            }
            wanted.metadata.resource_version = current.metadata.resource_version.clone();
            api.replace(&name, &PostParams::default(), &wanted)
                .await
                .map_err(|source| Error::write("updating endpoints", &namespace, &name, source))?;
        }
    }
    tracing::debug!(service = %format!("{namespace}/{name}"), "updated endpoints");
    Ok(())
}

impl crate::runtime::HasBackoff for Context {
    fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}
