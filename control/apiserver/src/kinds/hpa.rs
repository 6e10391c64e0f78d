//! autoscaling/v2 HorizontalPodAutoscaler, the stored shape; autoscaling/v1
//! is served from it by conversion ([`crate::kinds::hpa_v1`]).

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Reference", "string", 0),
    Column::new("Targets", "string", 0),
    Column::new("MinPods", "string", 0),
    Column::new("MaxPods", "string", 0),
    Column::new("Replicas", "string", 0),
    Column::new("Age", "string", 0),
];

pub fn resource() -> Resource {
    Resource {
        short_names: &["hpa"],
        categories: &["all"],
        has_status: true,
        defaults,
        validate,
        ..common::base(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            ("horizontalpodautoscalers", "horizontalpodautoscaler"),
            decode_as::<HorizontalPodAutoscaler>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

/// Kubernetes scales on 80% CPU when no metric is given.
fn defaults(hpa: &mut Value) {
    let spec = &mut hpa["spec"];
    set_default(spec, "minReplicas", json!(1));
    if spec["metrics"].as_array().is_none_or(|m| m.is_empty()) {
        spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}]);
    }
}

fn validate(hpa: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(hpa, None);
    let spec = &hpa["spec"];
    for field in ["kind", "name"] {
        if spec["scaleTargetRef"][field]
            .as_str()
            .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(format!("spec.scaleTargetRef.{field}")));
        }
    }
    let min = spec["minReplicas"].as_i64().unwrap_or(1);
    if min < 1 {
        causes.push(Cause::invalid(
            "spec.minReplicas",
            &spec["minReplicas"],
            "must be greater than or equal to 1",
        ));
    }
    if spec["maxReplicas"].as_i64().unwrap_or(0) < min.max(1) {
        causes.push(Cause::invalid(
            "spec.maxReplicas",
            &spec["maxReplicas"],
            "must be greater than or equal to `minReplicas`",
        ));
    }
    causes
}

/// One TARGETS entry, `cpu: 40%/80%`, with `<unknown>` before the first reading.
fn target(metric: &Value, current: Option<&Value>) -> String {
    let kind = metric["type"].as_str().unwrap_or_default();
    let source = &metric[lower_first(kind).as_str()];
    let goal = &source["target"];
    let now = current.map(|c| &c[lower_first(kind).as_str()]["current"]);
    let (current, wanted) = match goal["type"].as_str().unwrap_or_default() {
        "Utilization" => (
            now.and_then(|c| c["averageUtilization"].as_i64())
                .map_or("<unknown>".to_string(), |u| format!("{u}%")),
            format!("{}%", goal["averageUtilization"]),
        ),
        "AverageValue" => (
            now.and_then(|c| c["averageValue"].as_str())
                .unwrap_or("<unknown>")
                .to_string(),
            match kind {
                "Object" | "External" => {
                    format!(
                        "{} (avg)",
                        goal["averageValue"].as_str().unwrap_or_default()
                    )
                }
                _ => goal["averageValue"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            },
        ),
        _ => (
            now.and_then(|c| c["value"].as_str())
                .unwrap_or("<unknown>")
                .to_string(),
            goal["value"].as_str().unwrap_or_default().to_string(),
        ),
    };
    match kind {
        "Resource" | "ContainerResource" => {
            format!(
                "{}: {current}/{wanted}",
                source["name"].as_str().unwrap_or_default()
            )
        }
        _ => format!("{current}/{wanted}"),
    }
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn targets(hpa: &Value) -> String {
    let current = hpa["status"]["currentMetrics"].as_array();
    let items: Vec<String> = hpa["spec"]["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, m)| target(m, current.and_then(|c| c.get(i))))
        .collect();
    if items.is_empty() {
        "<none>".into()
    } else {
        common::join_limited(&items, 2, ", ")
    }
}

fn cells(hpa: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let spec = &hpa["spec"];
    let reference = format!(
        "{}/{}",
        spec["scaleTargetRef"]["kind"].as_str().unwrap_or_default(),
        spec["scaleTargetRef"]["name"].as_str().unwrap_or_default()
    );
    let min = spec["minReplicas"]
        .as_i64()
        .map_or("<unset>".to_string(), |m| m.to_string());
    vec![
        hpa["metadata"]["name"].clone(),
        json!(reference),
        json!(targets(hpa)),
        json!(min),
        common::count(&spec["maxReplicas"]),
        common::count(&hpa["status"]["currentReplicas"]),
        table::age(hpa, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validation_and_cells() {
        let mut hpa = json!({"metadata": {"name": "web"}, "spec": {"maxReplicas": 5,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}});
        defaults(&mut hpa);
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert!(validate(&hpa, None).is_empty());
        let cells = cells(&hpa, jiff::Timestamp::now());
        assert_eq!(
            &cells[1..5],
            &[
                json!("Deployment/web"),
                json!("cpu: <unknown>/80%"),
                json!("1"),
                json!(5)
            ]
        );
        hpa["status"] = json!({"currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": 42}}}]});
        assert_eq!(targets(&hpa), "cpu: 42%/80%");
        hpa["spec"]["maxReplicas"] = json!(0);
        assert_eq!(validate(&hpa, None)[0].field, "spec.maxReplicas");
    }
}
