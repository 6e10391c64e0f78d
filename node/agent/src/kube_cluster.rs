//! [`Cluster`] over the `kube` client: the only place the agent makes API calls.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Node, PersistentVolume, PersistentVolumeClaim, Pod, PodStatus, Secret,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use serde_json::json;

use crate::cluster::{Cluster, ClusterError, PodChange, StorageChange};

/// Where node Leases live.
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Talks to the API server through a `kube::Client`.
#[derive(Clone)]
pub struct KubeCluster {
    client: kube::Client,
}

impl KubeCluster {
    pub fn new(client: kube::Client) -> KubeCluster {
        KubeCluster { client }
    }
}

fn failed(
    action: &'static str,
    object: impl Into<String>,
) -> impl FnOnce(kube::Error) -> ClusterError {
    let object = object.into();
    move |source| ClusterError::Request {
        action,
        object,
        source: Box::new(source),
    }
}

fn is_api_error(error: &kube::Error, check: fn(&kube::core::Status) -> bool) -> bool {
    matches!(error, kube::Error::Api(status) if check(status))
}

impl Cluster for KubeCluster {
    fn register_node<'a>(&'a self, node: &'a Node) -> BoxFuture<'a, Result<(), ClusterError>> {
        async move {
            let api: Api<Node> = Api::all(self.client.clone());
            let name = node.metadata.name.clone().unwrap_or_default();
            match api.create(&PostParams::default(), node).await {
                Ok(_) => tracing::info!(node = %name, "registered node"),
                Err(error) if is_api_error(&error, kube::core::Status::is_already_exists) => {
                    let labels = json!({ "metadata": { "labels": node.metadata.labels } });
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(labels))
                        .await
                        .map_err(failed("updating labels of node", name.clone()))?;
                    tracing::info!(node = %name, "node already registered; updated it");
                }
                Err(error) => return Err(failed("creating node", name)(error)),
            }
            let status = json!({ "status": node.status });
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await
                .map_err(failed("writing status of node", name))?;
            Ok(())
        }
        .boxed()
    }

    fn patch_node_status<'a>(
        &'a self,
        name: &'a str,
        status: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        async move {
            let api: Api<Node> = Api::all(self.client.clone());
            let patch = json!({ "status": status });
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(failed("patching status of node", name))?;
            Ok(())
        }
        .boxed()
    }

    fn renew_lease<'a>(
        &'a self,
        node_name: &'a str,
        duration_seconds: i32,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        async move {
            let api: Api<Lease> = Api::namespaced(self.client.clone(), NODE_LEASE_NAMESPACE);
            let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
            let renew = json!({ "spec": {
                "holderIdentity": node_name,
                "leaseDurationSeconds": duration_seconds,
                "renewTime": now,
            }});
            match api
                .patch(node_name, &PatchParams::default(), &Patch::Merge(renew))
                .await
            {
                Ok(_) => Ok(()),
                Err(error) if is_api_error(&error, kube::core::Status::is_not_found) => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(node_name.to_string()),
                            namespace: Some(NODE_LEASE_NAMESPACE.to_string()),
                            ..ObjectMeta::default()
                        },
                        spec: Some(LeaseSpec {
                            holder_identity: Some(node_name.to_string()),
                            lease_duration_seconds: Some(duration_seconds),
                            acquire_time: Some(now.clone()),
                            renew_time: Some(now),
                            ..LeaseSpec::default()
                        }),
                    };
                    api.create(&PostParams::default(), &lease)
                        .await
                        .map_err(failed("creating lease of node", node_name))?;
                    Ok(())
                }
                Err(error) => Err(failed("renewing lease of node", node_name)(error)),
            }
        }
        .boxed()
    }

    fn watch_pods(&self, node_name: &str) -> BoxStream<'static, Result<PodChange, ClusterError>> {
        let api: Api<Pod> = Api::all(self.client.clone());
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
        watcher(api, config)
            .default_backoff()
            .map(|event| {
                event
                    .map(|event| match event {
                        watcher::Event::Init => PodChange::Relisting,
                        watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                            PodChange::Applied(Box::new(pod))
                        }
                        watcher::Event::Delete(pod) => PodChange::Deleted(Box::new(pod)),
                        watcher::Event::InitDone => PodChange::Listed,
                    })
                    .map_err(|source| ClusterError::Watch {
                        source: Box::new(source),
                    })
            })
            .boxed()
    }

    fn patch_pod_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a PodStatus,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        async move {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let patch = json!({ "status": status });
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(failed(
                    "patching status of pod",
                    format!("{namespace}/{name}"),
                ))?;
            Ok(())
        }
        .boxed()
    }

    fn delete_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        async move {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.to_string()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(name, &params).await {
                Ok(_) => Ok(()),
                // Someone else finished the deletion already.
                Err(error) if is_api_error(&error, kube::core::Status::is_not_found) => Ok(()),
                Err(error) => Err(failed("deleting pod", format!("{namespace}/{name}"))(error)),
            }
        }
        .boxed()
    }

    fn get_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, ClusterError>> {
        async move {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
            api.get_opt(name)
                .await
                .map_err(failed("reading secret", format!("{namespace}/{name}")))
        }
        .boxed()
    }

    fn get_config_map<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, ClusterError>> {
        async move {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
            api.get_opt(name)
                .await
                .map_err(failed("reading configmap", format!("{namespace}/{name}")))
        }
        .boxed()
    }

    fn create_event<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), ClusterError>> {
        async move {
            let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
            let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
            api.create(&PostParams::default(), event)
                .await
                .map_err(failed(
                    "creating event for",
                    event.involved_object.name.clone().unwrap_or_default(),
                ))?;
            Ok(())
        }
        .boxed()
    }

    fn get_claim<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersistentVolumeClaim>, ClusterError>> {
        async move {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
            api.get_opt(name).await.map_err(failed(
                "reading persistentvolumeclaim",
                format!("{namespace}/{name}"),
            ))
        }
        .boxed()
    }

    fn get_volume<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersistentVolume>, ClusterError>> {
        async move {
            let api: Api<PersistentVolume> = Api::all(self.client.clone());
            api.get_opt(name)
                .await
                .map_err(failed("reading persistentvolume", name))
        }
        .boxed()
    }

    fn create_volume<'a>(
        &'a self,
        volume: &'a PersistentVolume,
    ) -> BoxFuture<'a, Result<bool, ClusterError>> {
        async move {
            let api: Api<PersistentVolume> = Api::all(self.client.clone());
            let name = volume.metadata.name.clone().unwrap_or_default();
            match api.create(&PostParams::default(), volume).await {
                Ok(_) => {}
                Err(error) if is_api_error(&error, kube::core::Status::is_already_exists) => {
                    return Ok(false);
                }
                Err(error) => return Err(failed("creating persistentvolume", name)(error)),
            }
            let status = json!({ "status": volume.status });
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await
                .map_err(failed("writing status of persistentvolume", name))?;
            Ok(true)
        }
        .boxed()
    }

    fn watch_storage(&self) -> BoxStream<'static, Result<StorageChange, ClusterError>> {
        let watch_error = |source: watcher::Error| ClusterError::Watch {
            source: Box::new(source),
        };
        let volumes = watcher(
            Api::<PersistentVolume>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .filter_map(move |event| {
            let change = match event {
                Ok(watcher::Event::InitApply(volume) | watcher::Event::Apply(volume)) => {
                    Some(Ok(StorageChange::Volume(Box::new(volume))))
                }
                Ok(watcher::Event::Delete(volume)) => Some(Ok(StorageChange::VolumeDeleted(
                    volume.metadata.name.unwrap_or_default(),
                ))),
                Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
                Err(source) => Some(Err(watch_error(source))),
            };
            futures::future::ready(change)
        });
        let claims = watcher(
            Api::<PersistentVolumeClaim>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .filter_map(move |event| {
            let change = match event {
                Ok(watcher::Event::Delete(claim)) => Some(Ok(StorageChange::ClaimDeleted {
                    namespace: claim.metadata.namespace.unwrap_or_default(),
                    name: claim.metadata.name.unwrap_or_default(),
                    uid: claim.metadata.uid.unwrap_or_default(),
                })),
                Ok(_) => None,
                Err(source) => Some(Err(watch_error(source))),
            };
            futures::future::ready(change)
        });
        futures::stream::select(volumes, claims).boxed()
    }

    fn delete_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ClusterError>> {
        async move {
            let api: Api<PersistentVolume> = Api::all(self.client.clone());
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(error) if is_api_error(&error, kube::core::Status::is_not_found) => Ok(()),
                Err(error) => Err(failed("deleting persistentvolume", name)(error)),
            }
        }
        .boxed()
    }

    fn patch_volume_status<'a>(
        &'a self,
        name: &'a str,
        status: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        async move {
            let api: Api<PersistentVolume> = Api::all(self.client.clone());
            let patch = json!({ "status": status });
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(failed("writing status of persistentvolume", name))?;
            Ok(())
        }
        .boxed()
    }

    fn patch_claim<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        patch: serde_json::Value,
        status: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        async move {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
            let object = format!("{namespace}/{name}");
            api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(failed("binding persistentvolumeclaim", object.clone()))?;
            api.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .map_err(failed("writing status of persistentvolumeclaim", object))?;
            Ok(())
        }
        .boxed()
    }
}
