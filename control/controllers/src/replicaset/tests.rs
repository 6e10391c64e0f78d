use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::plan;

fn now() -> jiff::Timestamp {
    "2026-01-01T00:10:00Z".parse().unwrap()
}

fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web-abc", "namespace": "default", "uid": "rs-uid", "generation": 4},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
        }
    }))
    .unwrap()
}

/// A pod owned by the set (or by `owner`, or an orphan with `None`), in the
/// given phase, ready since `ready_at` when given.
fn pod(name: &str, owner: Option<&str>, phase: &str, ready_at: Option<&str>) -> Arc<Pod> {
    let owners = owner.map_or(json!([]), |uid| {
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": uid, "controller": true}])
    });
    let conditions = ready_at.map_or(
        json!([]),
        |at| json!([{"type": "Ready", "status": "True", "lastTransitionTime": at}]),
    );
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web", "tier": "front"},
                         "ownerReferences": owners, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "x"}], "nodeName": if phase == "Pending" { "" } else { "n1" }},
            "status": {"phase": phase, "conditions": conditions}
        }))
        .unwrap(),
    )
}

#[test]
fn creates_missing_pods_and_counts_status() {
    let pods = vec![pod(
        "a",
        Some("rs-uid"),
        "Running",
        Some("2026-01-01T00:00:00Z"),
    )];
    let plan = plan(&rs(3, 0), &pods, now());
    assert_eq!(plan.create, 2);
    assert!(plan.delete.is_empty());
    assert_eq!(plan.status.replicas, 1);
    assert_eq!(plan.status.ready_replicas, Some(1));
    assert_eq!(plan.status.available_replicas, Some(1));
    assert_eq!(plan.status.fully_labeled_replicas, Some(1));
    assert_eq!(plan.status.observed_generation, Some(4));
}

#[test]
fn deletes_pending_and_unready_pods_first() {
    let pods = vec![
        pod(
            "ready",
            Some("rs-uid"),
            "Running",
            Some("2026-01-01T00:00:00Z"),
        ),
        pod("pending", Some("rs-uid"), "Pending", None),
        pod("unready", Some("rs-uid"), "Running", None),
        pod(
            "ready-recently",
            Some("rs-uid"),
            "Running",
            Some("2026-01-01T00:09:00Z"),
        ),
    ];
    let plan = plan(&rs(1, 0), &pods, now());
    assert_eq!(plan.delete, vec!["pending", "unready", "ready-recently"]);
    assert_eq!(plan.create, 0);
}

#[test]
fn adopts_matching_orphans_and_ignores_other_controllers() {
    let pods = vec![
        pod("orphan", None, "Running", None),
        pod("theirs", Some("other"), "Running", None),
    ];
    let plan = plan(&rs(2, 0), &pods, now());
    assert_eq!(plan.adopt, vec!["orphan"]);
    assert_eq!(plan.create, 1);
    assert_eq!(plan.status.replicas, 1);
}

#[test]
fn releases_pods_that_stop_matching() {
    let mut relabeled = (*pod("moved", Some("rs-uid"), "Running", None)).clone();
    relabeled.metadata.labels = Some([("app".to_string(), "debug".to_string())].into());
    let plan = plan(&rs(1, 0), &[Arc::new(relabeled)], now());
    assert_eq!(plan.release, vec!["moved"]);
    assert_eq!(plan.create, 1);
}

#[test]
fn finished_and_terminating_pods_do_not_count() {
    let mut terminating = (*pod("going", Some("rs-uid"), "Running", None)).clone();
    terminating.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    let pods = vec![
        pod("done", Some("rs-uid"), "Succeeded", None),
        Arc::new(terminating),
    ];
    let plan = plan(&rs(1, 0), &pods, now());
    assert_eq!(plan.create, 1);
    assert_eq!(plan.status.replicas, 0);
}

#[test]
fn min_ready_seconds_delays_availability_and_requeues() {
    let pods = vec![
        pod(
            "old",
            Some("rs-uid"),
            "Running",
            Some("2026-01-01T00:00:00Z"),
        ),
        pod(
            "new",
            Some("rs-uid"),
            "Running",
            Some("2026-01-01T00:09:50Z"),
        ),
    ];
    let plan = plan(&rs(2, 30), &pods, now());
    assert_eq!(plan.status.ready_replicas, Some(2));
    assert_eq!(plan.status.available_replicas, Some(1));
    assert_eq!(plan.requeue_after, Some(std::time::Duration::from_secs(20)));
}

#[test]
fn a_set_being_deleted_neither_creates_nor_adopts() {
    let mut set = rs(3, 0);
    set.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    let plan = plan(&set, &[pod("orphan", None, "Running", None)], now());
    assert_eq!(plan.create, 0);
    assert!(plan.adopt.is_empty());
}
