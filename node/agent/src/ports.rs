//! The node ports where this node serves its pods' HTTP containers.
//!
//! Every Wasm pod shares the node's network, so a container's `containerPort`
//! cannot be reached at `podIP:containerPort`: the node listens on
//! `127.0.0.1:<hostPort>` (or a free port when `hostPort` is not set) instead.
//! This table says which, for the routing layer (in-process through
//! [`NodeAgent::ports`](crate::NodeAgent::ports)) and for everyone else through
//! `GET /pods/{namespace}/{name}/ports` on the agent's HTTP server.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::driver::ServedPort;
use crate::pod::PodIdentity;

/// One served port of one container, as the ports endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortEntry {
    pub container: String,
    /// The port's `name` in the container spec, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub container_port: u16,
    #[serde(rename = "hostIP")]
    pub host_ip: String,
    pub host_port: u16,
}

/// Served ports by pod (`namespace/name`), kept while the containers serve.
#[derive(Debug, Default)]
pub struct PortTable {
    pods: Mutex<HashMap<(String, String), Vec<PortEntry>>>,
}

impl PortTable {
    /// Records that `container` of `pod` now serves on `ports`.
    pub fn serving(&self, pod: &PodIdentity, container: &str, ports: &[ServedPort]) {
        let mut pods = self.pods.lock().expect("lock poisoned");
        let entries = pods
            .entry((pod.namespace.clone(), pod.name.clone()))
            .or_default();
        entries.retain(|e| e.container != container);
        entries.extend(ports.iter().map(|port| PortEntry {
            container: container.to_string(),
            name: port.name.clone(),
            container_port: port.container_port,
            host_ip: port.address.ip().to_string(),
            host_port: port.address.port(),
        }));
    }

    /// Forgets `container`'s ports once it stopped serving.
    pub fn stopped(&self, pod: &PodIdentity, container: &str) {
        let mut pods = self.pods.lock().expect("lock poisoned");
        let key = (pod.namespace.clone(), pod.name.clone());
        if let Some(entries) = pods.get_mut(&key) {
            entries.retain(|e| e.container != container);
            if entries.is_empty() {
                pods.remove(&key);
            }
        }
    }

    /// The ports a pod serves on now; `None` when it serves none.
    pub fn of_pod(&self, namespace: &str, name: &str) -> Option<Vec<PortEntry>> {
        let pods = self.pods.lock().expect("lock poisoned");
        pods.get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_ports_per_container() {
        let table = PortTable::default();
        let pod = PodIdentity {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
        };
        let served = |port: u16| ServedPort {
            name: Some("http".into()),
            container_port: 8080,
            address: ([127, 0, 0, 1], port).into(),
        };
        table.serving(&pod, "a", &[served(4000)]);
        table.serving(&pod, "b", &[served(4001)]);
        let entries = table.of_pod("ns", "p").unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].host_port, 4000);
        assert_eq!(
            serde_json::to_value(&entries[0]).unwrap(),
            serde_json::json!({"container": "a", "name": "http", "containerPort": 8080, "hostIP": "127.0.0.1", "hostPort": 4000})
        );
        table.stopped(&pod, "a");
        assert_eq!(table.of_pod("ns", "p").unwrap().len(), 1);
        table.stopped(&pod, "b");
        assert_eq!(table.of_pod("ns", "p"), None);
    }
}
