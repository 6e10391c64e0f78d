//! Admission for new pods: the mutating steps Kubernetes' default admission
//! plugins take before a pod is stored.
//!
//! - Priority: `priorityClassName` (or the global default class) sets
//!   `spec.priority` and `spec.preemptionPolicy`.
//! - DefaultTolerationSeconds: a pod that does not tolerate the
//!   `node.kubernetes.io/not-ready` / `unreachable` NoExecute taints gets
//!   tolerations for 300 s, so the node lifecycle controller evicts it five
//!   minutes after its node fails.
//! - ResourceQuota: a pod that would take the namespace past a quota's
//!   `pods`, `cpu`/`requests.cpu`, `memory`/`requests.memory`, `limits.cpu`
//!   or `limits.memory` is Forbidden ("exceeded quota"), as Kubernetes words it.

use serde_json::{Value, json};
use skiff_quantity::scaled_or_zero;
use skiff_store::Store;

use crate::error::{ApiError, ApiResult};
use crate::objects::from_kv;

/// Seconds a pod stays on a failed node unless it says otherwise.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

const NODE_FAILURE_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

pub async fn pod(store: &Store, pod: &mut Value) -> ApiResult<()> {
    crate::kinds::priorityclass::admit_pod(store, pod).await?;
    default_tolerations(pod);
    quota(store, pod).await
}

/// The quota resources a pod uses: (name, amount in milli-units for CPU,
/// base units otherwise).
fn usage(pod: &Value) -> [(&'static [&'static str], i64); 5] {
    let mut requests = (0, 0);
    let mut limits = (0, 0);
    for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let resources = &container["resources"];
        let amount = |map: &str, name: &str, exponent: i32| {
            resources[map][name]
                .as_str()
                .map_or(0, |q| scaled_or_zero(q, exponent))
        };
        // A resource with only a limit requests the limit.
        let request = |name: &str, exponent: i32| {
            if resources["requests"][name].is_string() {
                amount("requests", name, exponent)
            } else {
                amount("limits", name, exponent)
            }
        };
        requests.0 += request("cpu", -3);
        requests.1 += request("memory", 0);
        limits.0 += amount("limits", "cpu", -3);
        limits.1 += amount("limits", "memory", 0);
    }
    [
        (&["pods", "count/pods"], 1),
        (&["cpu", "requests.cpu"], requests.0),
        (&["memory", "requests.memory"], requests.1),
        (&["limits.cpu"], limits.0),
        (&["limits.memory"], limits.1),
    ]
}

/// An amount as the quota message prints it (CPU in cores or millicores).
fn shown(name: &str, amount: i64) -> String {
    if name.contains("cpu") {
        if amount % 1000 == 0 {
            (amount / 1000).to_string()
        } else {
            format!("{amount}m")
        }
    } else {
        amount.to_string()
    }
}

fn live(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && !matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
}

async fn quota(store: &Store, pod: &Value) -> ApiResult<()> {
    let Some(namespace) = pod["metadata"]["namespace"].as_str() else {
        return Ok(());
    };
    let quotas = store
        .range(&crate::kinds::quota::resource_quota().prefix(Some(namespace)))
        .await?;
    if quotas.kvs.is_empty() {
        return Ok(());
    }
    let wanted = usage(pod);
    let mut used = wanted.map(|(names, _)| (names, 0i64));
    let pods = store
        .range(&crate::kinds::pod::resource().prefix(Some(namespace)))
        .await?;
    for kv in &pods.kvs {
        let other = from_kv(kv)?;
        if live(&other) {
            for (total, (_, amount)) in used.iter_mut().zip(usage(&other)) {
                total.1 += amount;
            }
        }
    }
    for kv in &quotas.kvs {
        let quota = from_kv(kv)?;
        let hard = &quota["spec"]["hard"];
        let (mut requested, mut current, mut limited) = (Vec::new(), Vec::new(), Vec::new());
        for ((names, want), (_, have)) in wanted.iter().zip(used.iter()) {
            for name in *names {
                let Some(limit) = hard[*name].as_str() else {
                    continue;
                };
                let exponent = if name.contains("cpu") { -3 } else { 0 };
                let limit = scaled_or_zero(limit, exponent);
                if *want > 0 && have + want > limit {
                    requested.push(format!("{name}={}", shown(name, *want)));
                    current.push(format!("{name}={}", shown(name, *have)));
                    limited.push(format!("{name}={}", shown(name, limit)));
                }
            }
        }
        if !requested.is_empty() {
            return Err(ApiError::Forbidden(format!(
                "pods {:?} is forbidden: exceeded quota: {}, requested: {}, used: {}, limited: {}",
                pod["metadata"]["name"].as_str().unwrap_or_default(),
                quota["metadata"]["name"].as_str().unwrap_or_default(),
                requested.join(","),
                current.join(","),
                limited.join(",")
            )));
        }
    }
    Ok(())
}

/// Add the node-failure tolerations a pod lacks.
pub fn default_tolerations(pod: &mut Value) {
    let spec = &mut pod["spec"];
    if !spec.is_object() {
        return;
    }
    let mut tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    for key in NODE_FAILURE_TAINTS {
        let covered = tolerations.iter().any(|t| {
            let effect_ok = t["effect"]
                .as_str()
                .is_none_or(|e| e.is_empty() || e == "NoExecute");
            let exists = t["operator"].as_str() == Some("Exists");
            let key_ok = match t["key"].as_str().filter(|k| !k.is_empty()) {
                Some(k) => k == key,
                None => exists,
            };
            effect_ok && key_ok
        });
        if !covered {
            tolerations.push(json!({
                "key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS
            }));
        }
    }
    spec["tolerations"] = Value::Array(tolerations);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_uses_its_requests_or_limits() {
        let pod = json!({"spec": {"containers": [
            {"resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "1", "memory": "64Mi"}}},
            {"resources": {}}
        ]}});
        let used = usage(&pod);
        assert_eq!(used[0].1, 1);
        assert_eq!(used[1].1, 250);
        assert_eq!(used[2].1, 64 << 20, "memory requests default to the limit");
        assert_eq!(used[3].1, 1000);
        assert_eq!(shown("requests.cpu", 1500), "1500m");
        assert_eq!(shown("limits.cpu", 2000), "2");
    }

    #[test]
    fn node_failure_tolerations_are_added_once() {
        let mut pod = json!({"spec": {"containers": []}});
        default_tolerations(&mut pod);
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap().clone();
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[1]["key"], "node.kubernetes.io/unreachable");
        assert_eq!(tolerations[1]["tolerationSeconds"], 300);
        default_tolerations(&mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);

        let mut own = json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 5}]}});
        default_tolerations(&mut own);
        let list = own["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(list.len(), 2, "only not-ready is added");
        assert_eq!(list[0]["tolerationSeconds"], 5);

        let mut everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_tolerations(&mut everything);
        assert_eq!(
            everything["spec"]["tolerations"].as_array().unwrap().len(),
            1
        );
    }
}
