//! The node lifecycle controller: a node whose kubelet stops renewing its
//! Lease goes `Ready=Unknown` and gets the `node.kubernetes.io/unreachable`
//! taints (a node that reports NotReady gets `node.kubernetes.io/not-ready`),
//! its pods turn not Ready, and each pod is evicted once it has outstayed
//! its NoExecute toleration (the API server gives every pod 300 s for both
//! taints unless it says otherwise), so its owner replaces it elsewhere. A
//! node that comes back loses the taints.

mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use plan::{Health, NOT_READY, Plan, UNREACHABLE, plan};

use crate::runtime::{Backoff, key_of, run_controller};
use crate::{Error, owned};

/// Where kubelets keep their Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// How long a node may stay silent before it is Unknown
/// (kube-controller-manager's `--node-monitor-grace-period`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(40);

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    leases: Store<Lease>,
    grace: Duration,
    backoff: Backoff,
}

/// Run the node lifecycle controller until `cancel` fires.
pub async fn run(client: kube::Client, grace: Duration, cancel: CancellationToken) {
    let (pods, pod_events) = owned::watch_pods(&client);
    let (leases, lease_writer) = reflector::store();
    let lease_events = reflector(
        lease_writer,
        watcher(
            Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .touched_objects();
    let context = Arc::new(Context {
        client: client.clone(),
        pods,
        leases,
        grace,
        backoff: Backoff::default(),
    });
    let controller = Controller::new(Api::<Node>::all(client), watcher::Config::default())
        .watches_stream(lease_events, |lease: Lease| {
            lease.metadata.name.map(|n| ObjectRef::<Node>::new(&n))
        })
        .watches_stream(pod_events, |pod: Pod| {
            pod.spec
                .and_then(|s| s.node_name)
                .filter(|n| !n.is_empty())
                .map(|n| ObjectRef::<Node>::new(&n))
        });
    run_controller(
        "nodelifecycle",
        "node",
        controller,
        Duration::from_millis(50),
        cancel,
        reconcile,
        context,
    )
    .await;
}

async fn reconcile(node: Arc<Node>, context: Arc<Context>) -> Result<Action, Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    crate::runtime::cache_ready(&context.pods).await?;
    crate::runtime::cache_ready(&context.leases).await?;
    let renewed = context
        .leases
        .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE))
        .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
    let pods: Vec<Arc<Pod>> = context
        .pods
        .state()
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()))
        .collect();
    let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let plan = plan(&node, renewed, &refs, jiff::Timestamp::now(), context.grace);
    execute(&name, &plan, &context).await?;
    context.backoff.succeeded(&key_of(node.as_ref()));
    Ok(Action::requeue(
        plan.requeue_after.unwrap_or(Duration::from_secs(60)),
    ))
}

async fn execute(node: &str, plan: &Plan, context: &Context) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(context.client.clone());
    let params = PatchParams::default();
    if let Some(conditions) = &plan.conditions {
        tracing::info!(node, "node stopped renewing its lease: Ready=Unknown");
        let patch = json!({"status": {"conditions": conditions}});
        nodes
            .patch_status(node, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::write("updating the conditions of node", "", node, e))?;
    }
    if let Some(taints) = &plan.taints {
        tracing::info!(node, ?taints, "node taints");
        let patch = json!({"spec": {"taints": taints}});
        nodes
            .patch(node, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::write("tainting node", "", node, e))?;
    }
    for (namespace, name) in &plan.mark_not_ready {
        let pods: Api<Pod> = Api::namespaced(context.client.clone(), namespace);
        let now = jiff::Timestamp::now().to_string();
        let patch = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "NodeNotReady",
             "lastTransitionTime": now}]}});
        match pods
            .patch_status(name, &params, &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::write("marking not ready", namespace, name, e)),
        }
    }
    for (namespace, name) in &plan.evict {
        tracing::info!(node, pod = %format!("{namespace}/{name}"), "evicting (NoExecute taint)");
        owned::delete::<Pod>(&context.client, namespace, name).await?;
    }
    Ok(())
}

impl crate::runtime::HasBackoff for Context {
    fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}
