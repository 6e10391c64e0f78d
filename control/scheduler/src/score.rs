//! Scores: among the nodes that can take the pod, which is best. The
//! plugins and weights of kube-scheduler's default profile, each scored 0–100:
//! least allocated (1), balanced allocation (1), node affinity preferred
//! terms (2), PreferNoSchedule taints (3), spreading (2), preferred pod
//! affinity (2).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::WeightedPodAffinityTerm;

use crate::cluster::Cluster;
use crate::facts::NodeInfo;
use crate::filter::{PodContext, term_selects};
use crate::labels::{selects, term_matches, tolerates};

const MAX: i64 = 100;

/// The best node's name; ties go to the first in search order.
pub fn best(context: &PodContext<'_>, feasible: &[&NodeInfo], cluster: &Cluster) -> Option<String> {
    match feasible {
        [] => return None,
        [only] => return Some(only.facts.name.clone()),
        _ => {}
    }
    let pod = context.pod;
    let (cpu, memory) = pod.requests.nonzero();
    let preferred_nodes = pod
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default();
    let affinity_terms = preferred_pod_terms(context, cluster);
    let raw: Vec<Raw> = feasible
        .iter()
        .map(|node| {
            let alloc = &node.facts.allocatable;
            let used_cpu = node.nonzero.0 + cpu;
            let used_memory = node.nonzero.1 + memory;
            let free = |used: i64, total: i64| {
                if total <= 0 {
                    0
                } else {
                    ((total - used).max(0) * MAX) / total
                }
            };
            let fraction = |used: i64, total: i64| {
                if total <= 0 {
                    1.0
                } else {
                    (used as f64 / total as f64).min(1.0)
                }
            };
            let deviation =
                (fraction(used_cpu, alloc.milli_cpu) - fraction(used_memory, alloc.memory)).abs()
                    / 2.0;
            Raw {
                least: (free(used_cpu, alloc.milli_cpu) + free(used_memory, alloc.memory)) / 2,
                balanced: ((1.0 - deviation) * MAX as f64) as i64,
                node_affinity: preferred_nodes
                    .iter()
                    .filter(|p| term_matches(&p.preference, &node.facts.name, &node.facts.labels))
                    .map(|p| i64::from(p.weight))
                    .sum(),
                intolerable: node
                    .facts
                    .taints
                    .iter()
                    .filter(|t| t.effect == "PreferNoSchedule")
                    .filter(|t| !context.tolerations.iter().any(|tol| tolerates(tol, t)))
                    .count() as i64,
                same_group: same_group_here(context, node),
                pod_affinity: affinity_terms
                    .iter()
                    .filter(|(_, key, values)| {
                        node.facts
                            .labels
                            .get(*key)
                            .is_some_and(|v| values.contains(v))
                    })
                    .map(|(weight, _, _)| *weight)
                    .sum(),
            }
        })
        .collect();
    let max_of = |f: fn(&Raw) -> i64| raw.iter().map(f).max().unwrap_or(0);
    let min_of = |f: fn(&Raw) -> i64| raw.iter().map(f).min().unwrap_or(0);
    let max_pref = max_of(|r| r.node_affinity);
    let max_taint = max_of(|r| r.intolerable);
    let max_same = max_of(|r| r.same_group);
    let (min_pa, max_pa) = (min_of(|r| r.pod_affinity), max_of(|r| r.pod_affinity));
    let mut best: Option<(i64, usize)> = None;
    for (i, r) in raw.iter().enumerate() {
        let scaled = |value: i64, max: i64| if max > 0 { value * MAX / max } else { 0 };
        let node_affinity = scaled(r.node_affinity, max_pref);
        let taints = MAX - scaled(r.intolerable, max_taint);
        let spread = MAX - scaled(r.same_group, max_same);
        let pod_affinity = scaled(r.pod_affinity - min_pa, max_pa - min_pa);
        let total =
            r.least + r.balanced + 2 * node_affinity + 3 * taints + 2 * spread + 2 * pod_affinity;
        if best.is_none_or(|(score, _)| total > score) {
            best = Some((total, i));
        }
    }
    best.map(|(_, i)| feasible[i].facts.name.clone())
}

/// One node's scores before normalising across the feasible nodes.
struct Raw {
    least: i64,
    balanced: i64,
    node_affinity: i64,
    intolerable: i64,
    same_group: i64,
    pod_affinity: i64,
}

/// Pods of the same group already on the node: those matching the pod's
/// ScheduleAnyway spread constraints, else (kube-scheduler's default
/// spreading) those of the same controller.
fn same_group_here(context: &PodContext<'_>, node: &NodeInfo) -> i64 {
    let pod = context.pod;
    let soft: Vec<_> = pod
        .spread
        .iter()
        .filter(|c| c.when_unsatisfiable == "ScheduleAnyway")
        .collect();
    if !soft.is_empty() {
        return soft
            .iter()
            .map(|c| {
                let selector = c.label_selector.clone().unwrap_or_default();
                node.pods
                    .iter()
                    .filter(|p| p.namespace == pod.namespace && selects(&selector, &p.labels))
                    .count() as i64
            })
            .sum();
    }
    match &pod.owner {
        Some(owner) => node
            .pods
            .iter()
            .filter(|p| p.owner.as_ref() == Some(owner) && p.namespace == pod.namespace)
            .count() as i64,
        None => 0,
    }
}

/// Preferred pod (anti-)affinity terms as (signed weight, topology key,
/// domain values that hold a matching pod).
fn preferred_pod_terms<'p>(
    context: &PodContext<'p>,
    cluster: &Cluster,
) -> Vec<(i64, &'p str, HashSet<String>)> {
    let pod = context.pod;
    let affinity = pod.affinity.as_ref();
    let attract: &[WeightedPodAffinityTerm] = affinity
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default();
    let repel: &[WeightedPodAffinityTerm] = affinity
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for (sign, terms) in [(1, attract), (-1, repel)] {
        for weighted in terms {
            let term = &weighted.pod_affinity_term;
            let mut values = HashSet::new();
            for node in cluster.known_nodes() {
                if let Some(value) = node.facts.labels.get(&term.topology_key)
                    && node
                        .pods
                        .iter()
                        .any(|p| term_selects(term, &pod.namespace, p))
                {
                    values.insert(value.clone());
                }
            }
            out.push((
                sign * i64::from(weighted.weight),
                term.topology_key.as_str(),
                values,
            ));
        }
    }
    out
}
