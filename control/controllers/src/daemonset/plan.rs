//! What a DaemonSet needs, as a pure function of the set, the nodes, the
//! pods it controls and the hash of its current template.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::events::Note;
use crate::history;
use crate::pods::{is_active, is_available, is_ready, tolerates};

/// The writes that bring a DaemonSet's pods to its spec.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Nodes that need a pod.
    pub create: Vec<String>,
    /// Pods to delete: duplicates, failed pods, pods on nodes that no longer
    /// qualify, and old pods the rolling update replaces.
    pub delete: Vec<String>,
    pub status: DaemonSetStatus,
    /// When a ready pod turns available (minReadySeconds).
    pub requeue_after: Option<Duration>,
    /// `FailedDaemonPod` for each failed pod it replaces.
    pub events: Vec<Note>,
}

/// The tolerations every daemon pod gets, as Kubernetes adds them: daemons
/// keep running on nodes that are unschedulable, not ready or under
/// pressure.
pub fn default_tolerations() -> Vec<Toleration> {
    let toleration = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    };
    vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
}

/// Plan the DaemonSet given every node and the pods it controls.
pub fn plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    hash: &str,
    now: jiff::Timestamp,
) -> Plan {
    let spec = ds.spec.clone().unwrap_or_default();
    let min_ready = Duration::from_secs(spec.min_ready_seconds.unwrap_or(0).max(0) as u64);
    let mut plan = Plan::default();

    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
            && pod.metadata.deletion_timestamp.is_none()
        {
            // A failed daemon pod is replaced.
            plan.delete.push(name(pod));
            plan.events.push(Note::warning(
                "FailedDaemonPod",
                format!(
                    "Found failed daemon pod {}/{} on node {}, will try to kill it",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    name(pod),
                    node_of(pod)
                ),
            ));
            continue;
        }
        if !is_active(pod) {
            continue;
        }
        by_node.entry(node_of(pod)).or_default().push(pod);
    }

    let eligible: Vec<String> = nodes
        .iter()
        .filter(|n| should_run(&spec.template, n))
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let mut misscheduled = 0;
    for (node, on_node) in &by_node {
        if !eligible.contains(node) {
            misscheduled += 1;
            plan.delete.extend(on_node.iter().map(|p| name(p)));
        }
    }

    // One pod per eligible node: the oldest stays, extras go.
    let mut chosen: Vec<(&String, Option<&Pod>)> = Vec::new();
    for node in &eligible {
        let mut on_node = by_node.get(node).cloned().unwrap_or_default();
        on_node.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        if on_node.is_empty() && !plan.delete.iter().any(|d| node_has_failed(pods, node, d)) {
            plan.create.push(node.clone());
        }
        plan.delete.extend(on_node.iter().skip(1).map(|p| name(p)));
        chosen.push((node, on_node.first().copied()));
    }

    let desired = eligible.len() as i32;
    let available = |p: &Pod| is_available(p, min_ready, now);
    let updated = |p: &Pod| history::hash_of(&p.metadata) == Some(hash);
    let number_available = chosen
        .iter()
        .filter(|(_, p)| p.is_some_and(available))
        .count() as i32;

    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling {
        let max_unavailable = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.clone())
            .map_or(1, |v| scaled(&v, desired))
            .max(1);
        let mut unavailable = desired - number_available;
        // Old pods that are down anyway go first, then available ones while
        // the budget allows.
        for (_, pod) in &chosen {
            if let Some(pod) = pod
                && !updated(pod)
                && !available(pod)
            {
                plan.delete.push(name(pod));
            }
        }
        for (_, pod) in &chosen {
            if let Some(pod) = pod
                && !updated(pod)
                && available(pod)
                && unavailable < max_unavailable
            {
                plan.delete.push(name(pod));
                unavailable += 1;
            }
        }
    }

    plan.requeue_after = chosen
        .iter()
        .filter_map(|(_, p)| crate::pods::until_available(p.as_ref()?, min_ready, now))
        .min();
    let previous = ds.status.clone().unwrap_or_default();
    plan.status = DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: chosen.iter().filter(|(_, p)| p.is_some()).count() as i32,
        number_misscheduled: misscheduled,
        number_ready: chosen
            .iter()
            .filter(|(_, p)| p.is_some_and(is_ready))
            .count() as i32,
        updated_number_scheduled: Some(
            chosen
                .iter()
                .filter(|(_, p)| p.is_some_and(updated))
                .count() as i32,
        ),
        number_available: Some(number_available),
        number_unavailable: Some(desired - number_available),
        observed_generation: ds.metadata.generation,
        collision_count: previous.collision_count,
        conditions: previous.conditions,
    };
    plan
}

/// A node whose failed pod is being deleted gets its replacement on the
/// next round (after the deletion shows), not alongside it.
fn node_has_failed(pods: &[Arc<Pod>], node: &str, deleted: &str) -> bool {
    pods.iter()
        .any(|p| p.metadata.name.as_deref() == Some(deleted) && node_of(p) == node)
}

/// Whether a daemon pod from `template` belongs on `node`: the node
/// selector matches and every NoSchedule / NoExecute taint is tolerated.
pub fn should_run(template: &k8s_openapi::api::core::v1::PodTemplateSpec, node: &Node) -> bool {
    let pod_spec = template.spec.clone().unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selected = pod_spec
        .node_selector
        .as_ref()
        .is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let mut tolerations = pod_spec.tolerations.unwrap_or_default();
    tolerations.extend(default_tolerations());
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    selected
        && taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .all(|t| tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// The node a daemon pod is for: its binding, else the node its affinity
/// names.
pub fn node_of(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    if let Some(node) = spec
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
    {
        return node;
    }
    spec.and_then(|s| {
        s.affinity
            .as_ref()?
            .node_affinity
            .as_ref()?
            .required_during_scheduling_ignored_during_execution
            .as_ref()
    })
    .and_then(|sel| {
        sel.node_selector_terms.iter().find_map(|term| {
            term.match_fields.as_ref()?.iter().find_map(|f| {
                (f.key == "metadata.name" && f.operator == "In")
                    .then(|| f.values.as_ref()?.first().cloned())
                    .flatten()
            })
        })
    })
    .unwrap_or_default()
}

/// An int, or a percent of `total` rounded up (as DaemonSets round).
fn scaled(value: &IntOrString, total: i32) -> i32 {
    match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => s
            .trim_end_matches('%')
            .parse::<i64>()
            .map_or(1, |p| ((p * total as i64 + 99) / 100) as i32),
    }
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}
