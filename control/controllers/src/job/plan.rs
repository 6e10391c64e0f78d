//! What a Job needs, as a pure function of the Job and the pods it controls.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::events::Note;
use crate::pods::{is_active, is_ready};

pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// First delay before replacing a failed pod; doubles per failure.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// The writes that move a Job forward.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Pods to create: `None` for a NonIndexed Job, else the completion index.
    pub create: Vec<Option<i32>>,
    /// Pods to delete (suspended, finished, or beyond `parallelism`).
    pub delete: Vec<String>,
    pub status: JobStatus,
    /// `ttlSecondsAfterFinished` has run out: delete the Job itself.
    pub delete_job: bool,
    /// When to look again (back-off, deadline, TTL).
    pub requeue_after: Option<Duration>,
    /// Events about the Job: its end (`Completed`, or the failure's reason),
    /// `Suspended`, `Resumed`.
    pub events: Vec<Note>,
}

/// How a Job ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Complete,
    Failed(&'static str, &'static str),
}

/// Plan the Job given the pods it controls.
pub fn plan(job: &Job, pods: &[Arc<Pod>], now: jiff::Timestamp) -> Plan {
    let mut plan = plan_writes(job, pods, now);
    let previous = job.status.clone().unwrap_or_default();
    plan.events = transitions(&previous, &plan.status);
    plan
}

/// The Events the job controller records when the Job's conditions turn:
/// `Completed`, `BackoffLimitExceeded` / `DeadlineExceeded` (the Failed
/// condition's reason and message), `Suspended`, `Resumed`.
fn transitions(previous: &JobStatus, next: &JobStatus) -> Vec<Note> {
    let turned = |type_: &str, value: &str| {
        !condition_is(previous, type_, value) && condition_is(next, type_, value)
    };
    let mut notes = Vec::new();
    if turned("Complete", "True") {
        notes.push(Note::normal("Completed", "Job completed"));
    }
    if turned("Failed", "True")
        && let Some(failed) = next
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Failed")
    {
        let reason = match failed.reason.as_deref() {
            Some("BackoffLimitExceeded") => "BackoffLimitExceeded",
            Some("DeadlineExceeded") => "DeadlineExceeded",
            _ => "Failed",
        };
        notes.push(Note::warning(
            reason,
            failed.message.clone().unwrap_or_default(),
        ));
    }
    if turned("Suspended", "True") {
        notes.push(Note::normal("Suspended", "Job suspended"));
    }
    if condition_is(previous, "Suspended", "True") && turned("Suspended", "False") {
        notes.push(Note::normal("Resumed", "Job resumed"));
    }
    notes
}

fn plan_writes(job: &Job, pods: &[Arc<Pod>], now: jiff::Timestamp) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let previous = job.status.clone().unwrap_or_default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let completions = spec.completions;
    let backoff_limit = spec.backoff_limit.unwrap_or(6).max(0);
    let suspended = spec.suspend == Some(true);
    let on_failure_restarts = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");

    let active: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| is_active(p))
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && !is_finished(p))
        .count() as i32;
    let succeeded_pods: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| phase(p) == Some("Succeeded"))
        .collect();
    let failed_pods: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| phase(p) == Some("Failed"))
        .collect();

    // Pods can be deleted once counted; the counts never go back.
    let mut completed_indexes: BTreeSet<i32> = parse_indexes(previous.completed_indexes.as_deref());
    completed_indexes.extend(
        succeeded_pods
            .iter()
            .filter_map(|p| completion_index(p))
            .filter(|i| completions.is_none_or(|c| *i < c)),
    );
    let succeeded = if indexed {
        completed_indexes.len() as i32
    } else {
        (succeeded_pods.len() as i32).max(previous.succeeded.unwrap_or(0))
    };
    let failed = (failed_pods.len() as i32).max(previous.failed.unwrap_or(0));
    let restarts: i32 = if on_failure_restarts {
        active.iter().map(|p| restart_count(p)).sum()
    } else {
        0
    };

    let mut plan = Plan::default();
    let mut status = JobStatus {
        active: Some(active.len() as i32),
        ready: Some(active.iter().filter(|p| is_ready(p)).count() as i32),
        succeeded: Some(succeeded),
        failed: Some(failed),
        terminating: Some(terminating),
        start_time: previous.start_time.clone(),
        completion_time: previous.completion_time.clone(),
        conditions: previous.conditions.clone(),
        completed_indexes: indexed.then(|| format_indexes(&completed_indexes)),
        uncounted_terminated_pods: Some(UncountedTerminatedPods::default()),
        ..JobStatus::default()
    };

    if let Some(finished_at) = finished_at(&previous) {
        plan.delete = active.iter().map(|p| name(p)).collect();
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let expires = finished_at
                .checked_add(jiff::SignedDuration::from_secs(ttl.max(0).into()))
                .unwrap_or(finished_at);
            if now >= expires {
                plan.delete_job = true;
            } else {
                plan.requeue_after = Duration::try_from(expires.duration_since(now)).ok();
            }
        }
        plan.status = status;
        return plan;
    }

    if suspended {
        plan.delete = active.iter().map(|p| name(p)).collect();
        status.active = Some(0);
        status.ready = Some(0);
        status.start_time = None;
        set_condition(
            &mut status,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        );
        plan.status = status;
        return plan;
    }
    if condition_is(&previous, "Suspended", "True") {
        set_condition(
            &mut status,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        );
    }
    let start = previous.start_time.as_ref().map_or(now, |t| t.0);
    status.start_time = Some(Time(start));

    let complete = if indexed {
        completions.is_some_and(|c| completed_indexes.len() as i32 >= c)
    } else {
        match completions {
            Some(c) => succeeded >= c,
            // Without completions, the first success finishes the Job once
            // the other pods have stopped.
            None => succeeded > 0 && active.is_empty(),
        }
    };
    let deadline = spec.active_deadline_seconds.map(|s| {
        start
            .checked_add(jiff::SignedDuration::from_secs(s.max(0)))
            .unwrap_or(start)
    });
    let outcome = if complete {
        Some(Outcome::Complete)
    } else if failed + restarts > backoff_limit {
        Some(Outcome::Failed(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline.is_some_and(|d| now >= d) {
        Some(Outcome::Failed(
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };

    if let Some(outcome) = outcome {
        let (target, done, reason, message) = match outcome {
            Outcome::Complete => (
                "SuccessCriteriaMet",
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ),
            Outcome::Failed(reason, message) => ("FailureTarget", "Failed", reason, message),
        };
        set_condition(&mut status, target, "True", reason, message, now);
        plan.delete = active.iter().map(|p| name(p)).collect();
        // The end is declared once no pod of the Job is still running.
        if active.is_empty() && terminating == 0 {
            set_condition(&mut status, done, "True", reason, message, now);
            if outcome == Outcome::Complete {
                status.completion_time = Some(Time(now));
            }
            if let Some(ttl) = spec.ttl_seconds_after_finished {
                plan.requeue_after = Some(Duration::from_secs(ttl.max(0) as u64));
            }
        } else {
            plan.requeue_after = Some(Duration::from_secs(1));
        }
        plan.status = status;
        return plan;
    }

    // Room for new pods: parallelism, less what remains to finish.
    let wanted = if indexed {
        let remaining = completions.unwrap_or(0) - succeeded;
        parallelism.min(remaining.max(0))
    } else {
        match completions {
            Some(c) => parallelism.min((c - succeeded).max(0)),
            None if succeeded > 0 => active.len() as i32,
            None => parallelism,
        }
    } as usize;
    if active.len() > wanted {
        let mut ranked = active.clone();
        ranked.sort_by_key(|p| (is_ready(p), std::cmp::Reverse(created(p))));
        plan.delete = ranked[..active.len() - wanted]
            .iter()
            .map(|p| name(p))
            .collect();
    } else if active.len() < wanted {
        let wait = backoff_remaining(&failed_pods, failed, now);
        if let Some(wait) = wait {
            plan.requeue_after = Some(wait);
        } else if indexed {
            let running: BTreeSet<i32> =
                active.iter().filter_map(|p| completion_index(p)).collect();
            plan.create = (0..completions.unwrap_or(0))
                .filter(|i| !completed_indexes.contains(i) && !running.contains(i))
                .take(wanted - active.len())
                .map(Some)
                .collect();
        } else {
            plan.create = vec![None; wanted - active.len()];
        }
    }
    if let Some(deadline) = deadline {
        let left = Duration::try_from(deadline.duration_since(now)).unwrap_or_default();
        plan.requeue_after = Some(plan.requeue_after.map_or(left, |r| r.min(left)));
    }
    plan.status = status;
    plan
}

/// Exponential back-off after failures: 10 s, 20 s, … up to 6 min, counted
/// from the most recent failure.
fn backoff_remaining(failed_pods: &[&Pod], failed: i32, now: jiff::Timestamp) -> Option<Duration> {
    if failed == 0 {
        return None;
    }
    let last = failed_pods.iter().filter_map(|p| finished_time(p)).max()?;
    let delay = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow((failed - 1) as u32))
        .min(BACKOFF_MAX);
    let since = Duration::try_from(now.duration_since(last)).unwrap_or_default();
    delay.checked_sub(since).filter(|d| !d.is_zero())
}

/// When the Job's Complete or Failed condition turned true.
pub fn finished_at(status: &JobStatus) -> Option<jiff::Timestamp> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0)
        })
}

fn condition_is(status: &JobStatus, type_: &str, value: &str) -> bool {
    status
        .conditions
        .as_ref()
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == value))
}

/// Set a condition, keeping its transition time when the status is unchanged.
fn set_condition(
    status: &mut JobStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if existing.status != value {
            existing.status = value.into();
            existing.last_transition_time = Some(Time(now));
        }
        existing.reason = Some(reason.into());
        existing.message = Some(message.into());
        existing.last_probe_time = Some(Time(now));
        return;
    }
    conditions.push(JobCondition {
        type_: type_.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

pub fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .or_else(|| {
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(COMPLETION_INDEX))
        })
        .and_then(|i| i.parse().ok())
}

/// `1,3-5` → {1, 3, 4, 5}.
fn parse_indexes(text: Option<&str>) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in text
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
    {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
            set.extend(a..=b);
        }
    }
    set
}

/// {1, 3, 4, 5} → `1,3-5`, as `status.completedIndexes` reads.
fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in set {
        run = match run {
            Some((a, b)) if i == b + 1 => Some((a, i)),
            Some(done) => {
                parts.push(range_text(done));
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    parts.extend(run.map(range_text));
    parts.join(",")
}

fn range_text((a, b): (i32, i32)) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Succeeded" | "Failed"))
}

fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

/// When a finished pod's last container ended (else when it was created).
fn finished_time(pod: &Pod) -> Option<jiff::Timestamp> {
    let ended = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    ended.or_else(|| created(pod))
}

fn created(pod: &Pod) -> Option<jiff::Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}
