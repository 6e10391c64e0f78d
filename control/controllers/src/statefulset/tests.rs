use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::plan;

fn now() -> jiff::Timestamp {
    "2026-01-01T00:10:00Z".parse().unwrap()
}

fn sts(replicas: i32, extra: Value) -> StatefulSet {
    let mut spec = json!({
        "replicas": replicas,
        "serviceName": "db",
        "selector": {"matchLabels": {"app": "db"}},
        "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]
    });
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "default", "uid": "sts-uid", "generation": 3},
        "spec": spec
    }))
    .unwrap()
}

fn pod(ordinal: i32, hash: &str, ready: bool) -> Arc<Pod> {
    let conditions = if ready {
        json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}])
    } else {
        json!([])
    };
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("db-{ordinal}"), "namespace": "default",
                         "labels": {"app": "db", "controller-revision-hash": hash}},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "conditions": conditions}
        }))
        .unwrap(),
    )
}

#[test]
fn ordered_ready_creates_one_at_a_time_in_order() {
    let set = sts(3, json!({}));
    assert_eq!(plan(&set, &[], "h", now()).create, vec![0]);
    assert!(
        plan(&set, &[pod(0, "h", false)], "h", now())
            .create
            .is_empty()
    );
    assert_eq!(plan(&set, &[pod(0, "h", true)], "h", now()).create, vec![1]);
    // A hole is filled first.
    assert_eq!(
        plan(&set, &[pod(0, "h", true), pod(2, "h", true)], "h", now()).create,
        vec![1]
    );
    let parallel = sts(3, json!({"podManagementPolicy": "Parallel"}));
    assert_eq!(
        plan(&parallel, &[pod(1, "h", false)], "h", now()).create,
        vec![0, 2]
    );
}

#[test]
fn scale_down_removes_the_highest_ordinal_first() {
    let set = sts(1, json!({}));
    let pods = vec![pod(0, "h", true), pod(1, "h", true), pod(2, "h", true)];
    let plan = plan(&set, &pods, "h", now());
    assert_eq!(plan.delete, vec!["db-2".to_string()]);
    assert_eq!(plan.status.replicas, 3);
}

#[test]
fn rolling_update_goes_down_from_the_top_to_the_partition() {
    let set = sts(
        3,
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}),
    );
    let old = vec![
        pod(0, "old", true),
        pod(1, "old", true),
        pod(2, "old", true),
    ];
    let first = plan(&set, &old, "new", now());
    assert_eq!(first.delete, vec!["db-2".to_string()]);
    assert_eq!(first.status.update_revision.as_deref(), Some("db-new"));
    let next = vec![
        pod(0, "old", true),
        pod(1, "old", true),
        pod(2, "new", true),
    ];
    assert_eq!(
        plan(&set, &next, "new", now()).delete,
        vec!["db-1".to_string()]
    );
    // Below the partition nothing changes.
    let done = vec![
        pod(0, "old", true),
        pod(1, "new", true),
        pod(2, "new", true),
    ];
    let done = plan(&set, &done, "new", now());
    assert!(done.delete.is_empty());
    assert_eq!(done.status.updated_replicas, Some(2));
    // Waits while a pod is not ready.
    let waiting = vec![
        pod(0, "old", true),
        pod(1, "old", true),
        pod(2, "new", false),
    ];
    assert!(plan(&set, &waiting, "new", now()).delete.is_empty());
}

#[test]
fn revisions_in_status_follow_the_update() {
    let set = sts(2, json!({}));
    let all_new = plan(
        &set,
        &[pod(0, "new", true), pod(1, "new", true)],
        "new",
        now(),
    );
    assert_eq!(all_new.status.current_revision.as_deref(), Some("db-new"));
    assert_eq!(all_new.status.current_replicas, Some(2));
    assert_eq!(all_new.status.ready_replicas, Some(2));
    assert_eq!(all_new.status.observed_generation, Some(3));
}

#[test]
fn pods_have_stable_identity_and_claims() {
    let set = sts(2, json!({}));
    let pod = super::stateful_pod(&set, 1, "h");
    assert_eq!(pod.metadata.name.as_deref(), Some("db-1"));
    let spec = pod.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("db-1"));
    assert_eq!(spec.subdomain.as_deref(), Some("db"));
    let volume = &spec.volumes.unwrap()[0];
    assert_eq!(volume.name, "data");
    assert_eq!(
        volume.persistent_volume_claim.as_ref().unwrap().claim_name,
        "data-db-1"
    );
    let claims = super::claims(&set, 1);
    assert_eq!(claims[0].metadata.name.as_deref(), Some("data-db-1"));
    assert!(
        claims[0].metadata.owner_references.is_none(),
        "claims outlive the pods"
    );
    assert_eq!(pod.metadata.labels.unwrap()[super::POD_INDEX], "1");
}
