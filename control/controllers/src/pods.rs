//! Facts about pods and owner references that several controllers read.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::core::{Selector, SelectorExt};

/// A pod that still counts towards its owner's replicas: neither finished
/// nor on its way out.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod's Ready condition last turned true, if it is true now.
pub fn ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        condition
            .last_transition_time
            .as_ref()
            .map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0),
    )
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready`, as `minReadySeconds` asks.
pub fn is_available(pod: &Pod, min_ready: Duration, now: jiff::Timestamp) -> bool {
    ready_since(pod).is_some_and(|since| ready_for(since, now) >= min_ready)
}

/// How long until a ready pod becomes available (None when it already is or
/// is not ready at all).
pub fn until_available(pod: &Pod, min_ready: Duration, now: jiff::Timestamp) -> Option<Duration> {
    let since = ready_since(pod)?;
    min_ready
        .checked_sub(ready_for(since, now))
        .filter(|d| !d.is_zero())
}

fn ready_for(since: jiff::Timestamp, now: jiff::Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or_default()
}

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `selector` selects `labels`. An empty or unparsable selector
/// selects nothing: a controller must never adopt everything in a namespace.
pub fn selects(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
    if empty {
        return false;
    }
    let Ok(parsed) = Selector::try_from(selector.clone()) else {
        return false;
    };
    let none = BTreeMap::new();
    parsed.matches(labels.unwrap_or(&none))
}

/// Kubernetes' toleration matching: the effect (empty = any), the key
/// (empty with `Exists` = any), and the value for `Equal`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}
