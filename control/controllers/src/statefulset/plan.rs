//! What a StatefulSet needs, as a pure function of the set, the pods it
//! controls and the hash of its current template.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;

use crate::history;
use crate::pods::{is_active, is_available, is_ready};

/// The writes that bring a StatefulSet's pods to its spec.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Ordinals to create (with their claims).
    pub create: Vec<i32>,
    /// Pods to delete: finished pods (to be recreated), ordinals beyond
    /// `replicas`, and the pod the rolling update replaces next.
    pub delete: Vec<String>,
    pub status: StatefulSetStatus,
    pub requeue_after: Option<Duration>,
}

/// Plan the set given the pods it controls; `update` is the hash of the
/// current template.
pub fn plan(sts: &StatefulSet, pods: &[Arc<Pod>], update: &str, now: jiff::Timestamp) -> Plan {
    let spec = sts.spec.clone().unwrap_or_default();
    let name = sts.metadata.name.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let start = spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let min_ready = Duration::from_secs(spec.min_ready_seconds.unwrap_or(0).max(0) as u64);
    let previous = sts.status.clone().unwrap_or_default();
    let mut plan = Plan::default();

    let mut by_ordinal: BTreeMap<i32, &Pod> = BTreeMap::new();
    for pod in pods {
        let Some(ordinal) = ordinal_of(&name, pod) else {
            continue;
        };
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if finished && pod.metadata.deletion_timestamp.is_none() {
            plan.delete.push(pod_name(pod));
        } else {
            by_ordinal.insert(ordinal, pod);
        }
    }
    let wanted = start..start + replicas;
    let alive = |p: &Pod| is_active(p);
    let healthy = |p: &Pod| is_active(p) && is_ready(p);

    // Scale up: every missing ordinal at once (Parallel), or the lowest one
    // once all before it are ready (OrderedReady).
    for ordinal in wanted.clone() {
        match by_ordinal.get(&ordinal) {
            Some(pod) if healthy(pod) => continue,
            Some(_) if parallel => continue,
            Some(_) => break,
            None if plan
                .delete
                .iter()
                .any(|d| *d == format!("{name}-{ordinal}")) =>
            {
                if parallel {
                    continue;
                } else {
                    break;
                }
            }
            None => {
                plan.create.push(ordinal);
                if !parallel {
                    break;
                }
            }
        }
    }

    // Scale down: highest ordinal first, one at a time unless Parallel, and
    // (OrderedReady) only while the others are healthy.
    let condemned: Vec<&Pod> = by_ordinal
        .iter()
        .rev()
        .filter(|(o, _)| !wanted.contains(o))
        .map(|(_, p)| *p)
        .filter(|p| alive(p))
        .collect();
    let all_healthy = wanted
        .clone()
        .all(|o| by_ordinal.get(&o).is_some_and(|p| healthy(p)));
    if parallel {
        plan.delete.extend(condemned.iter().map(|p| pod_name(p)));
    } else if plan.create.is_empty() && all_healthy {
        plan.delete.extend(condemned.first().map(|p| pod_name(p)));
    }

    // Rolling update: once every wanted pod is up and ready, replace the
    // highest-ordinal pod at or above the partition that runs an old
    // template.
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let partition = strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let terminating = by_ordinal
        .values()
        .any(|p| p.metadata.deletion_timestamp.is_some());
    if rolling && all_healthy && condemned.is_empty() && !terminating && plan.delete.is_empty() {
        let outdated = wanted
            .clone()
            .rev()
            .filter(|o| *o >= start + partition)
            .filter_map(|o| by_ordinal.get(&o))
            .find(|p| history::hash_of(&p.metadata) != Some(update));
        plan.delete.extend(outdated.map(|p| pod_name(p)));
    }

    let live: Vec<&Pod> = by_ordinal.values().copied().filter(|p| alive(p)).collect();
    let updated = live
        .iter()
        .filter(|p| history::hash_of(&p.metadata) == Some(update))
        .count() as i32;
    let current_revision = previous
        .current_revision
        .clone()
        .filter(|_| updated < replicas)
        .unwrap_or_else(|| format!("{name}-{update}"));
    let current_hash = current_revision
        .strip_prefix(&format!("{name}-"))
        .unwrap_or_default()
        .to_string();
    plan.requeue_after = live
        .iter()
        .filter_map(|p| crate::pods::until_available(p, min_ready, now))
        .min();
    plan.status = StatefulSetStatus {
        replicas: live.len() as i32,
        ready_replicas: Some(live.iter().filter(|p| is_ready(p)).count() as i32),
        available_replicas: Some(
            live.iter()
                .filter(|p| is_available(p, min_ready, now))
                .count() as i32,
        ),
        current_replicas: Some(
            live.iter()
                .filter(|p| history::hash_of(&p.metadata) == Some(current_hash.as_str()))
                .count() as i32,
        ),
        updated_replicas: Some(updated),
        current_revision: Some(current_revision),
        update_revision: Some(format!("{name}-{update}")),
        observed_generation: sts.metadata.generation,
        collision_count: previous.collision_count,
        conditions: previous.conditions,
    };
    plan
}

/// The ordinal in `<set>-<n>`, for pods of this set.
pub fn ordinal_of(set: &str, pod: &Pod) -> Option<i32> {
    pod.metadata
        .name
        .as_deref()?
        .strip_prefix(set)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}
