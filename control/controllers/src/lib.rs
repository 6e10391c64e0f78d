//! Skiff's controllers: the loops that turn Deployments into ReplicaSets,
//! ReplicaSets into pods, and owners' deletion into their dependents'.
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
pub mod gc;
pub mod history;
pub mod job;
mod names;
pub mod owned;
pub mod pods;
pub mod replicaset;
pub mod runtime;
pub mod statefulset;

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

/// All controllers of this crate, run together.
pub struct Controllers {
    client: kube::Client,
}

impl Controllers {
    pub fn new(client: kube::Client) -> Controllers {
        Controllers { client }
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
        );
    }
}
