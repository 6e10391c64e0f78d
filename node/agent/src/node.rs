//! The agent's Node object: what it registers (addresses, endpoints, system
//! info, capacity, labels) and the heartbeat that keeps it Ready.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::config::AgentConfig;
use crate::driver::{ContainerDriver, DriverCondition, error_chain};

pub const KUBELET_VERSION: &str = "v1.32.0-skiff";
pub const RUNTIME_VERSION: &str = "wasmtime://48";

/// Facts about the machine, read once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFacts {
    pub machine_id: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    pub cpus: usize,
    pub memory_kib: u64,
}

fn read_trimmed(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

impl MachineFacts {
    /// Reads the Linux sources kubelet uses; missing ones become "unknown" or 0.
    pub fn gather() -> MachineFacts {
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("PRETTY_NAME="))
                    .map(|value| value.trim_matches('"').to_string())
            });
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
                line.split_whitespace().nth(1)?.parse().ok()
            });
        let unknown = || "unknown".to_string();
        MachineFacts {
            machine_id: read_trimmed("/etc/machine-id").unwrap_or_else(unknown),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_else(unknown),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(unknown),
            os_image: os_image.unwrap_or_else(unknown),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_kib: memory_kib.unwrap_or(0),
        }
    }
}

/// Go's names for the architecture, which Kubernetes uses.
pub fn kubernetes_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The node's conditions: Ready, and no pressure of any kind (not measured yet).
pub fn conditions(since: Timestamp, now: Timestamp) -> Vec<NodeCondition> {
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(since)),
    };
    vec![
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ]
}

/// The Node as the agent registers it.
pub fn node_object(
    config: &AgentConfig,
    facts: &MachineFacts,
    ip: IpAddr,
    port: u16,
    since: Timestamp,
) -> Node {
    let mut labels = config.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), config.node_name.clone());
    labels.insert("kubernetes.io/os".into(), std::env::consts::OS.into());
    labels.insert("kubernetes.io/arch".into(), kubernetes_arch().into());
    let resources = BTreeMap::from([
        ("cpu".to_string(), Quantity(facts.cpus.to_string())),
        (
            "memory".to_string(),
            Quantity(format!("{}Ki", facts.memory_kib)),
        ),
        ("pods".to_string(), Quantity(config.max_pods.to_string())),
    ]);
    let address = |type_: &str, address: String| NodeAddress {
        type_: type_.to_string(),
        address,
    };
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(NodeStatus {
            addresses: Some(vec![
                address("InternalIP", ip.to_string()),
                address("Hostname", config.node_name.clone()),
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(port),
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: kubernetes_arch().to_string(),
                boot_id: facts.boot_id.clone(),
                container_runtime_version: RUNTIME_VERSION.to_string(),
                kernel_version: facts.kernel_version.clone(),
                kube_proxy_version: String::new(),
                kubelet_version: KUBELET_VERSION.to_string(),
                machine_id: facts.machine_id.clone(),
                operating_system: std::env::consts::OS.to_string(),
                os_image: facts.os_image.clone(),
                system_uuid: facts.machine_id.clone(),
            }),
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(conditions(since, since)),
            phase: None,
            ..NodeStatus::default()
        }),
    }
}

/// The drivers' own conditions (e.g. `OCIRuntimeReady`), each with the time
/// its status last changed (`changed` keeps those times between heartbeats).
fn driver_conditions(
    found: Vec<DriverCondition>,
    changed: &mut BTreeMap<String, (bool, Timestamp)>,
    now: Timestamp,
) -> Vec<NodeCondition> {
    found
        .into_iter()
        .map(|c| {
            let since = match changed.get(&c.type_) {
                Some((status, since)) if *status == c.status => *since,
                _ => {
                    changed.insert(c.type_.clone(), (c.status, now));
                    now
                }
            };
            NodeCondition {
                type_: c.type_,
                status: if c.status { "True" } else { "False" }.to_string(),
                reason: Some(c.reason),
                message: Some(c.message),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: Some(Time(since)),
            }
        })
        .collect()
}

/// How long a node's Lease stays valid without renewal (kubelet's default).
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// Renews the node's Lease in `kube-node-lease` and refreshes the conditions'
/// heartbeat every `interval` until cancelled, with
/// the driver's own conditions after the kubelet's four.
/// A failed heartbeat is logged and retried at the next tick.
pub async fn heartbeat(
    cluster: Arc<dyn Cluster>,
    name: String,
    interval: Duration,
    since: Timestamp,
    driver: Arc<dyn ContainerDriver>,
    cancel: CancellationToken,
) {
    let mut changed = BTreeMap::new();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; registration has just written the status.
    ticks.tick().await;
    loop {
        if let Err(error) = cluster.renew_lease(&name, LEASE_DURATION_SECONDS).await {
            tracing::warn!(node = %name, error = %error_chain(&error), "renewing the node lease failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = Timestamp::now();
        let mut all = conditions(since, now);
        all.extend(driver_conditions(
            driver.node_conditions(),
            &mut changed,
            now,
        ));
        let status = serde_json::json!({ "conditions": all });
        if let Err(error) = cluster.patch_node_status(&name, status).await {
            tracing::warn!(node = %name, error = %error_chain(&error), "node heartbeat failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> MachineFacts {
        MachineFacts {
            machine_id: "m1".into(),
            boot_id: "b1".into(),
            kernel_version: "6.1".into(),
            os_image: "Debian".into(),
            cpus: 2,
            memory_kib: 4_000_000,
        }
    }

    #[test]
    fn the_node_advertises_its_endpoint_and_capacity() {
        let config = AgentConfig {
            node_name: "n1".into(),
            ..AgentConfig::default()
        };
        let since = Timestamp::from_second(1_000).unwrap();
        let node = node_object(
            &config,
            &facts(),
            "127.0.0.1".parse().unwrap(),
            43210,
            since,
        );
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        let status = node.status.unwrap();
        let port = status
            .daemon_endpoints
            .unwrap()
            .kubelet_endpoint
            .unwrap()
            .port;
        assert_eq!(port, 43210);
        let addresses = status.addresses.unwrap();
        assert_eq!(
            (addresses[0].type_.as_str(), addresses[0].address.as_str()),
            ("InternalIP", "127.0.0.1")
        );
        let info = status.node_info.unwrap();
        assert_eq!(info.kubelet_version, "v1.32.0-skiff");
        assert_eq!(info.container_runtime_version, "wasmtime://48");
        let capacity = status.capacity.unwrap();
        assert_eq!(capacity["pods"], Quantity("110".into()));
        assert_eq!(capacity["memory"], Quantity("4000000Ki".into()));
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_refresh_the_ready_condition() {
        let (cluster, _changes) = crate::testing::FakeCluster::new();
        let cancel = CancellationToken::new();
        let since = Timestamp::now();
        let task = tokio::spawn(heartbeat(
            cluster.clone(),
            "n1".into(),
            Duration::from_secs(10),
            since,
            Arc::new(crate::testing::FakeDriver::default()),
            cancel.clone(),
        ));
        let recorded = cluster
            .wait_for("two heartbeats", |r| r.node_status_patches.len() >= 2)
            .await;
        cancel.cancel();
        task.await.unwrap();
        let conditions = recorded.node_status_patches[1]["conditions"]
            .as_array()
            .unwrap()
            .clone();
        let ready = conditions.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "True");
        assert!(ready["lastHeartbeatTime"].is_string());
        assert!(
            recorded.lease_renewals.len() >= 2,
            "{:?}",
            recorded.lease_renewals
        );
        assert_eq!(recorded.lease_renewals[0], "n1");
    }
}
