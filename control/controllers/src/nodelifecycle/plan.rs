//! What the node lifecycle controller does for one node, decided from the
//! node, its Lease and its pods at a given time.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::pods::tolerates;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The node conditions a kubelet reports, all set to Unknown when it stops.
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// How the node looks to the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// The kubelet says it is not ready.
    NotReady,
    /// The kubelet stopped renewing its Lease (and posting status).
    Unknown,
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// The node's new `status.conditions`, when they turn Unknown.
    pub conditions: Option<Vec<NodeCondition>>,
    /// The node's new `spec.taints`, when they change.
    pub taints: Option<Vec<Taint>>,
    /// Pods (namespace, name) whose Ready condition turns False.
    pub mark_not_ready: Vec<(String, String)>,
    /// Pods (namespace, name) to evict: a NoExecute taint they do not
    /// tolerate, or tolerate for less time than it has been there.
    pub evict: Vec<(String, String)>,
    pub requeue_after: Option<Duration>,
}

/// The last sign of life: the Lease's renew time, the Ready condition's
/// heartbeat, or the node's creation.
fn last_seen(node: &Node, lease_renewed: Option<Timestamp>) -> Option<Timestamp> {
    let heartbeat = ready_condition(node)
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    [lease_renewed, heartbeat, created]
        .into_iter()
        .flatten()
        .max()
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

pub fn plan(
    node: &Node,
    lease_renewed: Option<Timestamp>,
    pods: &[&Pod],
    now: Timestamp,
    grace: Duration,
) -> Plan {
    let mut plan = Plan::default();
    let seen = last_seen(node, lease_renewed);
    let silent_for = seen.map_or(Duration::ZERO, |s| {
        Duration::try_from(now.duration_since(s)).unwrap_or(Duration::ZERO)
    });
    let ready_status = ready_condition(node).map(|c| c.status.as_str());
    let health = if silent_for > grace || ready_status == Some("Unknown") {
        Health::Unknown
    } else if ready_status == Some("True") {
        Health::Ready
    } else {
        Health::NotReady
    };
    if health == Health::Unknown && silent_for > grace && ready_status != Some("Unknown") {
        plan.conditions = Some(unknown_conditions(node, now));
    }
    if health != Health::Unknown {
        // Look again when the Lease would lapse.
        plan.requeue_after = Some(grace.saturating_sub(silent_for) + Duration::from_secs(1));
    }

    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let taints = desired_taints(&current, health, now);
    if taints != current {
        plan.taints = Some(taints.clone());
    }

    for pod in pods {
        let (Some(namespace), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        let key = (namespace.clone(), name.clone());
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if finished || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if health != Health::Ready && pod_ready(pod) {
            plan.mark_not_ready.push(key.clone());
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        match eviction_time(&taints, &tolerations) {
            Eviction::Never => {}
            Eviction::At(at) if at <= now => plan.evict.push(key),
            Eviction::At(at) => {
                let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
                plan.requeue_after = Some(plan.requeue_after.map_or(wait, |r| r.min(wait)));
            }
        }
    }
    plan
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn unknown_conditions(node: &Node, now: Timestamp) -> Vec<NodeCondition> {
    let mut conditions: Vec<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for kind in KUBELET_CONDITIONS {
        let at = match conditions.iter().position(|c| c.type_ == kind) {
            Some(at) => at,
            None => {
                conditions.push(NodeCondition {
                    type_: kind.into(),
                    ..NodeCondition::default()
                });
                conditions.len() - 1
            }
        };
        let condition = &mut conditions[at];
        if condition.status != "Unknown" {
            condition.status = "Unknown".into();
            condition.last_transition_time = Some(Time(now));
        }
        condition.reason = Some("NodeStatusUnknown".into());
        condition.message = Some("Kubelet stopped posting node status.".into());
    }
    conditions
}

/// The node's taints with the lifecycle ones as `health` wants them; taints
/// that stay keep their `timeAdded` (tolerationSeconds count from it).
fn desired_taints(current: &[Taint], health: Health, now: Timestamp) -> Vec<Taint> {
    let wanted: &[&str] = match health {
        Health::Ready => &[],
        Health::NotReady => &[NOT_READY],
        Health::Unknown => &[UNREACHABLE],
    };
    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| {
            !(t.key == NOT_READY || t.key == UNREACHABLE) || wanted.contains(&t.key.as_str())
        })
        .cloned()
        .collect();
    for key in wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            if !taints.iter().any(|t| t.key == *key && t.effect == effect) {
                taints.push(Taint {
                    key: (*key).into(),
                    effect: effect.into(),
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                    value: None,
                });
            }
        }
    }
    taints
}

enum Eviction {
    Never,
    At(Timestamp),
}

/// When a pod must leave a node with these taints: at once for a NoExecute
/// taint it does not tolerate, after the shortest `tolerationSeconds`
/// otherwise, never when it tolerates them all without a limit.
fn eviction_time(taints: &[Taint], tolerations: &[Toleration]) -> Eviction {
    let mut earliest: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let added = taint
            .time_added
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let at = if matching.is_empty() {
            Some(added)
        } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            None
        } else {
            let seconds = matching
                .iter()
                .filter_map(|t| t.toleration_seconds)
                .min()
                .unwrap_or(0)
                .max(0);
            Some(added + jiff::SignedDuration::from_secs(seconds))
        };
        if let Some(at) = at {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
    }
    earliest.map_or(Eviction::Never, Eviction::At)
}
