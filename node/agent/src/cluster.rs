//! Everything the agent asks of the API server, behind one small trait so the
//! pod workers and the agent loop can be tested without a server. The real
//! implementation, over the `kube` client, is [`KubeCluster`](crate::KubeCluster).

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Node, PersistentVolume, PersistentVolumeClaim, Pod, PodStatus, Secret,
};

/// A change in the set of pods bound to this node, as the watch reports it.
#[derive(Debug, Clone)]
pub enum PodChange {
    /// The watch (re)started: a full listing follows, ended by `Listed`.
    Relisting,
    /// A pod was created or changed (or appears in a listing).
    Applied(Box<Pod>),
    /// A pod was removed from the store.
    Deleted(Box<Pod>),
    /// The listing that began with `Relisting` is complete; pods not in it are gone.
    Listed,
}

/// Why a call to the API server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{action} {object} failed")]
    Request {
        /// What the agent was doing, e.g. "patching status of pod".
        action: &'static str,
        /// `namespace/name` or the node's name.
        object: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("watching the pods bound to this node failed")]
    Watch {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The agent's view of the API server.
pub trait Cluster: Send + Sync + 'static {
    /// Creates the Node, or updates its labels if it exists, then writes its status.
    fn register_node<'a>(&'a self, node: &'a Node) -> BoxFuture<'a, Result<(), ClusterError>>;

    /// Merge-patches `status` through the `nodes/status` subresource.
    fn patch_node_status<'a>(
        &'a self,
        name: &'a str,
        status: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;

    /// Creates or renews the node's `coordination.k8s.io/v1` Lease in
    /// `kube-node-lease` (holder = the node, `renewTime` = now).
    fn renew_lease<'a>(
        &'a self,
        node_name: &'a str,
        duration_seconds: i32,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;

    /// Lists and then watches the pods with `spec.nodeName=<node_name>` in all
    /// namespaces, relisting when the watch expires. Errors are reported and the
    /// stream goes on (retrying with back-off).
    fn watch_pods(&self, node_name: &str) -> BoxStream<'static, Result<PodChange, ClusterError>>;

    /// Merge-patches the pod's `status` through `pods/status`.
    fn patch_pod_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a PodStatus,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;

    /// Deletes the pod for good (`gracePeriodSeconds=0`), only if its uid still matches.
    fn delete_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;

    /// Reads a ConfigMap (env and volumes); `None` when it does not exist.
    fn get_config_map<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, ClusterError>>;

    /// Reads a Secret (`imagePullSecrets`, env, volumes); `None` when it does not exist.
    fn get_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, ClusterError>>;

    /// Creates a core/v1 Event in the event's namespace.
    fn create_event<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), ClusterError>>;

    /// Reads a PersistentVolumeClaim; `None` when it does not exist. (The default
    /// says this cluster has no claims, for stand-ins that do not need them.)
    fn get_claim<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersistentVolumeClaim>, ClusterError>> {
        no_volumes(
            "reading persistentvolumeclaim",
            format!("{namespace}/{name}"),
        )
    }

    /// Reads a PersistentVolume; `None` when it does not exist.
    fn get_volume<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersistentVolume>, ClusterError>> {
        no_volumes("reading persistentvolume", name.to_string())
    }

    /// Creates a PersistentVolume, then merge-patches its `status`; `false` when
    /// one of that name exists already (nothing is changed then).
    fn create_volume<'a>(
        &'a self,
        volume: &'a PersistentVolume,
    ) -> BoxFuture<'a, Result<bool, ClusterError>> {
        no_volumes(
            "creating persistentvolume",
            volume.metadata.name.clone().unwrap_or_default(),
        )
    }

    /// Merge-patches a claim: `patch` on the object (guarded by the
    /// `metadata.resourceVersion` it may carry), then `status` on `/status`.
    fn patch_claim<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        patch: serde_json::Value,
        status: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        let _ = (patch, status);
        no_volumes(
            "binding persistentvolumeclaim",
            format!("{namespace}/{name}"),
        )
    }

    /// Lists and then watches every PersistentVolume and every claim, for the
    /// reclaimer: a volume created or changed, a claim removed. (The default
    /// never reports anything.)
    fn watch_storage(&self) -> BoxStream<'static, Result<StorageChange, ClusterError>> {
        futures::stream::pending().boxed()
    }

    /// Deletes a PersistentVolume; gone already is fine.
    fn delete_volume<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ClusterError>> {
        no_volumes("deleting persistentvolume", name.to_string())
    }

    /// Merge-patches a PersistentVolume's `status`.
    fn patch_volume_status<'a>(
        &'a self,
        name: &'a str,
        status: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        let _ = status;
        no_volumes("writing status of persistentvolume", name.to_string())
    }
}

/// What the storage watch reports to the reclaimer.
#[derive(Debug)]
pub enum StorageChange {
    /// A PersistentVolume was created or changed (or appears in a listing).
    Volume(Box<PersistentVolume>),
    /// A PersistentVolume was removed.
    VolumeDeleted(String),
    /// A claim was removed: its namespace, name and uid.
    ClaimDeleted {
        namespace: String,
        name: String,
        uid: String,
    },
}

fn no_volumes<T: Send + 'static>(
    action: &'static str,
    object: String,
) -> BoxFuture<'static, Result<T, ClusterError>> {
    async move {
        Err(ClusterError::Request {
            action,
            object,
            source: "this cluster offers no persistent volumes".into(),
        })
    }
    .boxed()
}
