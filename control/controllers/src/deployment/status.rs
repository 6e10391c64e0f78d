//! A Deployment's status: counts summed over its ReplicaSets and the
//! Available / Progressing conditions `kubectl rollout status` reads.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::available;

pub struct Outcome {
    pub status: DeploymentStatus,
    /// Every replica updated and available: the rollout is over.
    pub complete: bool,
    pub requeue_after: Option<Duration>,
}

const DEFAULT_DEADLINE_SECONDS: i32 = 600;

pub fn compute(
    deployment: &Deployment,
    new: Option<&ReplicaSet>,
    olds: &[&ReplicaSet],
    created: Option<&str>,
    max_unavailable: i32,
    now: jiff::Timestamp,
) -> Outcome {
    let spec = deployment.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let previous = deployment.status.clone().unwrap_or_default();
    let all: Vec<&ReplicaSet> = new.into_iter().chain(olds.iter().copied()).collect();
    let count = |f: fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
    let total = count(|rs| rs.status.as_ref().map_or(0, |s| s.replicas));
    let ready = count(|rs| {
        rs.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    });
    let available_total = count(available);
    let updated = new
        .and_then(|rs| rs.status.as_ref())
        .map_or(0, |s| s.replicas);
    let mut status = DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available_total),
        unavailable_replicas: Some((replicas - available_total).max(0)),
        collision_count: previous.collision_count,
        conditions: previous.conditions.clone(),
    };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if available_total >= replicas - max_unavailable {
        set(
            conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        );
    } else {
        set(
            conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        );
    }

    let complete =
        updated == replicas && total == replicas && available_total == replicas && new.is_some();
    let new_name = created
        .map(str::to_string)
        .or_else(|| new.and_then(|rs| rs.metadata.name.clone()))
        .unwrap_or_default();
    let deadline = spec
        .progress_deadline_seconds
        .unwrap_or(DEFAULT_DEADLINE_SECONDS)
        .max(0) as i64;
    let progressing = find(conditions, "Progressing").cloned();
    let mut requeue_after = None;
    if spec.paused == Some(true) {
        set(
            conditions,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            now,
        );
    } else if created.is_some() {
        replace(
            conditions,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{new_name}\""),
            now,
            progressing.as_ref(),
        );
    } else if complete {
        set(
            conditions,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            now,
        );
    } else if made_progress(&previous, &status)
        || progressing
            .as_ref()
            .is_none_or(|c| c.reason.as_deref() == Some("DeploymentPaused"))
    {
        let reason = if progressing.is_none() {
            "FoundNewReplicaSet"
        } else {
            "ReplicaSetUpdated"
        };
        let message = if reason == "FoundNewReplicaSet" {
            format!("Found new replica set \"{new_name}\"")
        } else {
            format!("ReplicaSet \"{new_name}\" is progressing.")
        };
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        replace(
            conditions,
            "Progressing",
            "True",
            reason,
            &message,
            now,
            progressing.as_ref(),
        );
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if !complete
        && spec.paused != Some(true)
        && let Some(current) = find(conditions, "Progressing").cloned()
    {
        let since = current.last_update_time.as_ref().map_or(now, |t| t.0);
        let elapsed = now.duration_since(since).as_secs();
        if current.status == "True" && elapsed >= deadline {
            set(
                conditions,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                now,
            );
        } else if current.status == "True" {
            requeue_after = Some(Duration::from_secs((deadline - elapsed).max(1) as u64));
        }
    }
    Outcome {
        status,
        complete,
        requeue_after,
    }
}

/// More pods updated, ready or available, or fewer old ones, than the last
/// recorded status: the rollout moved.
fn made_progress(before: &DeploymentStatus, after: &DeploymentStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_before = n(before.replicas) - n(before.updated_replicas);
    let old_after = n(after.replicas) - n(after.updated_replicas);
    n(after.updated_replicas) > n(before.updated_replicas)
        || old_after < old_before
        || n(after.ready_replicas) > n(before.ready_replicas)
        || n(after.available_replicas) > n(before.available_replicas)
}

fn find<'a>(conditions: &'a [DeploymentCondition], type_: &str) -> Option<&'a DeploymentCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Set a condition unless it already says the same (status and reason).
fn set(
    conditions: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) {
    if let Some(current) = conditions.iter().find(|c| c.type_ == type_)
        && current.status == status
        && current.reason.as_deref() == Some(reason)
    {
        return;
    }
    let previous = conditions.iter().find(|c| c.type_ == type_).cloned();
    replace(
        conditions,
        type_,
        status,
        reason,
        message,
        now,
        previous.as_ref(),
    );
}

/// Write the condition fresh (new update time), keeping the transition time
/// while the status stays the same.
fn replace(
    conditions: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
    previous: Option<&DeploymentCondition>,
) {
    let transition = previous
        .filter(|p| p.status == status)
        .and_then(|p| p.last_transition_time.clone())
        .unwrap_or(Time(now));
    conditions.retain(|c| c.type_ != type_);
    conditions.push(DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(transition),
    });
}
