//! What a CronJob needs, as a pure function of the CronJob, the Jobs it
//! controls and the time.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use skiff_cron::Schedule;

use crate::events::Note;

pub const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Missed times a CronJob looks back over before giving up on catching up
/// (Kubernetes gives up at 100 and starts only the latest).
const MAX_MISSED: usize = 100;

/// The writes that bring a CronJob up to date.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Start a Job for this scheduled time (named `<cronjob>-<minutes>`).
    pub create: Option<(String, jiff::Zoned)>,
    /// Jobs to delete: running ones under `Replace`, old ones beyond the
    /// history limits.
    pub delete: Vec<String>,
    pub status: CronJobStatus,
    /// The next scheduled time, to look again then.
    pub requeue_after: Option<Duration>,
    /// Events about the CronJob: `SawCompletedJob` for each Job that left
    /// `status.active` finished, `JobAlreadyActive` when `Forbid` holds a
    /// start back.
    pub events: Vec<Note>,
}

/// Plan the CronJob given the Jobs it controls.
pub fn plan(cronjob: &CronJob, jobs: &[Arc<Job>], now: jiff::Timestamp) -> Plan {
    let spec = cronjob.spec.clone().unwrap_or_default();
    let previous = cronjob.status.clone().unwrap_or_default();
    let name = cronjob.metadata.name.clone().unwrap_or_default();
    let mut plan = Plan::default();

    let (finished, active): (Vec<&Job>, Vec<&Job>) = jobs
        .iter()
        .map(|j| j.as_ref())
        .partition(|j| finish(j).is_some());
    let last_success = finished
        .iter()
        .filter(|j| finish(j) == Some(true))
        .filter_map(|j| j.status.as_ref()?.completion_time.clone())
        .max_by_key(|t| t.0);
    for job in &finished {
        let was_active = previous
            .active
            .iter()
            .flatten()
            .any(|r| r.uid.is_some() && r.uid == job.metadata.uid);
        if was_active {
            let condition = if finish(job) == Some(true) {
                "Complete"
            } else {
                "Failed"
            };
            plan.events.push(Note::normal(
                "SawCompletedJob",
                format!(
                    "Saw completed job: {}, condition: {condition}",
                    job.metadata.name.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
    let mut status = CronJobStatus {
        active: None,
        last_schedule_time: previous.last_schedule_time.clone(),
        last_successful_time: match (previous.last_successful_time.clone(), last_success) {
            (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
            (a, b) => a.or(b),
        },
    };

    plan.delete.extend(history_beyond(
        &finished,
        true,
        spec.successful_jobs_history_limit.unwrap_or(3),
    ));
    plan.delete.extend(history_beyond(
        &finished,
        false,
        spec.failed_jobs_history_limit.unwrap_or(1),
    ));

    let zone = spec
        .time_zone
        .as_deref()
        .and_then(|z| jiff::tz::TimeZone::get(z).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let Ok(schedule) = Schedule::parse(&spec.schedule) else {
        // The API server rejects bad schedules; one stored before that rule
        // existed simply never runs.
        status.active = references(&active);
        plan.status = status;
        return plan;
    };
    let now_zoned = now.to_zoned(zone.clone());
    let earliest = previous
        .last_schedule_time
        .as_ref()
        .or(cronjob.metadata.creation_timestamp.as_ref())
        .map_or(now, |t| t.0);
    let earliest = match spec.starting_deadline_seconds {
        Some(deadline) => earliest.max(now - jiff::SignedDuration::from_secs(deadline.max(0))),
        None => earliest,
    };
    let (missed, next) = due_times(&schedule, &earliest.to_zoned(zone), &now_zoned);
    plan.requeue_after = next.map(|n| {
        Duration::try_from(n.timestamp().duration_since(now)).unwrap_or_default()
            + Duration::from_millis(200)
    });

    let mut running = active.clone();
    if let Some(scheduled) = missed
        && spec.suspend != Some(true)
    {
        let job_name = format!(
            "{name}-{}",
            scheduled.timestamp().as_second().div_euclid(60)
        );
        let exists = jobs
            .iter()
            .any(|j| j.metadata.name.as_deref() == Some(job_name.as_str()));
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if exists {
            status.last_schedule_time = Some(Time(scheduled.timestamp()));
        } else if policy == "Forbid" && !active.is_empty() {
            tracing::debug!(job = %job_name, "skipping: the previous run is still active");
            plan.events.push(Note::normal(
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            ));
        } else {
            if policy == "Replace" {
                plan.delete
                    .extend(active.iter().filter_map(|j| j.metadata.name.clone()));
                running.clear();
            }
            status.last_schedule_time = Some(Time(scheduled.timestamp()));
            plan.create = Some((job_name, scheduled));
        }
    }
    status.active = references(&running);
    plan.status = status;
    plan
}

/// The latest scheduled time in (earliest, now], and the first after now.
fn due_times(
    schedule: &Schedule,
    earliest: &jiff::Zoned,
    now: &jiff::Zoned,
) -> (Option<jiff::Zoned>, Option<jiff::Zoned>) {
    let mut latest = None;
    let mut cursor = earliest.clone();
    for _ in 0..=MAX_MISSED {
        match schedule.next_after(&cursor) {
            Some(t) if t <= *now => {
                latest = Some(t.clone());
                cursor = t;
            }
            next => return (latest, next),
        }
    }
    tracing::warn!("too many missed start times; starting the most recent only");
    // Find the latest time by looking back over growing windows: the first
    // window holding a scheduled time holds few of them.
    for hours in [1, 24, 24 * 31, 24 * 366] {
        let Ok(from) = now.checked_sub(jiff::SignedDuration::from_hours(hours)) else {
            break;
        };
        let mut last = None;
        let mut cursor = from;
        while let Some(t) = schedule.next_after(&cursor).filter(|t| t <= now) {
            last = Some(t.clone());
            cursor = t;
        }
        if last.is_some() {
            return (last, schedule.next_after(now));
        }
    }
    (None, schedule.next_after(now))
}

/// Finished Jobs that succeeded (or failed) beyond `limit`, oldest first.
fn history_beyond(finished: &[&Job], succeeded: bool, limit: i32) -> Vec<String> {
    let mut matching: Vec<&&Job> = finished
        .iter()
        .filter(|j| finish(j) == Some(succeeded))
        .collect();
    matching.sort_by_key(|j| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(j.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
    });
    let surplus = matching.len().saturating_sub(limit.max(0) as usize);
    matching[..surplus]
        .iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter_map(|j| j.metadata.name.clone())
        .collect()
}

/// Some(true) for a Complete Job, Some(false) for a Failed one.
pub fn finish(job: &Job) -> Option<bool> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some(true),
            "Failed" => Some(false),
            _ => None,
        })
}

fn references(jobs: &[&Job]) -> Option<Vec<ObjectReference>> {
    let mut refs: Vec<ObjectReference> = jobs
        .iter()
        .map(|j| ObjectReference {
            api_version: Some("batch/v1".into()),
            kind: Some("Job".into()),
            name: j.metadata.name.clone(),
            namespace: j.metadata.namespace.clone(),
            uid: j.metadata.uid.clone(),
            resource_version: j.metadata.resource_version.clone(),
            field_path: None,
        })
        .collect();
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    // An empty list (not an absent one) so a merge patch clears it.
    Some(refs)
}
