//! What a ReplicaSet needs, as a pure function of the set and the pods the
//! cache shows in its namespace.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;

use crate::pods::{controller_ref, is_active, is_available, is_ready, selects, until_available};

/// The writes that bring a ReplicaSet's pods to its spec.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Orphans that match the selector: give them our controller reference.
    pub adopt: Vec<String>,
    /// Pods we own that no longer match: drop our reference.
    pub release: Vec<String>,
    /// How many pods to create from the template.
    pub create: usize,
    /// Pods to delete, most expendable first.
    pub delete: Vec<String>,
    pub status: ReplicaSetStatus,
    /// When a ready pod turns available (minReadySeconds), to recount then.
    pub requeue_after: Option<Duration>,
}

impl Plan {
    /// Whether the plan touches any pod (status aside).
    pub fn changes_pods(&self) -> bool {
        !(self.adopt.is_empty()
            && self.release.is_empty()
            && self.create == 0
            && self.delete.is_empty())
    }
}

/// Plan the ReplicaSet `rs` given every pod in its namespace.
pub fn plan(rs: &ReplicaSet, pods: &[Arc<Pod>], now: jiff::Timestamp) -> Plan {
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let spec = rs.spec.as_ref();
    let selector = spec.map(|s| s.selector.clone()).unwrap_or_default();
    let desired = spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
    let min_ready =
        Duration::from_secs(spec.and_then(|s| s.min_ready_seconds).unwrap_or(0).max(0) as u64);
    let deleting = rs.metadata.deletion_timestamp.is_some();

    let mut plan = Plan::default();
    let mut mine: Vec<&Pod> = Vec::new();
    for pod in pods {
        let matches = selects(&selector, pod.metadata.labels.as_ref());
        match controller_ref(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches {
                    mine.push(pod);
                } else {
                    plan.release.push(name(pod));
                }
            }
            Some(_) => {}
            None if matches && !deleting && is_active(pod) => {
                plan.adopt.push(name(pod));
                mine.push(pod);
            }
            None => {}
        }
    }
    let active: Vec<&Pod> = mine.iter().copied().filter(|p| is_active(p)).collect();

    if !deleting {
        if active.len() < desired {
            plan.create = desired - active.len();
        } else if active.len() > desired {
            let mut ranked = active.clone();
            ranked.sort_by_key(|p| deletion_rank(p, now));
            plan.delete = ranked[..active.len() - desired]
                .iter()
                .map(|p| name(p))
                .collect();
        }
    }

    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            template_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| is_available(p, min_ready, now))
        .count();
    plan.requeue_after = active
        .iter()
        .filter_map(|p| until_available(p, min_ready, now))
        .min();
    let previous = rs.status.clone().unwrap_or_default();
    plan.status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully_labeled as i32),
        ready_replicas: Some(ready as i32),
        available_replicas: Some(available as i32),
        observed_generation: rs.metadata.generation,
        conditions: previous.conditions,
    };
    plan
}

/// Sort key: smaller goes first. Unscheduled before scheduled, pending before
/// running, not ready before ready, ready more recently before ready longer,
/// more restarts before fewer, newer before older.
fn deletion_rank(pod: &Pod, now: jiff::Timestamp) -> impl Ord {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let ready_for = crate::pods::ready_since(pod).map(|since| now.duration_since(since).as_secs());
    let restarts: i32 = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (
        scheduled,
        phase,
        ready_for.is_some(),
        ready_for,
        Reverse(restarts),
        Reverse(created),
    )
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}
