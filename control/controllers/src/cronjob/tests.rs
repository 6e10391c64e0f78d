use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use serde_json::{Value, json};

use super::plan;

fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

fn cronjob(spec: Value, status: Value) -> CronJob {
    let mut full = json!({
        "schedule": "*/5 * * * *",
        "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}
    });
    full.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid", "creationTimestamp": "2026-01-01T00:00:30Z"},
        "spec": full,
        "status": status,
    }))
    .unwrap()
}

/// A Job of the CronJob: running (None), complete (Some(true)) or failed.
fn job(name: &str, started: &str, outcome: Option<bool>) -> Arc<Job> {
    let conditions = match outcome {
        None => json!([]),
        Some(true) => json!([{"type": "Complete", "status": "True"}]),
        Some(false) => json!([{"type": "Failed", "status": "True"}]),
    };
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
                         "creationTimestamp": started},
            "status": {"startTime": started, "conditions": conditions,
                       "completionTime": if outcome == Some(true) { json!(started) } else { json!(null) }}
        }))
        .unwrap(),
    )
}

#[test]
fn starts_a_job_named_after_the_scheduled_minute() {
    let cj = cronjob(json!({}), json!({}));
    let plan = plan(&cj, &[], at("2026-01-01T00:06:10Z"));
    let (name, scheduled) = plan.create.clone().unwrap();
    // 00:05 UTC on 2026-01-01 is minute 29_452_325 since the epoch.
    assert_eq!(scheduled.timestamp(), at("2026-01-01T00:05:00Z"));
    assert_eq!(
        name,
        format!("tick-{}", at("2026-01-01T00:05:00Z").as_second() / 60)
    );
    assert_eq!(
        plan.status.last_schedule_time.unwrap().0,
        at("2026-01-01T00:05:00Z")
    );
    assert_eq!(
        plan.requeue_after,
        Some(Duration::from_millis(3 * 60_000 + 50_000 + 200))
    );

    let job = super::job_for(&cj, &name, &scheduled);
    assert_eq!(job.metadata.owner_references.unwrap()[0].kind, "CronJob");
    assert_eq!(
        job.metadata.annotations.unwrap()[super::SCHEDULED_AT],
        "2026-01-01T00:05:00+00:00"
    );
}

#[test]
fn nothing_due_before_the_first_time_and_a_missed_run_starts_once() {
    let cj = cronjob(json!({}), json!({}));
    let early = plan(&cj, &[], at("2026-01-01T00:04:00Z"));
    assert!(early.create.is_none());
    assert_eq!(early.requeue_after, Some(Duration::from_millis(60_200)));
    // Already started for 00:05: nothing new.
    let name = format!("tick-{}", at("2026-01-01T00:05:00Z").as_second() / 60);
    let ran = cronjob(
        json!({}),
        json!({"lastScheduleTime": "2026-01-01T00:05:00Z"}),
    );
    let again = plan(
        &ran,
        &[job(&name, "2026-01-01T00:05:01Z", None)],
        at("2026-01-01T00:06:00Z"),
    );
    assert!(again.create.is_none());
    assert_eq!(again.status.active.as_ref().map(Vec::len), Some(1));
    // Many missed times: only the latest runs.
    let late = plan(&ran, &[], at("2026-01-03T10:07:00Z"));
    assert_eq!(
        late.create.unwrap().1.timestamp(),
        at("2026-01-03T10:05:00Z")
    );
}

#[test]
fn concurrency_policies() {
    let status = json!({"lastScheduleTime": "2026-01-01T00:05:00Z"});
    let running = vec![job("tick-old", "2026-01-01T00:05:00Z", None)];
    let now = at("2026-01-01T00:10:05Z");
    let allow = plan(&cronjob(json!({}), status.clone()), &running, now);
    assert!(allow.create.is_some() && allow.delete.is_empty());
    assert_eq!(allow.status.active.as_ref().map(Vec::len), Some(1));
    let forbid = plan(
        &cronjob(json!({"concurrencyPolicy": "Forbid"}), status.clone()),
        &running,
        now,
    );
    assert!(forbid.create.is_none());
    let replace = plan(
        &cronjob(json!({"concurrencyPolicy": "Replace"}), status.clone()),
        &running,
        now,
    );
    assert!(replace.create.is_some());
    assert_eq!(replace.delete, vec!["tick-old".to_string()]);
    let suspended = plan(&cronjob(json!({"suspend": true}), status), &running, now);
    assert!(suspended.create.is_none());
}

#[test]
fn starting_deadline_skips_late_starts() {
    let status = json!({"lastScheduleTime": "2026-01-01T00:05:00Z"});
    let cj = cronjob(json!({"startingDeadlineSeconds": 30}), status);
    assert!(plan(&cj, &[], at("2026-01-01T00:10:45Z")).create.is_none());
    assert!(plan(&cj, &[], at("2026-01-01T00:10:20Z")).create.is_some());
}

#[test]
fn keeps_the_newest_finished_jobs_and_the_last_success() {
    let jobs = vec![
        job("a", "2026-01-01T00:01:00Z", Some(true)),
        job("b", "2026-01-01T00:02:00Z", Some(true)),
        job("c", "2026-01-01T00:03:00Z", Some(false)),
        job("d", "2026-01-01T00:04:00Z", Some(false)),
        job("e", "2026-01-01T00:04:30Z", Some(true)),
    ];
    let cj = cronjob(
        json!({"successfulJobsHistoryLimit": 2}),
        json!({"lastScheduleTime": "2026-01-01T00:05:00Z"}),
    );
    let plan = plan(&cj, &jobs, at("2026-01-01T00:06:00Z"));
    assert_eq!(plan.delete, vec!["a".to_string(), "c".to_string()]);
    assert_eq!(
        plan.status.last_successful_time.unwrap().0,
        at("2026-01-01T00:04:30Z")
    );
}

#[test]
fn schedules_in_the_time_zone() {
    let cj = cronjob(
        json!({"schedule": "0 9 * * *", "timeZone": "Asia/Tokyo"}),
        json!({"lastScheduleTime": "2026-01-01T00:00:00Z"}),
    );
    // 09:00 in Tokyo is 00:00 UTC.
    let plan = plan(&cj, &[], at("2026-01-02T00:00:30Z"));
    assert_eq!(
        plan.create.unwrap().1.timestamp(),
        at("2026-01-02T00:00:00Z")
    );
}

#[test]
fn events_for_jobs_seen_finished_and_starts_held_back() {
    use crate::events::Note;
    let active = json!({"lastScheduleTime": "2026-01-01T00:05:00Z", "active": [
        {"kind": "Job", "name": "tick-a", "namespace": "default", "uid": "tick-a-uid"},
        {"kind": "Job", "name": "tick-b", "namespace": "default", "uid": "tick-b-uid"}]});
    let jobs = vec![
        job("tick-a", "2026-01-01T00:05:00Z", Some(true)),
        job("tick-b", "2026-01-01T00:05:00Z", Some(false)),
        job("tick-c", "2026-01-01T00:00:00Z", Some(true)),
    ];
    let seen = plan(
        &cronjob(json!({}), active),
        &jobs,
        at("2026-01-01T00:06:00Z"),
    );
    assert_eq!(
        seen.events,
        vec![
            Note::normal(
                "SawCompletedJob",
                "Saw completed job: tick-a, condition: Complete"
            ),
            Note::normal(
                "SawCompletedJob",
                "Saw completed job: tick-b, condition: Failed"
            ),
        ],
        "tick-c was not active, so it was seen before"
    );
    let status = serde_json::to_value(&seen.status).unwrap();
    let later = plan(
        &cronjob(json!({}), status),
        &jobs,
        at("2026-01-01T00:06:30Z"),
    );
    assert!(later.events.is_empty(), "{:?}", later.events);

    let status = json!({"lastScheduleTime": "2026-01-01T00:05:00Z"});
    let running = vec![job("tick-old", "2026-01-01T00:05:00Z", None)];
    let forbid = plan(
        &cronjob(json!({"concurrencyPolicy": "Forbid"}), status),
        &running,
        at("2026-01-01T00:10:05Z"),
    );
    assert_eq!(
        forbid.events,
        vec![Note::normal(
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid"
        )]
    );
}
