//! Skiff's controllers: the loops that turn Deployments into ReplicaSets,
//! ReplicaSets into pods, Services' selected pods into EndpointSlices and
//! Endpoints, and owners' deletion into their dependents'.
//!
//! Every controller has one shape, kube-runtime's [`kube::runtime::Controller`]:
//! a watch-fed cache of its kind, a reconcile per object (never two at once
//! for the same object), debounced triggers from the objects it owns, retries
//! with per-object exponential back-off ([`runtime::Backoff`]) and a tracing
//! span per reconcile. Each reconcile is split into a pure `plan` (unit-tested
//! in this crate) and a thin step that performs it through the API. They talk
//! to the API server only through `kube`, so they run the same inside
//! `skiff up` or against any Kubernetes-compatible server.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) {
//! let cancel = tokio_util::sync::CancellationToken::new();
//! skiff_controllers::Controllers::new(client).run(cancel).await;
//! # }
//! ```

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod history;
pub mod hpa;
pub mod ingress;
pub mod job;
mod names;
pub mod nodelifecycle;
pub mod owned;
pub mod pdb;
pub mod pods;
pub mod quota;
pub mod replicaset;
pub mod runtime;
pub mod statefulset;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// Why a reconcile failed; the controller retries it with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {namespace}/{name}")]
    Write {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading {what} in {namespace}")]
    Read {
        what: &'static str,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("the watch cache was dropped (shutting down)")]
    CacheGone,
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl Error {
    pub(crate) fn write(
        action: &'static str,
        namespace: &str,
        name: &str,
        source: kube::Error,
    ) -> Error {
        Error::Write {
            action,
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        }
    }
}

/// Settings of the controllers that have any.
#[derive(Clone)]
pub struct ControllersConfig {
    /// How long a node may go without renewing its Lease before it is
    /// marked Unknown and tainted unreachable.
    pub node_grace: std::time::Duration,
    /// Where the HorizontalPodAutoscaler reads pod usage; `None` reads the
    /// `metrics.k8s.io` API.
    pub metrics: Option<Arc<dyn hpa::PodMetrics>>,
}

impl Default for ControllersConfig {
    fn default() -> ControllersConfig {
        ControllersConfig {
            node_grace: nodelifecycle::DEFAULT_GRACE,
            metrics: None,
        }
    }
}

/// All controllers of this crate, run together.
pub struct Controllers {
    client: kube::Client,
    config: ControllersConfig,
}

impl Controllers {
    pub fn new(client: kube::Client) -> Controllers {
        Controllers::with_config(client, ControllersConfig::default())
    }

    pub fn with_config(client: kube::Client, config: ControllersConfig) -> Controllers {
        Controllers { client, config }
    }

    /// Run every controller until `cancel` fires and each has stopped.
    pub async fn run(self, cancel: CancellationToken) {
        tokio::join!(
            replicaset::run(self.client.clone(), cancel.child_token()),
            deployment::run(self.client.clone(), cancel.child_token()),
            job::run(self.client.clone(), cancel.child_token()),
            cronjob::run(self.client.clone(), cancel.child_token()),
            daemonset::run(self.client.clone(), cancel.child_token()),
            statefulset::run(self.client.clone(), cancel.child_token()),
            gc::run(self.client.clone(), cancel.child_token()),
            endpoints::run(self.client.clone(), cancel.child_token()),
            ingress::run(self.client.clone(), cancel.child_token()),
            pdb::run(self.client.clone(), cancel.child_token()),
            quota::run(self.client.clone(), cancel.child_token()),
            hpa::run(
                self.client.clone(),
                self.config
                    .metrics
                    .clone()
                    .unwrap_or_else(|| Arc::new(hpa::MetricsApi {
                        client: self.client.clone()
                    })),
                cancel.child_token()
            ),
            nodelifecycle::run(
                self.client.clone(),
                self.config.node_grace,
                cancel.child_token()
            ),
        );
    }
}
