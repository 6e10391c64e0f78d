//! The autoscaling decision: from the pods' usage and requests to a replica
//! count, as the HorizontalPodAutoscaler controller computes it for CPU and
//! memory Resource metrics.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricStatus, MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use skiff_quantity::scaled_or_zero;
use skiff_scheduler::facts::PodInfo;

/// A pod's measured usage: CPU in millicores, memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub milli_cpu: i64,
    pub memory: i64,
}

/// Changes within 10 % of the target do not rescale (kube-controller-manager's
/// `--horizontal-pod-autoscaler-tolerance`).
pub const TOLERANCE: f64 = 0.1;

/// What one evaluation decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The replica count before stabilization.
    pub recommendation: i32,
    pub status: HorizontalPodAutoscalerStatus,
    /// Why metrics could not be read, if so (the target is left alone).
    pub metrics_error: Option<String>,
}

/// Evaluate every Resource metric of `hpa` for `current` replicas; `pods`
/// are the target's pods, `usage` their measured usage by name.
pub fn evaluate(
    hpa: &HorizontalPodAutoscaler,
    current: i32,
    pods: &[&Pod],
    usage: &HashMap<String, Usage>,
    now: Timestamp,
) -> Decision {
    let spec = hpa.spec.clone().unwrap_or_default();
    let mut metrics_status = Vec::new();
    let mut proposals = Vec::new();
    let mut error = None;
    let running: Vec<&&Pod> = pods
        .iter()
        .filter(|p| crate::pods::is_active(p))
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect();
    for metric in spec.metrics.iter().flatten() {
        let Some(resource) = metric
            .resource
            .as_ref()
            .filter(|_| metric.type_ == "Resource")
        else {
            continue;
        };
        let name = resource.name.as_str();
        let (mut used, mut requested, mut measured) = (0i64, 0i64, 0i64);
        for pod in &running {
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let Some(u) = usage.get(&pod_name) else {
                continue;
            };
            let requests = PodInfo::from_pod(pod).requests;
            let (u, r) = match name {
                "cpu" => (u.milli_cpu, requests.milli_cpu),
                "memory" => (u.memory, requests.memory),
                _ => continue,
            };
            used += u;
            requested += r;
            measured += 1;
        }
        if measured == 0 {
            error = Some(format!(
                "unable to get metrics for resource {name}: no metrics returned from resource metrics API"
            ));
            continue;
        }
        let target = &resource.target;
        let mut current_value = MetricValueStatus::default();
        let average = used / measured;
        current_value.average_value = Some(Quantity(if name == "cpu" {
            format!("{average}m")
        } else {
            average.to_string()
        }));
        let ratio = if let Some(target_utilization) = target.average_utilization {
            if requested <= 0 {
                error = Some(format!(
                    "failed to get {name} utilization: missing request for {name}"
                ));
                continue;
            }
            let utilization = used * 100 / requested;
            current_value.average_utilization = Some(utilization as i32);
            utilization as f64 / f64::from(target_utilization.max(1))
        } else if let Some(value) = &target.average_value {
            let exponent = if name == "cpu" { -3 } else { 0 };
            let want = scaled_or_zero(&value.0, exponent).max(1);
            average as f64 / want as f64
        } else {
            continue;
        };
        let proposal = if (ratio - 1.0).abs() <= TOLERANCE {
            current
        } else {
            (ratio * measured as f64).ceil() as i32
        };
        proposals.push(proposal);
        metrics_status.push(MetricStatus {
            type_: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: name.into(),
                current: current_value,
            }),
            ..MetricStatus::default()
        });
    }
    let recommendation = proposals.into_iter().max().unwrap_or(current);
    let old = hpa.status.clone().unwrap_or_default();
    let mut conditions = vec![condition(
        "ScalingActive",
        error.is_none(),
        if error.is_none() { "ValidMetricFound" } else { "FailedGetResourceMetric" },
        error.as_deref().unwrap_or(
            "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)",
        ),
        &old,
        now,
    )];
    conditions.push(condition(
        "AbleToScale",
        true,
        "ReadyForNewScale",
        "recommended size matches current size",
        &old,
        now,
    ));
    Decision {
        recommendation,
        status: HorizontalPodAutoscalerStatus {
            current_replicas: Some(current),
            desired_replicas: current,
            current_metrics: Some(metrics_status),
            conditions: Some(conditions),
            last_scale_time: old.last_scale_time,
            observed_generation: hpa.metadata.generation,
        },
        metrics_error: error,
    }
}

/// The replica count to set: the recommendation, held back on the way down
/// by the highest recommendation of the stabilization window, limited on the
/// way up to doubling or 4 more pods per step, and clamped to min/max.
pub fn stabilize(
    hpa: &HorizontalPodAutoscaler,
    current: i32,
    recommendation: i32,
    window: &[i32],
) -> (i32, Option<&'static str>) {
    let spec = hpa.spec.clone().unwrap_or_default();
    let min = spec.min_replicas.unwrap_or(1).max(1);
    let max = spec.max_replicas.max(min);
    let mut desired = recommendation;
    if desired < current {
        desired = window
            .iter()
            .copied()
            .chain([desired])
            .max()
            .unwrap_or(desired)
            .min(current);
    }
    let up_limit = (current * 2).max(current + 4);
    if desired > up_limit {
        desired = up_limit;
    }
    if desired < min {
        (min, Some("TooFewReplicas"))
    } else if desired > max {
        (max, Some("TooManyReplicas"))
    } else {
        (desired, None)
    }
}

/// The ScalingLimited condition for the outcome of [`stabilize`].
pub fn limited_condition(
    limit: Option<&str>,
    old: &HorizontalPodAutoscalerStatus,
    now: Timestamp,
) -> HorizontalPodAutoscalerCondition {
    match limit {
        Some("TooFewReplicas") => condition(
            "ScalingLimited",
            true,
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
            old,
            now,
        ),
        Some(_) => condition(
            "ScalingLimited",
            true,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
            old,
            now,
        ),
        None => condition(
            "ScalingLimited",
            false,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
            old,
            now,
        ),
    }
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    old: &HorizontalPodAutoscalerStatus,
    now: Timestamp,
) -> HorizontalPodAutoscalerCondition {
    let status = if status { "True" } else { "False" };
    let since = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    HorizontalPodAutoscalerCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(since),
    }
}
