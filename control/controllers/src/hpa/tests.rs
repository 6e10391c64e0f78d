use std::collections::HashMap;

use futures::future::BoxFuture;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::*;

fn hpa(metrics: Value, min: i32, max: i32) -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": min, "maxReplicas": max, "metrics": metrics
        }
    }))
    .unwrap()
}

fn cpu_target(percent: i32) -> Value {
    json!([{"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": percent}}}])
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "200m", "memory": "100Mi"}}}]},
        "status": {"phase": "Running"}
    }))
    .unwrap()
}

/// Fake metrics: each pod uses what the test says.
struct Fixed(HashMap<String, Usage>);

impl PodMetrics for Fixed {
    fn usage<'a>(
        &'a self,
        _namespace: &'a str,
        pods: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, Usage>, String>> {
        let found = pods
            .iter()
            .filter_map(|p| self.0.get(p).map(|u| (p.clone(), *u)))
            .collect();
        Box::pin(async move { Ok(found) })
    }
}

async fn decide(hpa: &HorizontalPodAutoscaler, milli_each: &[i64]) -> Decision {
    let pods: Vec<Pod> = (0..milli_each.len())
        .map(|i| pod(&format!("p{i}")))
        .collect();
    let metrics = Fixed(
        milli_each
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    format!("p{i}"),
                    Usage {
                        milli_cpu: *m,
                        memory: 50 << 20,
                    },
                )
            })
            .collect(),
    );
    let names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let usage = metrics.usage("default", &names).await.unwrap();
    let refs: Vec<&Pod> = pods.iter().collect();
    evaluate(
        hpa,
        pods.len() as i32,
        &refs,
        &usage,
        jiff::Timestamp::UNIX_EPOCH,
    )
}

#[tokio::test]
async fn busy_pods_scale_up_to_bring_utilization_to_the_target() {
    let hpa = hpa(cpu_target(50), 1, 10);
    // 3 pods at 180m of 200m = 90 % against a 50 % target: ceil(3 * 1.8) = 6.
    let decision = decide(&hpa, &[180, 180, 180]).await;
    assert_eq!(decision.recommendation, 6);
    let metric = &decision.status.current_metrics.as_ref().unwrap()[0];
    let current = &metric.resource.as_ref().unwrap().current;
    assert_eq!(current.average_utilization, Some(90));
    assert_eq!(current.average_value.as_ref().unwrap().0, "180m");
    assert_eq!(stabilize(&hpa, 3, 6, &[]), (6, None));
    assert_eq!(
        stabilize(&hpa, 3, 40, &[]),
        (7, None),
        "one step: at most 4 more"
    );
    assert_eq!(stabilize(&hpa, 8, 40, &[]), (10, Some("TooManyReplicas")));
}

#[tokio::test]
async fn within_tolerance_nothing_changes_and_scale_down_waits_for_the_window() {
    let hpa = hpa(cpu_target(50), 2, 10);
    let steady = decide(&hpa, &[105, 105, 105, 105]).await;
    assert_eq!(steady.recommendation, 4, "52 % is within 10 % of 50 %");

    let idle = decide(&hpa, &[10, 10, 10, 10]).await;
    assert_eq!(idle.recommendation, 1);
    // A recommendation of 4 within the last five minutes holds it at 4.
    assert_eq!(stabilize(&hpa, 4, 1, &[4, 3]), (4, None));
    // Once the window only holds low values, it goes down, but not below min.
    assert_eq!(stabilize(&hpa, 4, 1, &[1, 1]), (2, Some("TooFewReplicas")));
}

#[tokio::test]
async fn memory_average_value_and_missing_metrics() {
    let memory = hpa(
        json!([{"type": "Resource", "resource": {"name": "memory",
            "target": {"type": "AverageValue", "averageValue": "25Mi"}}}]),
        1,
        10,
    );
    // 50 MiB each against 25 MiB: twice as many pods.
    assert_eq!(decide(&memory, &[1, 1]).await.recommendation, 4);

    let none = decide(&hpa(cpu_target(50), 1, 10), &[]).await;
    assert!(none.metrics_error.is_some());
    let active = none
        .status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "ScalingActive")
        .unwrap();
    assert_eq!(active.status, "False");
    assert_eq!(active.reason.as_deref(), Some("FailedGetResourceMetric"));
}

#[test]
fn scale_up_is_limited_per_step() {
    let hpa = hpa(cpu_target(50), 1, 100);
    assert_eq!(
        stabilize(&hpa, 2, 50, &[]),
        (6, None),
        "at most 4 more than 2"
    );
    assert_eq!(
        stabilize(&hpa, 10, 50, &[]),
        (20, None),
        "at most double 10"
    );
}
