//! The scheduling decision, kept pure so it is tested without a cluster:
//! filter the nodes (a sample of a big cluster, as kube-scheduler does),
//! score the feasible ones, and when none fits, see whether evicting
//! lower-priority pods would make room.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::facts::{NodeInfo, PodInfo};
use crate::filter::{PodContext, Reason, insufficient};
use crate::score;

/// What to do with a pending pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Bind(String),
    /// No node fits; evicting `victims` from `node` would make room. The
    /// message explains why nothing fits now (the FailedScheduling event).
    Preempt {
        node: String,
        victims: Vec<Arc<PodInfo>>,
        message: String,
    },
    Unschedulable(String),
}

/// How many feasible nodes to find before scoring (kube-scheduler's
/// adaptive `percentageOfNodesToScore`: 50 % minus 1 % per 125 nodes, at
/// least 5 %, at least 100 nodes).
pub fn nodes_to_find(total: usize) -> usize {
    if total < 100 {
        return total;
    }
    let percent = 50usize.saturating_sub(total / 125).max(5);
    (total * percent / 100).max(100)
}

/// Decide for one pod. Moves `cluster.next_start` on, so consecutive
/// decisions look at different parts of a big cluster.
pub fn decide(cluster: &mut Cluster, pod: &PodInfo) -> Decision {
    let context = PodContext::new(pod, cluster);
    let key = pod.key();
    // A pod that preempted goes back to its nominated node if it fits now.
    if let Some(node) = cluster.nominated_node(&key)
        && let Some(info) = cluster.node(node)
        && context
            .check(
                info,
                cluster.nominated_on(node, pod.priority, &key).as_ref(),
            )
            .is_ok()
    {
        return Decision::Bind(node.to_string());
    }
    let slots = cluster.slot_count();
    let want = nodes_to_find(cluster.known_count());
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(slots));
    let mut failures: Vec<(&NodeInfo, Vec<Reason>)> = Vec::new();
    let start = cluster.next_start % slots.max(1);
    let mut looked = 0;
    for step in 0..slots {
        if feasible.len() >= want && want > 0 {
            break;
        }
        looked = step + 1;
        let Some(node) = cluster.slot_at((start + step) % slots) else {
            continue;
        };
        let extra = cluster.nominated_on(&node.facts.name, pod.priority, &key);
        match context.check(node, extra.as_ref()) {
            Ok(()) => feasible.push(node),
            Err(reasons) => failures.push((node, reasons)),
        }
    }
    let next = (start + looked) % slots.max(1);
    let decision = if let Some(best) = score::best(&context, &feasible, cluster) {
        Decision::Bind(best)
    } else {
        let message = unschedulable_message(cluster.known_count(), &failures);
        match preemption(&context, cluster, &failures) {
            Preemption::Victims(node, victims) => Decision::Preempt {
                node,
                victims,
                message,
            },
            Preemption::NotEligible => Decision::Unschedulable(format!(
                "{message} preemption: not eligible due to preemptionPolicy=Never."
            )),
            Preemption::None(why) => {
                Decision::Unschedulable(format!("{message} preemption: {why}"))
            }
        }
    };
    cluster.next_start = next;
    decision
}

/// `0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient cpu.`
/// — counts per reason, sorted as kube-scheduler sorts them.
pub fn unschedulable_message(total: usize, failures: &[(&NodeInfo, Vec<Reason>)]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, reasons) in failures {
        for reason in reasons {
            *counts.entry(reason.to_string()).or_default() += 1;
        }
    }
    summary(total, counts)
}

fn summary(total: usize, counts: BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = counts
        .into_iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    parts.sort();
    if parts.is_empty() {
        format!("0/{total} nodes are available.")
    } else {
        format!("0/{total} nodes are available: {}.", parts.join(", "))
    }
}

enum Preemption {
    Victims(String, Vec<Arc<PodInfo>>),
    NotEligible,
    None(String),
}

/// kube-scheduler's default preemption, for resources and host ports: on
/// each node whose failures eviction could fix, remove every lower-priority
/// pod, check the pod fits, then keep back as many victims as still fit
/// (highest priority first). Choose the node whose most important victim is
/// least important, then the smallest sum of priorities, then the fewest
/// victims.
fn preemption(
    context: &PodContext<'_>,
    cluster: &Cluster,
    failures: &[(&NodeInfo, Vec<Reason>)],
) -> Preemption {
    let pod = context.pod;
    if pod.never_preempts {
        return Preemption::NotEligible;
    }
    let key = pod.key();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Option<Candidate> = None;
    for (node, reasons) in failures {
        if !reasons.iter().all(Reason::resolvable) {
            *counts
                .entry("Preemption is not helpful for scheduling".into())
                .or_default() += 1;
            continue;
        }
        let extra = cluster.nominated_on(&node.facts.name, pod.priority, &key);
        match victims_on(context, node, extra.as_ref()) {
            Some(victims) => {
                let top = victims
                    .iter()
                    .map(|v| i64::from(v.priority))
                    .max()
                    .unwrap_or(i64::MIN);
                let sum: i64 = victims.iter().map(|v| i64::from(v.priority)).sum();
                let candidate = (top, sum, victims.len(), node.facts.name.clone(), victims);
                let better = best.as_ref().is_none_or(|b| {
                    (candidate.0, candidate.1, candidate.2, &candidate.3) < (b.0, b.1, b.2, &b.3)
                });
                if better {
                    best = Some(candidate);
                }
            }
            None => {
                *counts
                    .entry("No preemption victims found for incoming pod".into())
                    .or_default() += 1
            }
        }
    }
    match best {
        Some((_, _, _, node, victims)) => Preemption::Victims(node, victims),
        None => Preemption::None(summary(cluster.known_count(), counts)),
    }
}

/// A node preemption could use: (most important victim's priority, sum of
/// the victims' priorities, how many, node name, the victims).
type Candidate = (i64, i64, usize, String, Vec<Arc<PodInfo>>);

/// The fewest lower-priority pods to evict from `node` for `pod` to fit.
fn victims_on(
    context: &PodContext<'_>,
    node: &NodeInfo,
    extra: Option<&crate::facts::Resources>,
) -> Option<Vec<Arc<PodInfo>>> {
    let pod = context.pod;
    let mut lower: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if lower.is_empty() {
        return None;
    }
    let mut remaining = node.clone();
    for victim in &lower {
        remaining.remove(&victim.namespace, &victim.name);
    }
    if !fits_without(context, &remaining, extra) {
        return None;
    }
    // Keep back the most important first; newer pods go before older ones.
    lower.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.created.cmp(&b.created)));
    let mut victims = Vec::new();
    for candidate in lower {
        remaining.add(candidate.clone());
        if !fits_without(context, &remaining, extra) {
            remaining.remove(&candidate.namespace, &candidate.name);
            victims.push(candidate);
        }
    }
    Some(victims)
}

fn fits_without(
    context: &PodContext<'_>,
    node: &NodeInfo,
    extra: Option<&crate::facts::Resources>,
) -> bool {
    let pod = context.pod;
    let ports_free = pod.host_ports.is_empty()
        || !node.pods.iter().any(|p| {
            p.host_ports
                .iter()
                .any(|held| pod.host_ports.iter().any(|want| want.clashes(held)))
        });
    ports_free
        && insufficient(
            &pod.requests,
            &node.requested,
            extra,
            &node.facts.allocatable,
        )
        .is_empty()
}
