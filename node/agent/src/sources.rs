//! The ConfigMaps and Secrets a pod's env and volumes refer to, read from the
//! API server once per container start (so a changed or newly created object is
//! seen at the next start), plus the downward API's pod fields.

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, ResourceFieldSelector, Secret};

use crate::cluster::{Cluster, ClusterError};
use crate::driver::error_chain;

/// Why a pod's configuration could not be put together. The messages follow
/// kubelet's, since users search for them.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyNotFound {
        key: String,
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
    #[error("unsupported container resource: {0}")]
    Resource(String),
    #[error("container {0:?} not found in the pod")]
    ContainerNotFound(String),
    #[error("reading {what}: {message}")]
    Api { what: String, message: String },
}

/// What the node offers a container with no limit (the downward API falls back to it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allocatable {
    pub cpu_cores: f64,
    pub memory_bytes: f64,
}

/// What the downward API and volumes need to know about the pod and its node.
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    /// The node's address (`status.hostIP`).
    pub host_ip: &'a str,
    /// The pod's address (`status.podIP`): its sandbox's for an OCI pod, the
    /// node's for a Wasm pod (which shares the node's network).
    pub pod_ip: &'a str,
    pub allocatable: Allocatable,
    /// Host directories of the pod's bound PersistentVolumeClaims, by claim name.
    pub claims: &'a HashMap<String, PathBuf>,
}

impl PodFacts<'_> {
    pub fn claim_path(&self, claim: &str) -> Option<PathBuf> {
        self.claims.get(claim).cloned()
    }
}

/// Reads ConfigMaps and Secrets of one namespace, each at most once.
pub struct Sources<'a> {
    cluster: &'a dyn Cluster,
    namespace: &'a str,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl<'a> Sources<'a> {
    pub fn new(cluster: &'a dyn Cluster, namespace: &'a str) -> Sources<'a> {
        Sources {
            cluster,
            namespace,
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    pub fn namespace(&self) -> &str {
        self.namespace
    }

    /// The ConfigMap, or `None` when it does not exist.
    pub async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, SourceError> {
        if !self.config_maps.contains_key(name) {
            let found = self
                .cluster
                .get_config_map(self.namespace, name)
                .await
                .map_err(|e| api_error(format!("configmap {name:?}"), &e))?;
            self.config_maps.insert(name.to_string(), found);
        }
        Ok(self.config_maps[name].as_ref())
    }

    /// The Secret, or `None` when it does not exist.
    pub async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, SourceError> {
        if !self.secrets.contains_key(name) {
            let found = self
                .cluster
                .get_secret(self.namespace, name)
                .await
                .map_err(|e| api_error(format!("secret {name:?}"), &e))?;
            self.secrets.insert(name.to_string(), found);
        }
        Ok(self.secrets[name].as_ref())
    }

    /// The ConfigMap's entries (`data` and `binaryData`) as bytes, or `None` when it does not exist.
    pub async fn config_map_entries(
        &mut self,
        name: &str,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>, SourceError> {
        Ok(self.config_map(name).await?.map(|map| {
            let text = map
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
            let binary = map
                .binary_data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()));
            text.chain(binary).collect()
        }))
    }

    /// The Secret's entries as bytes (`stringData` is merged into `data` by the API server).
    pub async fn secret_entries(
        &mut self,
        name: &str,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>, SourceError> {
        Ok(self.secret(name).await?.map(|secret| {
            secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect()
        }))
    }

    pub fn key_not_found(&self, kind: &'static str, name: &str, key: &str) -> SourceError {
        SourceError::KeyNotFound {
            key: key.to_string(),
            kind,
            namespace: self.namespace.to_string(),
            name: name.to_string(),
        }
    }
}

fn api_error(what: String, error: &ClusterError) -> SourceError {
    SourceError::Api {
        what,
        message: error_chain(error),
    }
}

/// The downward API's `fieldRef`: the value of `field_path` for this pod.
pub fn pod_field(facts: &PodFacts, field_path: &str) -> Result<String, SourceError> {
    let pod = facts.pod;
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_entry = |map: &Option<std::collections::BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let subscript = |prefix: &str| {
        field_path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
            .map(str::to_string)
    };
    let value = match field_path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_string()),
        // One address of each family at most: the lists hold just the one.
        "status.podIP" | "status.podIPs" => facts.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_string(),
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                map_entry(&meta.labels, &key)
            } else if let Some(key) = subscript("metadata.annotations") {
                map_entry(&meta.annotations, &key)
            } else {
                return Err(SourceError::FieldPath(field_path.to_string()));
            }
        }
    };
    Ok(value)
}

/// `key="value"` lines, sorted by key, as kubelet writes labels and annotations
/// into downwardAPI files.
fn format_map(map: Option<&std::collections::BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// The downward API's `resourceFieldRef`: a container's limit or request, in
/// units of `divisor` rounded up; a missing limit is the node's allocatable.
pub fn container_resource(
    pod: &Pod,
    default_container: &Container,
    selector: &ResourceFieldSelector,
    allocatable: Allocatable,
) -> Result<String, SourceError> {
    let container = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => default_container,
        Some(name) => pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| SourceError::ContainerNotFound(name.to_string()))?,
    };
    let resources = container.resources.as_ref();
    let (list, resource) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| SourceError::Resource(selector.resource.clone()))?;
    let quantities = match list {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(SourceError::Resource(selector.resource.clone())),
    };
    let set = quantities
        .and_then(|q| q.get(resource))
        .and_then(|q| skiff_quantity::parse(&q.0).ok())
        .map(|q| q.as_f64());
    let value = match (set, list, resource) {
        (Some(value), _, _) => value,
        (None, "limits", "cpu") => allocatable.cpu_cores,
        (None, "limits", "memory") => allocatable.memory_bytes,
        (None, _, "cpu" | "memory" | "ephemeral-storage") => 0.0,
        _ => return Err(SourceError::Resource(selector.resource.clone())),
    };
    let divisor = selector
        .divisor
        .as_ref()
        .and_then(|d| skiff_quantity::parse(&d.0).ok())
        .map(|d| d.as_f64())
        .filter(|d| *d > 0.0)
        .unwrap_or(1.0);
    Ok(format!("{}", (value / divisor).ceil() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                labels: Some(
                    [
                        ("app".to_string(), "web".to_string()),
                        ("tier".into(), "a".into()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        limits: Some([("memory".to_string(), Quantity("64Mi".into()))].into()),
                        ..ResourceRequirements::default()
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn pod_fields() {
        let pod = pod();
        let facts = PodFacts {
            pod: &pod,
            host_ip: "10.0.0.1",
            pod_ip: "172.17.0.4",
            allocatable: Allocatable {
                cpu_cores: 1.0,
                memory_bytes: 1e9,
            },
            claims: &HashMap::new(),
        };
        let field = |path| pod_field(&facts, path);
        assert_eq!(field("metadata.name").unwrap(), "web");
        assert_eq!(field("metadata.labels['app']").unwrap(), "web");
        assert_eq!(field("metadata.labels").unwrap(), "app=\"web\"\ntier=\"a\"");
        assert_eq!(field("spec.nodeName").unwrap(), "n1");
        assert_eq!(field("spec.serviceAccountName").unwrap(), "default");
        assert_eq!(field("status.podIP").unwrap(), "172.17.0.4");
        assert_eq!(field("status.podIPs").unwrap(), "172.17.0.4");
        assert_eq!(field("status.hostIP").unwrap(), "10.0.0.1");
        assert!(matches!(
            field("spec.bogus"),
            Err(SourceError::FieldPath(_))
        ));
    }

    #[test]
    fn resources_round_up_in_divisor_units() {
        let pod = pod();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let allocatable = Allocatable {
            cpu_cores: 2.0,
            memory_bytes: 1e9,
        };
        let get = |resource: &str, divisor: Option<&str>| {
            let selector = ResourceFieldSelector {
                resource: resource.into(),
                divisor: divisor.map(|d| Quantity(d.into())),
                container_name: None,
            };
            container_resource(&pod, container, &selector, allocatable).unwrap()
        };
        assert_eq!(get("limits.memory", Some("1Mi")), "64");
        assert_eq!(get("limits.memory", None), (64 << 20).to_string());
        assert_eq!(get("limits.cpu", None), "2");
        assert_eq!(get("limits.cpu", Some("1m")), "2000");
        assert_eq!(get("requests.cpu", None), "0");
    }
}
