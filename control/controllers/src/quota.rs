//! The ResourceQuota status controller: `status.hard` mirrors the spec and
//! `status.used` counts what the namespace's pods request and limit, and how
//! many objects of each counted kind exist (what `kubectl describe quota`
//! shows). The API server's admission refuses pods that would exceed it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use skiff_scheduler::facts::{PodInfo, Resources};
use tokio_util::sync::CancellationToken;

use crate::runtime::{Backoff, HasBackoff, key_of, run_controller};
use crate::{Error, owned, pods};

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    backoff: Backoff,
}

/// Run the ResourceQuota controller until `cancel` fires.
pub async fn run(client: kube::Client, cancel: CancellationToken) {
    let (pods, pod_events) = owned::watch_pods(&client);
    let controller = Controller::new(
        Api::<ResourceQuota>::all(client.clone()),
        watcher::Config::default(),
    );
    let quotas = controller.store();
    let context = Arc::new(Context {
        client,
        pods,
        backoff: Backoff::default(),
    });
    let controller = controller.watches_stream(pod_events, move |pod: Pod| {
        let namespace = pod.metadata.namespace.clone();
        quotas
            .state()
            .iter()
            .filter(|q| q.metadata.namespace == namespace)
            .map(|q| ObjectRef::from_obj(q.as_ref()))
            .collect::<Vec<_>>()
    });
    run_controller(
        "resourcequota",
        "resourcequota",
        controller,
        Duration::from_millis(200),
        cancel,
        reconcile,
        context,
    )
    .await;
}

impl HasBackoff for Context {
    fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}

async fn reconcile(quota: Arc<ResourceQuota>, context: Arc<Context>) -> Result<Action, Error> {
    crate::runtime::cache_ready(&context.pods).await?;
    let namespace = quota.metadata.namespace.clone().unwrap_or_default();
    let in_namespace: Vec<Arc<Pod>> = context
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .collect();
    let refs: Vec<&Pod> = in_namespace.iter().map(|p| p.as_ref()).collect();
    let counts = object_counts(&context.client, &namespace, &quota).await?;
    let status = plan(&quota, &refs, &counts);
    owned::patch_status(
        &context.client,
        quota.as_ref(),
        quota.status.as_ref(),
        &status,
    )
    .await?;
    context.backoff.succeeded(&key_of(quota.as_ref()));
    // Object counts other than pods are not watched: look again now and then.
    Ok(Action::requeue(Duration::from_secs(10)))
}

/// How many objects of each counted kind the namespace holds, for the hard
/// limits that ask (listed only then).
async fn object_counts(
    client: &kube::Client,
    namespace: &str,
    quota: &ResourceQuota,
) -> Result<BTreeMap<&'static str, usize>, Error> {
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let wants = |names: &[&str]| names.iter().any(|n| hard.contains_key(*n));
    let mut counts = BTreeMap::new();
    let read = |what: &'static str| {
        move |source| Error::Read {
            what,
            namespace: namespace.to_string(),
            source,
        }
    };
    let params = kube::api::ListParams::default();
    if wants(&["services", "count/services"]) {
        let n = Api::<Service>::namespaced(client.clone(), namespace)
            .list_metadata(&params)
            .await
            .map_err(read("services"))?
            .items
            .len();
        counts.insert("services", n);
    }
    if wants(&["configmaps", "count/configmaps"]) {
        let n = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .list_metadata(&params)
            .await
            .map_err(read("configmaps"))?
            .items
            .len();
        counts.insert("configmaps", n);
    }
    if wants(&["secrets", "count/secrets"]) {
        let n = Api::<Secret>::namespaced(client.clone(), namespace)
            .list_metadata(&params)
            .await
            .map_err(read("secrets"))?
            .items
            .len();
        counts.insert("secrets", n);
    }
    if wants(&["persistentvolumeclaims", "count/persistentvolumeclaims"]) {
        let n = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
            .list_metadata(&params)
            .await
            .map_err(read("persistentvolumeclaims"))?
            .items
            .len();
        counts.insert("persistentvolumeclaims", n);
    }
    Ok(counts)
}

/// The quota's status given the namespace's pods and object counts.
pub fn plan(
    quota: &ResourceQuota,
    pods: &[&Pod],
    counts: &BTreeMap<&'static str, usize>,
) -> ResourceQuotaStatus {
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let active: Vec<&&Pod> = pods.iter().filter(|p| pods::is_active(p)).collect();
    let mut requests = Resources::default();
    let mut limits = Resources::default();
    for pod in &active {
        requests.add(&PodInfo::from_pod(pod).requests);
        limits.add(&pod_limits(pod));
    }
    let mut used = BTreeMap::new();
    for name in hard.keys() {
        let value = match name.as_str() {
            "pods" | "count/pods" => Some(active.len().to_string()),
            "cpu" | "requests.cpu" => Some(cpu(requests.milli_cpu)),
            "memory" | "requests.memory" => Some(requests.memory.to_string()),
            "limits.cpu" => Some(cpu(limits.milli_cpu)),
            "limits.memory" => Some(limits.memory.to_string()),
            other => {
                let kind = other.strip_prefix("count/").unwrap_or(other);
                counts.get(kind).map(|n| n.to_string())
            }
        };
        if let Some(value) = value {
            used.insert(name.clone(), Quantity(value));
        }
    }
    ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(used),
    }
}

/// Millicores as Kubernetes prints them: `2`, or `1500m`.
fn cpu(milli: i64) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

fn pod_limits(pod: &Pod) -> Resources {
    let mut total = Resources::default();
    for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        if let Some(limits) = container.resources.as_ref().and_then(|r| r.limits.as_ref()) {
            total.add(&Resources::from_map(limits));
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn used_counts_active_pods_their_requests_limits_and_objects() {
        let pod = |name: &str, phase: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "x", "resources": {
                    "requests": {"cpu": "250m", "memory": "64Mi"},
                    "limits": {"cpu": "500m", "memory": "128Mi"}}}]},
                "status": {"phase": phase}
            }))
            .unwrap()
        };
        let quota: ResourceQuota = serde_json::from_value(json!({
            "metadata": {"name": "q", "namespace": "default"},
            "spec": {"hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "1Gi",
                              "services": "2", "count/configmaps": "5"}}
        }))
        .unwrap();
        let pods = [
            pod("a", "Running"),
            pod("b", "Pending"),
            pod("done", "Succeeded"),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let counts = BTreeMap::from([("services", 1), ("configmaps", 3)]);
        let status = plan(&quota, &refs, &counts);
        let used = status.used.unwrap();
        let get = |k: &str| used.get(k).map(|q| q.0.clone());
        assert_eq!(get("pods").as_deref(), Some("2"));
        assert_eq!(get("requests.cpu").as_deref(), Some("500m"));
        assert_eq!(
            get("limits.memory").as_deref(),
            Some(&*(256u64 << 20).to_string())
        );
        assert_eq!(get("services").as_deref(), Some("1"));
        assert_eq!(get("count/configmaps").as_deref(), Some("3"));
        assert_eq!(status.hard.unwrap().len(), 5);
    }
}
