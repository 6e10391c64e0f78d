//! skiff-agent: the node agent, Skiff's kubelet.
//!
//! It talks to the control plane only through the Kubernetes API (the `kube`
//! client), so the same code runs inside `skiff up` and as a separate
//! `skiff node` process. Its jobs:
//!
//! - **Node**: registers the `Node` object (addresses, the port of its own HTTP
//!   server in `daemonEndpoints`, system info, capacity) and refreshes the Ready
//!   condition's heartbeat through `nodes/status` ([`node`]).
//! - **Pods**: watches the pods bound to it (`spec.nodeName=<node>`) and runs one
//!   [`PodWorker`](pod::worker::PodWorker) per pod. Each container follows an
//!   explicit state machine ([`container::machine`]) with kubelet's restart
//!   policies, CrashLoopBackOff / ImagePullBackOff back-off ([`backoff`]) and
//!   waiting reasons; the pod's phase and conditions are computed from the
//!   containers ([`pod::status`]) and written through `pods/status` when they change.
//!   Graceful deletion ends with the agent deleting the pod (grace period 0).
//! - **Events**: Pulling, Pulled, Created, Started, Failed, BackOff, Killing ([`events`]).
//! - **Logs**: one file per container attempt, served (whole, tailed, previous,
//!   followed live) at `GET /containerLogs/{ns}/{pod}/{container}` ([`logs`], [`http`]).
//!
//! Containers run through the narrow [`ContainerDriver`] trait; the Wasm runtime
//! implements it in [`wasm_driver`]. All API calls go through the [`Cluster`]
//! trait, implemented over `kube` by [`KubeCluster`], so the logic is tested
//! with in-memory doubles.
//!
//! ```no_run
//! use skiff_agent::{AgentConfig, ContainerDriver, NodeAgent};
//! use tokio_util::sync::CancellationToken;
//!
//! // `runtime` is the node's driver, e.g. a `skiff_wasm::WasmRuntime`
//! // (the `wasm` feature, on by default, implements the trait for it).
//! async fn run_node(runtime: impl ContainerDriver) -> Result<(), Box<dyn std::error::Error>> {
//!     let config = AgentConfig {
//!         node_name: "node-1".into(),
//!         data_dir: "/var/lib/skiff/node".into(),
//!         ..AgentConfig::default()
//!     };
//!     config.validate()?;
//!     let client = kube::Client::try_from(kube::Config::new("http://127.0.0.1:6443".parse()?))?;
//!     let cancel = CancellationToken::new();
//!     // Returns once `cancel` fires and every pod has stopped.
//!     NodeAgent::new(config, client, runtime).run(cancel).await?;
//!     Ok(())
//! }
//! ```

pub mod agent;
pub mod backoff;
pub mod claims;
pub mod cluster;
pub mod config;
pub mod container;
pub mod driver;
pub mod drivers;
pub mod events;
pub mod exec;
pub mod http;
pub mod kube_cluster;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod pod;
pub mod ports;
pub mod reclaim;
pub mod running;
pub mod sources;
#[cfg(test)]
mod testing;
pub mod usage;
pub mod volumes;
#[cfg(feature = "wasm")]
pub mod wasm_driver;

pub use agent::{AgentError, NodeAgent};
pub use cluster::{Cluster, ClusterError, PodChange};
pub use config::{AgentConfig, ConfigError};
pub use driver::{
    ContainerDriver, ExitStatus, MountSpec, PrepareError, PreparedImage, ProcessLimits,
    ProcessSpec, RunError,
};
pub use drivers::Drivers;
pub use kube_cluster::KubeCluster;
