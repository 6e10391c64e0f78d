use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use super::plan;

fn now() -> jiff::Timestamp {
    "2026-01-01T00:10:00Z".parse().unwrap()
}

fn ds(strategy: Value, node_selector: Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds-uid", "generation": 2},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": strategy,
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"nodeSelector": node_selector, "containers": [{"name": "c", "image": "x"}]}}
        }
    }))
    .unwrap()
}

fn node(name: &str, labels: Value, spec: Value) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec}))
            .unwrap(),
    )
}

/// A daemon pod on `node` running the template with `hash`, ready or not.
fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Arc<Pod> {
    let conditions = if ready {
        json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}])
    } else {
        json!([])
    };
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kube-system", "creationTimestamp": "2026-01-01T00:00:00Z",
                         "labels": {"app": "agent", "controller-revision-hash": hash}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "conditions": conditions}
        }))
        .unwrap(),
    )
}

fn three_nodes() -> Vec<Arc<Node>> {
    vec![
        node("n1", json!({"disk": "ssd"}), json!({})),
        node("n2", json!({"disk": "ssd"}), json!({})),
        node("n3", json!({"disk": "ssd"}), json!({})),
    ]
}

#[test]
fn one_pod_per_eligible_node() {
    let nodes = vec![
        node("n1", json!({"disk": "ssd"}), json!({})),
        // A taint nothing tolerates: no daemon.
        node(
            "n2",
            json!({"disk": "ssd"}),
            json!({"taints": [{"key": "gpu", "effect": "NoSchedule"}]}),
        ),
        // Unschedulable: daemons still run (the default tolerations).
        node(
            "n3",
            json!({"disk": "ssd"}),
            json!({"unschedulable": true, "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}),
        ),
        // Not selected.
        node("n4", json!({"disk": "hdd"}), json!({})),
    ];
    let set = ds(json!({"type": "RollingUpdate"}), json!({"disk": "ssd"}));
    let pods = vec![
        pod("on-n1", "n1", "h1", true),
        pod("on-n4", "n4", "h1", true),
    ];
    let plan = plan(&set, &nodes, &pods, "h1", now());
    assert_eq!(plan.create, vec!["n3".to_string()]);
    assert_eq!(plan.delete, vec!["on-n4".to_string()]);
    assert_eq!(plan.status.desired_number_scheduled, 2);
    assert_eq!(plan.status.current_number_scheduled, 1);
    assert_eq!(plan.status.number_misscheduled, 1);
    assert_eq!(plan.status.number_ready, 1);
    assert_eq!(plan.status.updated_number_scheduled, Some(1));
    assert_eq!(plan.status.number_available, Some(1));
    assert_eq!(plan.status.number_unavailable, Some(1));
    assert_eq!(plan.status.observed_generation, Some(2));
}

#[test]
fn duplicates_and_failed_pods_go() {
    let set = ds(json!({}), json!({}));
    let mut failed = (*pod("dead", "n2", "h1", false)).clone();
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let pods = vec![
        pod("first", "n1", "h1", true),
        pod("second", "n1", "h1", true),
        Arc::new(failed),
        pod("third", "n3", "h1", true),
    ];
    let plan = plan(&set, &three_nodes(), &pods, "h1", now());
    assert_eq!(plan.delete.len(), 2);
    assert!(plan.delete.contains(&"dead".to_string()));
    assert!(
        plan.create.is_empty(),
        "n2's replacement waits for the failed pod to go"
    );
    assert_eq!(
        plan.events,
        vec![crate::events::Note::warning(
            "FailedDaemonPod",
            "Found failed daemon pod kube-system/dead on node n2, will try to kill it"
        )]
    );
}

#[test]
fn rolling_update_stays_within_max_unavailable() {
    let set = ds(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}),
        json!({}),
    );
    let old = vec![
        pod("a", "n1", "old", true),
        pod("b", "n2", "old", true),
        pod("c", "n3", "old", true),
    ];
    let first = plan(&set, &three_nodes(), &old, "new", now());
    assert_eq!(first.delete.len(), 1, "{:?}", first.delete);
    assert_eq!(first.status.updated_number_scheduled, Some(0));

    // One node has its new pod, not ready yet: nothing more goes.
    let rolling = vec![
        pod("a2", "n1", "new", false),
        old[1].clone(),
        old[2].clone(),
    ];
    assert!(
        plan(&set, &three_nodes(), &rolling, "new", now())
            .delete
            .is_empty()
    );
    // Once it is available, the next old pod goes.
    let next = vec![pod("a2", "n1", "new", true), old[1].clone(), old[2].clone()];
    assert_eq!(
        plan(&set, &three_nodes(), &next, "new", now()).delete.len(),
        1
    );

    // An old pod that is down anyway is replaced on top of the budget.
    let broken = vec![pod("a", "n1", "old", false), old[1].clone(), old[2].clone()];
    assert_eq!(
        plan(&set, &three_nodes(), &broken, "new", now()).delete,
        vec!["a".to_string()]
    );
}

#[test]
fn on_delete_leaves_old_pods() {
    let set = ds(json!({"type": "OnDelete"}), json!({}));
    let old = vec![pod("a", "n1", "old", true), pod("b", "n2", "old", true)];
    let plan = plan(&set, &three_nodes(), &old, "new", now());
    assert!(plan.delete.is_empty());
    assert_eq!(plan.create, vec!["n3".to_string()]);
}

#[test]
fn pods_bound_by_affinity_count_for_their_node() {
    let mut unbound = (*pod("a", "", "h1", false)).clone();
    unbound.spec.as_mut().unwrap().affinity = Some(
        serde_json::from_value(json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}))
        .unwrap(),
    );
    assert_eq!(super::plan::node_of(&unbound), "n2");
}
