//! The scheduling decision, kept pure so it is tested without a cluster.

use k8s_openapi::api::core::v1::Node;

/// What the scheduler needs to know about a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub ready: bool,
    pub unschedulable: bool,
    /// Pods bound to the node and not finished.
    pub pods: usize,
    /// `status.allocatable.pods`, if reported.
    pub max_pods: Option<usize>,
}

impl NodeFacts {
    pub fn from_node(node: &Node, pods: usize) -> NodeFacts {
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let max_pods = status
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get("pods"))
            .and_then(|q| q.0.parse().ok());
        NodeFacts {
            name: node.metadata.name.clone().unwrap_or_default(),
            ready,
            unschedulable: node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
            pods,
            max_pods,
        }
    }
}

/// Pick the node for a pod: Ready, schedulable nodes with room, the least
/// loaded first (ties by name, so the choice is stable). On failure, the
/// reason in `kubectl describe`'s words: `0/3 nodes are available: …`.
pub fn pick_node(nodes: &[NodeFacts]) -> Result<String, String> {
    let mut not_ready = 0;
    let mut cordoned = 0;
    let mut full = 0;
    let mut best: Option<&NodeFacts> = None;
    for node in nodes {
        if !node.ready {
            not_ready += 1;
        } else if node.unschedulable {
            cordoned += 1;
        } else if node.max_pods.is_some_and(|max| node.pods >= max) {
            full += 1;
        } else if best.is_none_or(|b| (node.pods, &node.name) < (b.pods, &b.name)) {
            best = Some(node);
        }
    }
    if let Some(node) = best {
        return Ok(node.name.clone());
    }
    let mut reasons = Vec::new();
    if not_ready > 0 {
        reasons.push(format!("{not_ready} node(s) were not ready"));
    }
    if cordoned > 0 {
        reasons.push(format!("{cordoned} node(s) were unschedulable"));
    }
    if full > 0 {
        reasons.push(format!("{full} Too many pods"));
    }
    let mut message = format!("0/{} nodes are available", nodes.len());
    if !reasons.is_empty() {
        message.push_str(": ");
        message.push_str(&reasons.join(", "));
    }
    message.push('.');
    Err(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, pods: usize) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            ready,
            unschedulable: false,
            pods,
            max_pods: Some(110),
        }
    }

    #[test]
    fn picks_the_least_loaded_ready_node() {
        let nodes = [node("a", true, 3), node("b", true, 1), node("c", false, 0)];
        assert_eq!(pick_node(&nodes), Ok("b".into()));
    }

    #[test]
    fn explains_why_nothing_fits() {
        let mut cordoned = node("b", true, 0);
        cordoned.unschedulable = true;
        let mut full = node("c", true, 110);
        full.max_pods = Some(110);
        let err = pick_node(&[node("a", false, 0), cordoned, full]).unwrap_err();
        assert_eq!(
            err,
            "0/3 nodes are available: 1 node(s) were not ready, 1 node(s) were unschedulable, 1 Too many pods."
        );
        assert_eq!(pick_node(&[]).unwrap_err(), "0/0 nodes are available.");
    }
}
