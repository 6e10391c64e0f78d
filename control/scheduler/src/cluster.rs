//! The scheduler's picture of the cluster: nodes, the pods bound to each,
//! pods nominated by preemption, and RuntimeClasses. Updated from watches and
//! by the scheduler's own assumptions (a pod counts on its node from the
//! moment it is chosen, before the binding lands).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::facts::{NodeFacts, NodeInfo, PodInfo, Resources};
use crate::labels::selects;

/// What a RuntimeClass adds to scheduling: its handler, and its
/// `scheduling.nodeSelector` / `tolerations`, merged into the pod's.
#[derive(Debug, Clone, Default)]
pub struct RuntimeClassInfo {
    pub handler: String,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
}

impl RuntimeClassInfo {
    pub fn from_class(class: &RuntimeClass) -> RuntimeClassInfo {
        let scheduling = class.scheduling.clone().unwrap_or_default();
        RuntimeClassInfo {
            handler: class.handler.clone(),
            node_selector: scheduling.node_selector.unwrap_or_default(),
            tolerations: scheduling.tolerations.unwrap_or_default(),
        }
    }
}

type Key = (String, String);

/// What preemption reads from a PodDisruptionBudget: which pods it covers
/// and how many of them may be disrupted now.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    pub namespace: String,
    pub selector: LabelSelector,
    /// `status.disruptionsAllowed`.
    pub allowed: i32,
    /// `status.disruptedPods`: evictions already counted against it.
    pub disrupted: HashSet<String>,
}

impl Budget {
    pub fn from_pdb(pdb: &PodDisruptionBudget) -> Budget {
        let status = pdb.status.clone().unwrap_or_default();
        Budget {
            namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
            selector: pdb
                .spec
                .as_ref()
                .and_then(|s| s.selector.clone())
                .unwrap_or_default(),
            allowed: status.disruptions_allowed,
            disrupted: status
                .disrupted_pods
                .unwrap_or_default()
                .into_keys()
                .collect(),
        }
    }

    /// Whether evicting `pod` counts against this budget (as kube-scheduler
    /// counts it: an empty selector covers nothing here).
    pub fn covers(&self, pod: &PodInfo) -> bool {
        let empty = self
            .selector
            .match_labels
            .as_ref()
            .is_none_or(|m| m.is_empty())
            && self
                .selector
                .match_expressions
                .as_ref()
                .is_none_or(|e| e.is_empty());
        pod.namespace == self.namespace
            && !empty
            && selects(&self.selector, &pod.labels)
            && !self.disrupted.contains(&pod.name)
    }
}

#[derive(Debug, Default)]
struct Slot {
    info: NodeInfo,
    /// The Node object exists (a slot may hold pods bound to a node that
    /// is not, or no longer, known).
    known: bool,
}

#[derive(Debug, Default)]
pub struct Cluster {
    slots: Vec<Slot>,
    index: HashMap<String, usize>,
    placed: HashMap<Key, String>,
    /// Pods waiting for preemption victims to leave, by node.
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    nominated_node: HashMap<Key, String>,
    /// How many placed pods have required anti-affinity (0 skips the scan).
    anti_pods: usize,
    pub runtime_classes: HashMap<String, RuntimeClassInfo>,
    /// PodDisruptionBudgets by namespace and name.
    pub budgets: HashMap<Key, Budget>,
    /// Where the next search for nodes starts (kube-scheduler rotates it so
    /// sampling a part of a big cluster spreads over all of it).
    pub next_start: usize,
}

impl Cluster {
    fn slot(&mut self, node: &str) -> &mut Slot {
        let at = match self.index.get(node) {
            Some(at) => *at,
            None => {
                self.slots.push(Slot {
                    info: NodeInfo::new(NodeFacts {
                        name: node.to_string(),
                        ..NodeFacts::default()
                    }),
                    known: false,
                });
                self.index.insert(node.to_string(), self.slots.len() - 1);
                self.slots.len() - 1
            }
        };
        &mut self.slots[at]
    }

    pub fn upsert_node(&mut self, facts: NodeFacts) {
        let slot = self.slot(&facts.name.clone());
        slot.info.facts = facts;
        slot.known = true;
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(at) = self.index.get(name).copied() {
            self.slots[at].known = false;
            if self.slots[at].info.pods.is_empty() {
                self.drop_slot(at);
            }
        }
    }

    fn drop_slot(&mut self, at: usize) {
        let slot = self.slots.swap_remove(at);
        self.index.remove(&slot.info.facts.name);
        if let Some(moved) = self.slots.get(at) {
            self.index.insert(moved.info.facts.name.clone(), at);
        }
    }

    /// Record `pod` on `node` (bound, or assumed while its binding is sent).
    pub fn place(&mut self, node: &str, pod: Arc<PodInfo>) {
        let key = pod.key();
        self.unplace(&key.0, &key.1);
        self.clear_nomination(&key);
        self.anti_pods += usize::from(pod.required_anti_affinity());
        self.slot(node).info.add(pod);
        self.placed.insert(key, node.to_string());
    }

    /// Forget a pod's place (deleted, finished, or its binding failed).
    pub fn unplace(&mut self, namespace: &str, name: &str) -> Option<String> {
        let key = (namespace.to_string(), name.to_string());
        let node = self.placed.remove(&key)?;
        if let Some(at) = self.index.get(&node).copied() {
            if let Some(pod) = self.slots[at].info.remove(namespace, name) {
                self.anti_pods -= usize::from(pod.required_anti_affinity());
            }
            if !self.slots[at].known && self.slots[at].info.pods.is_empty() {
                self.drop_slot(at);
            }
        }
        Some(node)
    }

    pub fn node_of(&self, namespace: &str, name: &str) -> Option<&str> {
        self.placed
            .get(&(namespace.to_string(), name.to_string()))
            .map(String::as_str)
    }

    pub fn nominate(&mut self, node: &str, pod: Arc<PodInfo>) {
        let key = pod.key();
        self.clear_nomination(&key);
        self.nominated
            .entry(node.to_string())
            .or_default()
            .push(pod);
        self.nominated_node.insert(key, node.to_string());
    }

    pub fn clear_nomination(&mut self, key: &Key) {
        if let Some(node) = self.nominated_node.remove(key)
            && let Some(list) = self.nominated.get_mut(&node)
        {
            list.retain(|p| (&p.namespace, &p.name) != (&key.0, &key.1));
        }
    }

    pub fn nominated_node(&self, key: &Key) -> Option<&str> {
        self.nominated_node.get(key).map(String::as_str)
    }

    /// What pods nominated to `node` with at least `priority` hold there
    /// (other than `except`), so lower-priority pods do not take the room
    /// that preemption freed.
    pub fn nominated_on(&self, node: &str, priority: i32, except: &Key) -> Option<Resources> {
        let list = self.nominated.get(node)?;
        let mut held = Resources::default();
        let mut any = false;
        for pod in list {
            if pod.priority >= priority && (&pod.namespace, &pod.name) != (&except.0, &except.1) {
                held.add(&pod.requests);
                any = true;
            }
        }
        any.then_some(held)
    }

    /// The nodes whose Node object exists, in a stable order.
    pub fn known_nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.slots.iter().filter(|s| s.known).map(|s| &s.info)
    }

    /// Every slot, known or not, by position (for rotation).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub fn slot_at(&self, at: usize) -> Option<&NodeInfo> {
        let slot = self.slots.get(at)?;
        slot.known.then_some(&slot.info)
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).and_then(|at| self.slot_at(*at))
    }

    pub fn known_count(&self) -> usize {
        self.slots.iter().filter(|s| s.known).count()
    }

    /// Bound pods with required anti-affinity, with their node.
    pub fn anti_affinity_pods(&self) -> impl Iterator<Item = (&NodeInfo, &Arc<PodInfo>)> {
        let any = self.anti_pods > 0;
        self.slots
            .iter()
            .filter(move |s| any && s.known)
            .flat_map(|s| {
                s.info
                    .pods
                    .iter()
                    .filter(|p| p.required_anti_affinity())
                    .map(move |p| (&s.info, p))
            })
    }
}
