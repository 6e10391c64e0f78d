use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::plan;

fn now() -> jiff::Timestamp {
    "2026-01-01T00:10:00Z".parse().unwrap()
}

fn job(spec: Value, status: Value) -> Job {
    let mut full = json!({
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
        "template": {"metadata": {"labels": {"job-name": "pi"}},
                     "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}
    });
    full.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
        "spec": full,
        "status": status,
    }))
    .unwrap()
}

/// A pod of the Job in `phase`, with an optional completion index, that
/// ended (or was created) at `at`.
fn pod(name: &str, phase: &str, index: Option<i32>, at: &str) -> Arc<Pod> {
    let annotations = index.map_or(
        json!({}),
        |i| json!({super::COMPLETION_INDEX: i.to_string()}),
    );
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "annotations": annotations,
                         "creationTimestamp": at,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": "job-uid", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": phase, "containerStatuses": [{"name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": if phase == "Failed" { json!({"terminated": {"exitCode": 1, "finishedAt": at}}) } else { json!({}) }}]}
        }))
        .unwrap(),
    )
}

fn condition(plan: &super::Plan, type_: &str) -> Option<String> {
    plan.status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

#[test]
fn runs_parallelism_pods_until_completions_succeed() {
    let j = job(json!({"completions": 3, "parallelism": 2}), json!({}));
    let first = plan(&j, &[], now());
    assert_eq!(first.create, vec![None, None]);
    assert_eq!(first.status.active, Some(0));
    assert!(first.status.start_time.is_some());

    let pods = vec![
        pod("a", "Succeeded", None, "2026-01-01T00:01:00Z"),
        pod("b", "Succeeded", None, "2026-01-01T00:01:00Z"),
        pod("c", "Running", None, "2026-01-01T00:02:00Z"),
    ];
    let middle = plan(&j, &pods, now());
    assert!(
        middle.create.is_empty(),
        "only one completion is left and it runs"
    );
    assert_eq!(middle.status.succeeded, Some(2));
    assert_eq!(middle.status.active, Some(1));
    assert_eq!(condition(&middle, "Complete"), None);

    let pods = vec![
        pods[0].clone(),
        pods[1].clone(),
        pod("c", "Succeeded", None, "2026-01-01T00:02:00Z"),
    ];
    let done = plan(&j, &pods, now());
    assert_eq!(
        condition(&done, "SuccessCriteriaMet").as_deref(),
        Some("True")
    );
    assert_eq!(condition(&done, "Complete").as_deref(), Some("True"));
    assert_eq!(
        done.status.completion_time.as_ref().map(|t| t.0),
        Some(now())
    );
    assert!(done.create.is_empty());
}

#[test]
fn fails_after_the_backoff_limit_and_backs_off_before_that() {
    let j = job(
        json!({"backoffLimit": 1}),
        json!({"startTime": "2026-01-01T00:00:00Z"}),
    );
    // One failure 5 s ago: the replacement waits out the 10 s back-off.
    let one = vec![pod("a", "Failed", None, "2026-01-01T00:09:55Z")];
    let waiting = plan(&j, &one, now());
    assert!(waiting.create.is_empty());
    assert_eq!(
        waiting.requeue_after,
        Some(std::time::Duration::from_secs(5))
    );
    assert_eq!(waiting.status.failed, Some(1));
    // After the back-off, one replacement.
    let later = plan(
        &j,
        &[pod("a", "Failed", None, "2026-01-01T00:09:00Z")],
        now(),
    );
    assert_eq!(later.create, vec![None]);
    // A second failure exceeds backoffLimit 1.
    let two = vec![
        pod("a", "Failed", None, "2026-01-01T00:09:00Z"),
        pod("b", "Failed", None, "2026-01-01T00:09:30Z"),
    ];
    let failed = plan(&j, &two, now());
    assert!(failed.create.is_empty());
    assert_eq!(condition(&failed, "FailureTarget").as_deref(), Some("True"));
    assert_eq!(condition(&failed, "Failed").as_deref(), Some("True"));
    let reason = failed
        .status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Failed")
        .unwrap()
        .reason
        .clone();
    assert_eq!(reason.as_deref(), Some("BackoffLimitExceeded"));
    assert!(failed.status.completion_time.is_none());
}

#[test]
fn deadline_stops_running_pods_then_fails() {
    let j = job(
        json!({"activeDeadlineSeconds": 60}),
        json!({"startTime": "2026-01-01T00:00:00Z"}),
    );
    let running = vec![pod("a", "Running", None, "2026-01-01T00:00:01Z")];
    let stopping = plan(&j, &running, now());
    assert_eq!(stopping.delete, vec!["a".to_string()]);
    assert_eq!(
        condition(&stopping, "FailureTarget").as_deref(),
        Some("True")
    );
    assert_eq!(
        condition(&stopping, "Failed"),
        None,
        "not before its pods are gone"
    );
    let stopped = plan(&j, &[], now());
    assert_eq!(condition(&stopped, "Failed").as_deref(), Some("True"));

    // Before the deadline: a requeue for the moment it passes.
    let young = job(
        json!({"activeDeadlineSeconds": 900}),
        json!({"startTime": "2026-01-01T00:00:00Z"}),
    );
    let plan = plan(&young, &running, now());
    assert!(plan.delete.is_empty());
    assert_eq!(
        plan.requeue_after,
        Some(std::time::Duration::from_secs(300))
    );
}

#[test]
fn indexed_jobs_run_each_missing_index_once() {
    let j = job(
        json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}),
        json!({}),
    );
    let pods = vec![
        pod("pi-0-x", "Succeeded", Some(0), "2026-01-01T00:01:00Z"),
        pod("pi-1-x", "Running", Some(1), "2026-01-01T00:01:00Z"),
    ];
    let next = plan(&j, &pods, now());
    assert_eq!(next.create, vec![Some(2)]);
    assert_eq!(next.status.completed_indexes.as_deref(), Some("0"));
    let pods = vec![
        pod("pi-0-x", "Succeeded", Some(0), "2026-01-01T00:01:00Z"),
        pod("pi-1-x", "Succeeded", Some(1), "2026-01-01T00:01:00Z"),
        pod("pi-3-x", "Succeeded", Some(3), "2026-01-01T00:01:00Z"),
    ];
    let next = plan(&j, &pods, now());
    assert_eq!(next.create, vec![Some(2)]);
    assert_eq!(next.status.completed_indexes.as_deref(), Some("0-1,3"));
    assert_eq!(next.status.succeeded, Some(3));
}

#[test]
fn suspend_deletes_pods_and_resume_restarts() {
    let j = job(
        json!({"suspend": true, "parallelism": 2, "completions": 2}),
        json!({}),
    );
    let pods = vec![pod("a", "Running", None, "2026-01-01T00:01:00Z")];
    let suspended = plan(&j, &pods, now());
    assert_eq!(suspended.delete, vec!["a".to_string()]);
    assert!(suspended.create.is_empty());
    assert_eq!(condition(&suspended, "Suspended").as_deref(), Some("True"));
    let status = serde_json::to_value(&suspended.status).unwrap();
    let resumed = plan(
        &job(json!({"parallelism": 2, "completions": 2}), status),
        &[],
        now(),
    );
    assert_eq!(resumed.create.len(), 2);
    assert_eq!(condition(&resumed, "Suspended").as_deref(), Some("False"));
}

#[test]
fn finished_jobs_are_deleted_after_their_ttl() {
    let status = json!({"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:09:00Z"}]});
    let waiting = plan(
        &job(json!({"ttlSecondsAfterFinished": 120}), status.clone()),
        &[],
        now(),
    );
    assert!(!waiting.delete_job);
    assert_eq!(
        waiting.requeue_after,
        Some(std::time::Duration::from_secs(60))
    );
    let expired = plan(
        &job(json!({"ttlSecondsAfterFinished": 30}), status.clone()),
        &[],
        now(),
    );
    assert!(expired.delete_job);
    let kept = plan(&job(json!({}), status), &[], now());
    assert!(!kept.delete_job && kept.create.is_empty());
}

#[test]
fn events_mark_the_end_and_suspension_once() {
    use crate::events::Note;
    let reasons = |p: &super::Plan| p.events.iter().map(|n| n.reason).collect::<Vec<_>>();
    // Complete: recorded when the Complete condition is first set.
    let j = job(json!({"completions": 1}), json!({}));
    let done = plan(
        &j,
        &[pod("a", "Succeeded", None, "2026-01-01T00:01:00Z")],
        now(),
    );
    assert_eq!(
        done.events,
        vec![Note::normal("Completed", "Job completed")]
    );
    let status = serde_json::to_value(&done.status).unwrap();
    let again = plan(
        &job(json!({"completions": 1}), status),
        &[pod("a", "Succeeded", None, "2026-01-01T00:01:00Z")],
        now(),
    );
    assert!(again.events.is_empty(), "{:?}", again.events);

    // Failure: the Failed condition's reason and message, as a Warning.
    let j = job(
        json!({"backoffLimit": 0}),
        json!({"startTime": "2026-01-01T00:00:00Z"}),
    );
    let failed = plan(
        &j,
        &[pod("a", "Failed", None, "2026-01-01T00:09:00Z")],
        now(),
    );
    assert_eq!(
        failed.events,
        vec![Note::warning(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit"
        )]
    );
    let j = job(
        json!({"activeDeadlineSeconds": 60}),
        json!({"startTime": "2026-01-01T00:00:00Z"}),
    );
    let stopping = plan(
        &j,
        &[pod("a", "Running", None, "2026-01-01T00:00:01Z")],
        now(),
    );
    assert!(stopping.events.is_empty(), "not while its pods still run");
    assert_eq!(reasons(&plan(&j, &[], now())), ["DeadlineExceeded"]);

    // Suspend, then resume.
    let j = job(json!({"suspend": true}), json!({}));
    let suspended = plan(&j, &[], now());
    assert_eq!(reasons(&suspended), ["Suspended"]);
    let status = serde_json::to_value(&suspended.status).unwrap();
    assert!(
        plan(&job(json!({"suspend": true}), status.clone()), &[], now())
            .events
            .is_empty()
    );
    assert_eq!(
        reasons(&plan(&job(json!({}), status), &[], now())),
        ["Resumed"]
    );
}
