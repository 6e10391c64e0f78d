//! The scheduling decision, kept pure so it is tested without a cluster:
//! filter the nodes (a sample of a big cluster, as kube-scheduler does),
//! score the feasible ones, and when none fits, see whether evicting
//! lower-priority pods would make room.

use std::collections::{BTreeMap, HashMap, HashSet};
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

/// kube-scheduler's default preemption: on each node whose failures
/// eviction could fix (resources, host ports, anti-affinity), remove every
/// lower-priority pod and check the pod fits, its pod affinity and
/// anti-affinity included; then keep back as many victims as still let it
/// fit, those whose eviction would break a PodDisruptionBudget first, then
/// the rest, most important first. Choose the node with the fewest budget
/// violations, then whose most important victim is least important, then
/// the smallest sum of priorities, then the fewest victims.
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
        match victims_on(context, cluster, node, extra.as_ref()) {
            Some(Victims { pods, violations }) => {
                let top = pods
                    .iter()
                    .map(|v| i64::from(v.priority))
                    .max()
                    .unwrap_or(i64::MIN);
                let sum: i64 = pods.iter().map(|v| i64::from(v.priority)).sum();
                let candidate = Candidate {
                    rank: (violations, top, sum, pods.len(), node.facts.name.clone()),
                    victims: pods,
                };
                if best.as_ref().is_none_or(|b| candidate.rank < b.rank) {
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
        Some(Candidate { rank, victims }) => Preemption::Victims(rank.4, victims),
        None => Preemption::None(summary(cluster.known_count(), counts)),
    }
}

/// A node preemption could use, ranked by (PodDisruptionBudget violations,
/// most important victim's priority, sum of the victims' priorities, how
/// many, node name): the smallest wins.
struct Candidate {
    rank: (usize, i64, i64, usize, String),
    victims: Vec<Arc<PodInfo>>,
}

/// The pods to evict from a node, and how many of them a
/// PodDisruptionBudget would rather keep.
#[derive(Debug)]
pub struct Victims {
    pub pods: Vec<Arc<PodInfo>>,
    pub violations: usize,
}

/// The fewest lower-priority pods to evict from `node` for `pod` to fit.
fn victims_on(
    context: &PodContext<'_>,
    cluster: &Cluster,
    node: &NodeInfo,
    extra: Option<&crate::facts::Resources>,
) -> Option<Victims> {
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
    let mut removed: HashSet<(String, String)> = HashSet::new();
    for victim in &lower {
        remaining.remove(&victim.namespace, &victim.name);
        removed.insert(victim.key());
    }
    if !fits_without(context, cluster, &remaining, extra, &removed) {
        return None;
    }
    // Keep back the most important first; newer pods go before older ones.
    lower.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.created.cmp(&b.created)));
    let (violating, harmless) = split_by_budgets(lower, cluster);
    let mut victims = Victims {
        pods: Vec::new(),
        violations: 0,
    };
    for (group, violates) in [(violating, true), (harmless, false)] {
        for candidate in group {
            let key = candidate.key();
            remaining.add(candidate.clone());
            removed.remove(&key);
            if !fits_without(context, cluster, &remaining, extra, &removed) {
                remaining.remove(&candidate.namespace, &candidate.name);
                removed.insert(key);
                victims.violations += usize::from(violates);
                victims.pods.push(candidate);
            }
        }
    }
    Some(victims)
}

/// Potential victims (most important first) split into those whose
/// eviction would take a PodDisruptionBudget below what it allows and the
/// rest, counting each budget down as kube-scheduler does.
pub fn split_by_budgets(
    pods: Vec<Arc<PodInfo>>,
    cluster: &Cluster,
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: HashMap<&(String, String), i32> = cluster
        .budgets
        .iter()
        .map(|(key, budget)| (key, budget.allowed))
        .collect();
    let mut violating = Vec::new();
    let mut harmless = Vec::new();
    for pod in pods {
        let mut violates = false;
        for (key, budget) in &cluster.budgets {
            if budget.covers(&pod)
                && let Some(left) = allowed.get_mut(key)
            {
                *left -= 1;
                violates |= *left < 0;
            }
        }
        if violates {
            violating.push(pod);
        } else {
            harmless.push(pod);
        }
    }
    (violating, harmless)
}

/// Whether the pod fits `node` (its pods as preemption would leave them,
/// `removed` the victims so far): resources, host ports, and pod affinity
/// and anti-affinity with the victims gone.
fn fits_without(
    context: &PodContext<'_>,
    cluster: &Cluster,
    node: &NodeInfo,
    extra: Option<&crate::facts::Resources>,
    removed: &HashSet<(String, String)>,
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
        && context.affinity_without(cluster, node, removed).is_none()
}
