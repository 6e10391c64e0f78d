//! What the scheduler reads from API objects, distilled once per object so a
//! decision compares plain numbers and strings.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Container, Node, Pod, Taint, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use skiff_quantity::scaled_or_zero;

/// Resource amounts: CPU in millicores, memory and everything else in base
/// units (bytes, devices), rounded up as Kubernetes does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub pods: i64,
    /// Extended and other resources (`ephemeral-storage`, `example.com/gpu`).
    pub other: BTreeMap<String, i64>,
}

impl Resources {
    /// From a `requests`/`allocatable` map.
    pub fn from_map(map: &BTreeMap<String, Quantity>) -> Resources {
        let mut out = Resources::default();
        for (name, quantity) in map {
            out.set(name, &quantity.0);
        }
        out
    }

    fn set(&mut self, name: &str, text: &str) {
        match name {
            "cpu" => self.milli_cpu = scaled_or_zero(text, -3),
            "memory" => self.memory = scaled_or_zero(text, 0),
            "pods" => self.pods = scaled_or_zero(text, 0),
            other => {
                self.other
                    .insert(other.to_string(), scaled_or_zero(text, 0));
            }
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.pods += other.pods;
        for (name, amount) in &other.other {
            *self.other.entry(name.clone()).or_default() += amount;
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.pods -= other.pods;
        for (name, amount) in &other.other {
            *self.other.entry(name.clone()).or_default() -= amount;
        }
    }

    /// The larger of each amount (an init container against the app containers).
    fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        for (name, amount) in &other.other {
            let mine = self.other.entry(name.clone()).or_default();
            *mine = (*mine).max(*amount);
        }
    }
}

/// A host port a pod holds: protocol, host IP (`0.0.0.0` for all) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Two ports clash on the same protocol and port when either listens on
    /// every address or both on the same one.
    pub fn clashes(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A pod as the scheduler sees it.
#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub priority: i32,
    /// `preemptionPolicy: Never`.
    pub never_preempts: bool,
    pub requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub node_selector: BTreeMap<String, String>,
    pub affinity: Option<Affinity>,
    pub tolerations: Vec<Toleration>,
    pub spread: Vec<TopologySpreadConstraint>,
    pub runtime_class: Option<String>,
    /// The controller owning the pod (kind/name), for default spreading.
    pub owner: Option<String>,
    /// `metadata.creationTimestamp` in seconds, for queue order.
    pub created: i64,
    /// The PersistentVolumeClaims the pod mounts.
    pub claims: Vec<String>,
    /// The nodes its bound local volumes pin it to, when they do (looked
    /// up before each decision, see `volumes`).
    pub volume_nodes: Option<Vec<String>>,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let mut requests = Resources::default();
        for container in &spec.containers {
            requests.add(&container_requests(container));
        }
        for init in spec.init_containers.iter().flatten() {
            requests.max(&container_requests(init));
        }
        if let Some(overhead) = &spec.overhead {
            requests.add(&Resources::from_map(overhead));
        }
        requests.pods = 1;
        let host_ports = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|port| *port > 0)?;
                Some(HostPort {
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    ip: p
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    port,
                })
            })
            .collect();
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| format!("{}/{}", o.kind, o.name));
        let claims = spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone())
            .collect();
        PodInfo {
            claims,
            volume_nodes: None,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            priority: spec.priority.unwrap_or(0),
            never_preempts: spec.preemption_policy.as_deref() == Some("Never"),
            requests,
            host_ports,
            node_selector: spec.node_selector.unwrap_or_default(),
            affinity: spec.affinity,
            tolerations: spec.tolerations.unwrap_or_default(),
            spread: spec.topology_spread_constraints.unwrap_or_default(),
            runtime_class: spec.runtime_class_name.filter(|c| !c.is_empty()),
            owner,
            created: meta
                .creation_timestamp
                .as_ref()
                .map_or(0, |t| t.0.as_second()),
        }
    }

    pub fn is(&self, namespace: &str, name: &str) -> bool {
        self.namespace == namespace && self.name == name
    }

    pub fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }

    /// Whether the pod has required affinity or anti-affinity to other pods
    /// (the part that needs every pod in the cluster to check).
    pub fn has_pod_affinity(&self) -> bool {
        self.affinity
            .as_ref()
            .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
    }

    pub fn required_anti_affinity(&self) -> bool {
        self.affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .is_some_and(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
                    .is_some_and(|t| !t.is_empty())
            })
    }
}

impl PartialEq for PodInfo {
    fn eq(&self, other: &PodInfo) -> bool {
        self.is(&other.namespace, &other.name)
    }
}

/// A container's requests; a resource with only a limit requests the limit,
/// as the API server's defaulting does in Kubernetes.
fn container_requests(container: &Container) -> Resources {
    let Some(resources) = &container.resources else {
        return Resources::default();
    };
    let mut map = resources.limits.clone().unwrap_or_default();
    map.extend(resources.requests.clone().unwrap_or_default());
    Resources::from_map(&map)
}

/// A node as the scheduler sees it (its object only; the pods on it are
/// kept by the cache).
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    /// `status.runtimeHandlers` names; `None` when the node reports none.
    pub runtime_handlers: Option<Vec<String>>,
}

impl NodeFacts {
    pub fn from_node(node: &Node) -> NodeFacts {
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let allocatable = status
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
            .map(Resources::from_map)
            .unwrap_or_default();
        let spec = node.spec.as_ref();
        let mut labels = node.metadata.labels.clone().unwrap_or_default();
        let name = node.metadata.name.clone().unwrap_or_default();
        labels
            .entry("kubernetes.io/hostname".into())
            .or_insert_with(|| name.clone());
        NodeFacts {
            name,
            labels,
            ready,
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            allocatable,
            runtime_handlers: status.and_then(|s| s.runtime_handlers.as_ref()).map(|h| {
                h.iter()
                    .filter_map(|h| h.name.clone())
                    .filter(|n| !n.is_empty())
                    .collect()
            }),
        }
    }
}

/// The pods bound to one node and what they hold.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub facts: NodeFacts,
    pub pods: Vec<Arc<PodInfo>>,
    pub requested: Resources,
    /// CPU and memory requested, counting a pod that states none as
    /// [`NONZERO_MILLI_CPU`] / [`NONZERO_MEMORY`] (for scoring only).
    pub nonzero: (i64, i64),
}

/// Requests assumed for scoring when a pod states none (kube-scheduler's
/// non-zero defaults: 100m CPU, 200 MiB memory).
pub const NONZERO_MILLI_CPU: i64 = 100;
pub const NONZERO_MEMORY: i64 = 200 << 20;

impl Resources {
    /// CPU and memory, with the scoring defaults for what is not stated.
    pub fn nonzero(&self) -> (i64, i64) {
        let cpu = if self.milli_cpu > 0 {
            self.milli_cpu
        } else {
            NONZERO_MILLI_CPU
        };
        let memory = if self.memory > 0 {
            self.memory
        } else {
            NONZERO_MEMORY
        };
        (cpu, memory)
    }
}

impl NodeInfo {
    pub fn new(facts: NodeFacts) -> NodeInfo {
        NodeInfo {
            facts,
            ..NodeInfo::default()
        }
    }

    pub fn add(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        let (cpu, memory) = pod.requests.nonzero();
        self.nonzero.0 += cpu;
        self.nonzero.1 += memory;
        self.pods.push(pod);
    }

    /// Remove a pod by uid (namespace/name when uids are absent).
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
        let at = self
            .pods
            .iter()
            .position(|p| p.namespace == namespace && p.name == name)?;
        let pod = self.pods.swap_remove(at);
        self.requested.sub(&pod.requests);
        let (cpu, memory) = pod.requests.nonzero();
        self.nonzero.0 -= cpu;
        self.nonzero.1 -= memory;
        Some(pod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_requests_sum_containers_and_take_the_largest_init_container() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "d"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Mi"}}},
                    {"name": "b", "resources": {"limits": {"cpu": "200m"}}},
                ],
                "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}],
                "overhead": {"cpu": "10m"}
            }
        }))
        .unwrap();
        let info = PodInfo::from_pod(&pod);
        assert_eq!(info.requests.milli_cpu, 1010);
        assert_eq!(info.requests.memory, 1 << 20);
        assert_eq!(info.requests.pods, 1);
    }
}
