//! Filters: can this node take this pod? Each failure is a [`Reason`] worded
//! as kube-scheduler words it, so `kubectl describe pod` reads the same.

use std::collections::{HashMap, HashSet};
use std::fmt;

use k8s_openapi::api::core::v1::{PodAffinityTerm, Taint, Toleration};

use crate::cluster::{Cluster, RuntimeClassInfo};
use crate::facts::{NodeInfo, PodInfo, Resources};
use crate::labels::{selects, term_matches, untolerated};

/// Why a node cannot take a pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Unschedulable,
    /// `{key: value}` of the first taint the pod does not tolerate.
    Taint(String),
    NodeAffinity,
    RuntimeHandler(String),
    Ports,
    VolumeNodeAffinity,
    Insufficient(String),
    TooManyPods,
    SpreadMissingLabel,
    Spread,
    PodAffinity,
    PodAntiAffinity,
    ExistingAntiAffinity,
}

impl Reason {
    /// Whether evicting lower-priority pods from the node can remove it:
    /// preemption frees resources and host ports, and removes pods that
    /// anti-affinity (the pod's, or theirs) keeps it away from. Required pod
    /// affinity is not (kube-scheduler: unschedulable and unresolvable).
    pub fn resolvable(&self) -> bool {
        matches!(
            self,
            Reason::Ports
                | Reason::Insufficient(_)
                | Reason::TooManyPods
                | Reason::PodAntiAffinity
                | Reason::ExistingAntiAffinity
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::Taint(taint) => write!(f, "node(s) had untolerated taint {taint}"),
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::RuntimeHandler(handler) => write!(
                f,
                "node(s) didn't have the runtime handler {handler:?} of the pod's RuntimeClass"
            ),
            Reason::Ports => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::VolumeNodeAffinity => f.write_str("node(s) had volume node affinity conflict"),
            Reason::Insufficient(resource) => write!(f, "Insufficient {resource}"),
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::SpreadMissingLabel => f.write_str(
                "node(s) didn't match pod topology spread constraints (missing required label)",
            ),
            Reason::Spread => f.write_str("node(s) didn't match pod topology spread constraints"),
            Reason::PodAffinity => f.write_str("node(s) didn't match pod affinity rules"),
            Reason::PodAntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::ExistingAntiAffinity => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
        }
    }
}

pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// What a decision computes once per pod before looking at nodes: the pod's
/// tolerations and selector with its RuntimeClass merged in, and the
/// cluster-wide counts that spread and pod affinity need.
pub struct PodContext<'p> {
    pub pod: &'p PodInfo,
    pub tolerations: Vec<Toleration>,
    pub node_selector: Vec<(String, String)>,
    pub handler: Option<String>,
    spread: Vec<SpreadCounts>,
    affinity: Option<AffinityDomains>,
}

/// Matching pods per domain of one `DoNotSchedule` spread constraint.
struct SpreadCounts {
    key: String,
    max_skew: i64,
    counts: HashMap<String, i64>,
    min: i64,
    self_match: i64,
}

/// Topology domains `(key, value)` holding pods that the pod's required
/// terms match, and those forbidden by existing pods' anti-affinity.
#[derive(Default)]
struct AffinityDomains {
    /// Per required affinity term: its key and the values with a match.
    affinity: Vec<(String, HashSet<String>)>,
    /// No pod anywhere matches the affinity terms, and the pod matches
    /// them itself: the first pod of a group may go anywhere.
    affinity_bootstrap: bool,
    anti: Vec<(String, HashSet<String>)>,
    existing_anti: HashSet<(String, String)>,
}

impl<'p> PodContext<'p> {
    pub fn new(pod: &'p PodInfo, cluster: &Cluster) -> PodContext<'p> {
        let class: Option<&RuntimeClassInfo> = pod
            .runtime_class
            .as_ref()
            .and_then(|c| cluster.runtime_classes.get(c));
        let mut tolerations = pod.tolerations.clone();
        let mut node_selector: Vec<(String, String)> = pod
            .node_selector
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(class) = class {
            tolerations.extend(class.tolerations.iter().cloned());
            node_selector.extend(
                class
                    .node_selector
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        let handler = pod
            .runtime_class
            .as_ref()
            .map(|c| class.map_or_else(|| c.clone(), |class| class.handler.clone()));
        let mut context = PodContext {
            pod,
            tolerations,
            node_selector,
            handler,
            spread: Vec::new(),
            affinity: None,
        };
        context.spread = spread_counts(&context, cluster);
        context.affinity = affinity_domains(pod, cluster, &HashSet::new());
        context
    }

    /// Nodes the pod's selector and required node affinity allow.
    pub fn node_affinity_ok(&self, node: &NodeInfo) -> bool {
        let labels = &node.facts.labels;
        if !self
            .node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            return false;
        }
        let required = self
            .pod
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        required.is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|t| term_matches(t, &node.facts.name, labels))
        })
    }

    /// The taints the node effectively has: its own, plus `not-ready` while
    /// it is not Ready and the lifecycle controller has not tainted it yet.
    fn taint_check(&self, node: &NodeInfo) -> Option<Reason> {
        let taints = &node.facts.taints;
        let implied;
        let taints: &[Taint] = if node.facts.ready
            || taints
                .iter()
                .any(|t| t.key == NOT_READY_TAINT || t.key == UNREACHABLE_TAINT)
        {
            taints
        } else {
            let mut all = taints.clone();
            all.push(Taint {
                key: NOT_READY_TAINT.into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            });
            implied = all;
            &implied
        };
        untolerated(taints, &self.tolerations, &["NoSchedule", "NoExecute"]).map(|t| {
            Reason::Taint(format!(
                "{{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            ))
        })
    }

    /// Every filter, in kube-scheduler's order; the failures of the first
    /// filter that fails. `extra` is what nominated pods hold on the node.
    pub fn check(&self, node: &NodeInfo, extra: Option<&Resources>) -> Result<(), Vec<Reason>> {
        let facts = &node.facts;
        if facts.unschedulable {
            let cordon = Taint {
                key: UNSCHEDULABLE_TAINT.into(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            };
            if untolerated(
                std::slice::from_ref(&cordon),
                &self.tolerations,
                &["NoSchedule"],
            )
            .is_some()
            {
                return Err(vec![Reason::Unschedulable]);
            }
        }
        if let Some(reason) = self.taint_check(node) {
            return Err(vec![reason]);
        }
        if !self.node_affinity_ok(node) {
            return Err(vec![Reason::NodeAffinity]);
        }
        if let (Some(handler), Some(handlers)) = (&self.handler, &facts.runtime_handlers)
            && !handlers.contains(handler)
        {
            return Err(vec![Reason::RuntimeHandler(handler.clone())]);
        }
        if !self.pod.host_ports.is_empty()
            && node.pods.iter().any(|p| {
                p.host_ports
                    .iter()
                    .any(|held| self.pod.host_ports.iter().any(|want| want.clashes(held)))
            })
        {
            return Err(vec![Reason::Ports]);
        }
        if let Some(nodes) = &self.pod.volume_nodes
            && !nodes.contains(&facts.name)
        {
            return Err(vec![Reason::VolumeNodeAffinity]);
        }
        let short = insufficient(
            &self.pod.requests,
            &node.requested,
            extra,
            &facts.allocatable,
        );
        if !short.is_empty() {
            return Err(short);
        }
        if let Some(reason) = self.spread_check(node) {
            return Err(vec![reason]);
        }
        if let Some(reason) = self.affinity_check(node) {
            return Err(vec![reason]);
        }
        Ok(())
    }

    fn spread_check(&self, node: &NodeInfo) -> Option<Reason> {
        for constraint in &self.spread {
            let Some(value) = node.facts.labels.get(&constraint.key) else {
                return Some(Reason::SpreadMissingLabel);
            };
            let here = constraint.counts.get(value).copied().unwrap_or(0);
            if here + constraint.self_match - constraint.min > constraint.max_skew {
                return Some(Reason::Spread);
            }
        }
        None
    }

    fn affinity_check(&self, node: &NodeInfo) -> Option<Reason> {
        self.affinity.as_ref()?.check(&node.facts.labels)
    }

    /// The pod (anti-)affinity filters for `node` as if the pods in
    /// `removed` were gone (preemption trying victims).
    pub fn affinity_without(
        &self,
        cluster: &Cluster,
        node: &NodeInfo,
        removed: &HashSet<(String, String)>,
    ) -> Option<Reason> {
        affinity_domains(self.pod, cluster, removed)?.check(&node.facts.labels)
    }
}

impl AffinityDomains {
    /// The first pod-affinity rule a node with `labels` breaks.
    fn check(&self, labels: &std::collections::BTreeMap<String, String>) -> Option<Reason> {
        let in_domain = |(key, values): &(String, HashSet<String>)| {
            labels.get(key).is_some_and(|v| values.contains(v))
        };
        if !self.affinity_bootstrap && !self.affinity.iter().all(in_domain) {
            return Some(Reason::PodAffinity);
        }
        if self.affinity_bootstrap
            && self
                .affinity
                .iter()
                .any(|(key, _)| !labels.contains_key(key))
        {
            return Some(Reason::PodAffinity);
        }
        if self.anti.iter().any(in_domain) {
            return Some(Reason::PodAntiAffinity);
        }
        if labels
            .iter()
            .any(|(k, v)| self.existing_anti.contains(&(k.clone(), v.clone())))
        {
            return Some(Reason::ExistingAntiAffinity);
        }
        None
    }
}

/// The resources the node lacks for the pod, as `Insufficient <name>` and
/// `Too many pods`.
pub fn insufficient(
    want: &Resources,
    used: &Resources,
    extra: Option<&Resources>,
    allocatable: &Resources,
) -> Vec<Reason> {
    let mut used = used.clone();
    if let Some(extra) = extra {
        used.add(extra);
    }
    let mut short = Vec::new();
    if allocatable.pods > 0 && used.pods + 1 > allocatable.pods {
        short.push(Reason::TooManyPods);
    }
    if want.milli_cpu > 0 && used.milli_cpu + want.milli_cpu > allocatable.milli_cpu {
        short.push(Reason::Insufficient("cpu".into()));
    }
    if want.memory > 0 && used.memory + want.memory > allocatable.memory {
        short.push(Reason::Insufficient("memory".into()));
    }
    for (name, amount) in &want.other {
        let have = allocatable.other.get(name).copied().unwrap_or(0);
        let held = used.other.get(name).copied().unwrap_or(0);
        if *amount > 0 && held + amount > have {
            short.push(Reason::Insufficient(name.clone()));
        }
    }
    short
}

fn spread_counts(context: &PodContext<'_>, cluster: &Cluster) -> Vec<SpreadCounts> {
    let pod = context.pod;
    let mut out = Vec::new();
    for constraint in &pod.spread {
        if constraint.when_unsatisfiable != "DoNotSchedule" {
            continue;
        }
        let selector = constraint.label_selector.clone().unwrap_or_default();
        let mut counts: HashMap<String, i64> = HashMap::new();
        for node in cluster.known_nodes() {
            let Some(value) = node.facts.labels.get(&constraint.topology_key) else {
                continue;
            };
            // nodeAffinityPolicy Honor (the default): only nodes the pod
            // could go to by its selector and affinity form domains.
            if !context.node_affinity_ok(node) {
                continue;
            }
            let matching = node
                .pods
                .iter()
                .filter(|p| p.namespace == pod.namespace && selects(&selector, &p.labels))
                .count() as i64;
            *counts.entry(value.clone()).or_default() += matching;
        }
        let min = counts.values().copied().min().unwrap_or(0);
        out.push(SpreadCounts {
            key: constraint.topology_key.clone(),
            max_skew: i64::from(constraint.max_skew),
            counts,
            min,
            self_match: i64::from(selects(&selector, &pod.labels)),
        });
    }
    out
}

/// Whether `term` (written on a pod in `owner_namespace`) selects `pod`.
pub fn term_selects(term: &PodAffinityTerm, owner_namespace: &str, pod: &PodInfo) -> bool {
    let namespace_ok = match (&term.namespaces, &term.namespace_selector) {
        (Some(list), _) if !list.is_empty() => list.contains(&pod.namespace),
        // An empty namespaceSelector means every namespace; namespace labels
        // are not read, so a non-empty one falls back to the pod's own.
        (_, Some(selector))
            if selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && selector
                    .match_expressions
                    .as_ref()
                    .is_none_or(|m| m.is_empty()) =>
        {
            true
        }
        _ => pod.namespace == owner_namespace,
    };
    namespace_ok
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| selects(s, &pod.labels))
}

/// The domains for `pod`'s affinity rules, leaving out the pods in `removed`.
fn affinity_domains(
    pod: &PodInfo,
    cluster: &Cluster,
    removed: &HashSet<(String, String)>,
) -> Option<AffinityDomains> {
    let gone = |p: &PodInfo| !removed.is_empty() && removed.contains(&p.key());
    let affinity = pod.affinity.as_ref();
    let required_affinity: &[PodAffinityTerm] = affinity
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default();
    let required_anti: &[PodAffinityTerm] = affinity
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default();
    let mut domains = AffinityDomains::default();
    // Existing pods' required anti-affinity that selects this pod.
    for (node, other) in cluster.anti_affinity_pods() {
        if gone(other) {
            continue;
        }
        let terms = other
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_deref()
            })
            .unwrap_or_default();
        for term in terms {
            if term_selects(term, &other.namespace, pod)
                && let Some(value) = node.facts.labels.get(&term.topology_key)
            {
                domains
                    .existing_anti
                    .insert((term.topology_key.clone(), value.clone()));
            }
        }
    }
    if required_affinity.is_empty() && required_anti.is_empty() {
        return (!domains.existing_anti.is_empty()).then_some(domains);
    }
    let matches = |terms: &[PodAffinityTerm]| -> Vec<(String, HashSet<String>)> {
        terms
            .iter()
            .map(|term| {
                let mut values = HashSet::new();
                for node in cluster.known_nodes() {
                    if let Some(value) = node.facts.labels.get(&term.topology_key)
                        && node
                            .pods
                            .iter()
                            .any(|p| !gone(p) && term_selects(term, &pod.namespace, p))
                    {
                        values.insert(value.clone());
                    }
                }
                (term.topology_key.clone(), values)
            })
            .collect()
    };
    domains.affinity = matches(required_affinity);
    domains.anti = matches(required_anti);
    domains.affinity_bootstrap = !domains.affinity.is_empty()
        && domains.affinity.iter().all(|(_, values)| values.is_empty())
        && required_affinity
            .iter()
            .all(|t| term_selects(t, &pod.namespace, pod));
    Some(domains)
}
