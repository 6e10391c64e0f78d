use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use super::plan::*;

const GRACE: Duration = Duration::from_secs(40);

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn node(ready: &str, taints: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": "n1", "creationTimestamp": t(-1000).to_string()},
        "spec": {"taints": taints},
        "status": {"conditions": [
            {"type": "Ready", "status": ready, "lastHeartbeatTime": t(-1000).to_string()},
            {"type": "MemoryPressure", "status": "False"}
        ]}
    }))
    .unwrap()
}

fn pod(name: &str, tolerations: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": "n1", "containers": [], "tolerations": tolerations},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap()
}

fn default_tolerations(seconds: i64) -> Value {
    json!([
        {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds},
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
    ])
}

#[test]
fn a_renewed_lease_keeps_the_node_untainted_and_checks_again_before_it_lapses() {
    let plan = plan(&node("True", json!([])), Some(t(-10)), &[], t(0), GRACE);
    assert_eq!(plan.conditions, None);
    assert_eq!(plan.taints, None);
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(31)));
}

#[test]
fn a_lapsed_lease_turns_the_node_unknown_tainted_and_its_pods_not_ready() {
    let web = pod("web", default_tolerations(300));
    let plan = plan(&node("True", json!([])), Some(t(-41)), &[&web], t(0), GRACE);
    let conditions = plan.conditions.expect("conditions change");
    for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = conditions.iter().find(|c| c.type_ == kind).unwrap();
        assert_eq!(c.status, "Unknown", "{kind}");
        assert_eq!(c.reason.as_deref(), Some("NodeStatusUnknown"));
    }
    let taints = plan.taints.expect("taints change");
    let keys: Vec<(&str, &str)> = taints
        .iter()
        .map(|t| (t.key.as_str(), t.effect.as_str()))
        .collect();
    assert_eq!(
        keys,
        [(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]
    );
    assert_eq!(
        plan.mark_not_ready,
        [("default".to_string(), "web".to_string())]
    );
    assert!(
        plan.evict.is_empty(),
        "the pod tolerates the taint for 300 s"
    );
}

#[test]
fn pods_leave_after_their_toleration_seconds_or_at_once_without_one() {
    let added = t(-100);
    let taints = json!([
        {"key": UNREACHABLE, "effect": "NoSchedule"},
        {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": added.to_string()}
    ]);
    let unknown = node("Unknown", taints);
    let patient = pod("patient", default_tolerations(300));
    let short = pod("short", default_tolerations(60));
    let bare = pod("bare", json!([]));
    let forever = pod("forever", json!([{"operator": "Exists"}]));
    let plan = plan(
        &unknown,
        Some(t(-200)),
        &[&patient, &short, &bare, &forever],
        t(0),
        GRACE,
    );
    assert_eq!(plan.taints, None, "the taints are already right");
    assert_eq!(plan.conditions, None, "already Unknown");
    let evicted: Vec<&str> = plan.evict.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(evicted, ["short", "bare"]);
    // The patient pod goes 300 s after the taint was added: 200 s from now.
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(200)));
    let later = plan_at(&unknown, &patient, added + SignedDuration::from_secs(300));
    assert_eq!(later.evict.len(), 1);
}

fn plan_at(node: &Node, pod: &Pod, now: Timestamp) -> Plan {
    plan(node, Some(t(-200)), &[pod], now, GRACE)
}

#[test]
fn a_not_ready_node_gets_the_not_ready_taints_and_a_recovered_node_loses_them() {
    let plan_nr = plan(&node("False", json!([])), Some(t(-1)), &[], t(0), GRACE);
    let taints = plan_nr.taints.unwrap();
    let keys: Vec<&str> = taints.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, [NOT_READY, NOT_READY]);

    let tainted = node(
        "True",
        json!([
            {"key": UNREACHABLE, "effect": "NoExecute"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
        ]),
    );
    let plan_back = plan(&tainted, Some(t(-1)), &[], t(0), GRACE);
    let taints = plan_back.taints.unwrap();
    let keys: Vec<String> = taints.iter().map(|t| t.key.clone()).collect();
    assert_eq!(keys, ["dedicated"], "the user's taints stay");
}
