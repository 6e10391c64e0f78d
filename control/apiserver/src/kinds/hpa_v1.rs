//! autoscaling/v1 HorizontalPodAutoscaler: the same objects as autoscaling/v2
//! (stored in the v2 shape), converted on the way in and out as Kubernetes
//! does. v1 only knows a CPU utilization target; the v2 fields it cannot
//! hold (other metrics, behavior, conditions, other current metrics) travel
//! in `autoscaling.alpha.kubernetes.io/*` annotations, so a v1 round trip
//! loses nothing.

use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use serde_json::{Map, Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::resources::Resource;
use crate::table::TableDef;

pub const VERSION: &str = "v1";

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const CURRENT: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";

pub fn resource() -> Resource {
    let v2 = crate::kinds::hpa::resource();
    Resource {
        short_names: &["hpa"],
        categories: &["all"],
        has_status: true,
        defaults,
        validate,
        ..common::base(
            "autoscaling",
            VERSION,
            "HorizontalPodAutoscaler",
            ("horizontalpodautoscalers", "horizontalpodautoscaler"),
            decode_as::<HorizontalPodAutoscaler>,
            TableDef {
                columns: v2.table.columns,
                cells,
            },
        )
    }
}

/// Whether `resource` is served in the v1 shape over v2 storage.
pub fn is_v1(resource: &Resource) -> bool {
    resource.group == "autoscaling"
        && resource.version == VERSION
        && resource.kind == "HorizontalPodAutoscaler"
        && resource.custom.is_none()
}

fn defaults(hpa: &mut Value) {
    set_default(&mut hpa["spec"], "minReplicas", json!(1));
}

fn validate(hpa: &Value, old: Option<&Value>) -> Vec<Cause> {
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
    match spec["maxReplicas"].as_i64() {
        None => causes.push(Cause::required("spec.maxReplicas")),
        Some(max) if max < min => causes.push(Cause::invalid(
            "spec.maxReplicas",
            &spec["maxReplicas"],
            "must be greater than or equal to `minReplicas`",
        )),
        Some(_) => {}
    }
    if let Some(cpu) = spec["targetCPUUtilizationPercentage"].as_i64()
        && cpu < 1
    {
        causes.push(Cause::invalid(
            "spec.targetCPUUtilizationPercentage",
            &spec["targetCPUUtilizationPercentage"],
            "must be greater than or equal to 1",
        ));
    }
    let _ = old;
    causes
}

fn cells(hpa: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let v2 = crate::kinds::hpa::resource();
    (v2.table.cells)(&to_v2(hpa), now)
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
}

fn annotations(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"]["annotations"].is_object() {
        object["metadata"]["annotations"] = json!({});
    }
    object["metadata"]["annotations"]
        .as_object_mut()
        .expect("just made an object")
}

fn take_annotation(object: &mut Value, key: &str) -> Option<Value> {
    let taken = object
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
        .and_then(|a| a.remove(key))?;
    if object["metadata"]["annotations"]
        .as_object()
        .is_some_and(Map::is_empty)
        && let Some(meta) = object["metadata"].as_object_mut()
    {
        meta.remove("annotations");
    }
    serde_json::from_str(taken.as_str()?).ok()
}

/// The stored (v2) shape of a v1 object.
pub fn to_v2(v1: &Value) -> Value {
    let mut out = v1.clone();
    out["apiVersion"] = json!("autoscaling/v2");
    let mut metrics: Vec<Value> = take_annotation(&mut out, METRICS)
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default();
    let behavior = take_annotation(&mut out, BEHAVIOR);
    let current_other: Vec<Value> = take_annotation(&mut out, CURRENT)
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default();
    let conditions = take_annotation(&mut out, CONDITIONS);
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(cpu) = spec.remove("targetCPUUtilizationPercentage") {
            metrics.insert(
                0,
                json!({"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": cpu}}}),
            );
        }
        if !metrics.is_empty() {
            spec.insert("metrics".into(), json!(metrics));
        }
        if let Some(behavior) = behavior {
            spec.insert("behavior".into(), behavior);
        }
    }
    if let Some(status) = out.get_mut("status").and_then(Value::as_object_mut) {
        let mut current = current_other;
        if let Some(cpu) = status.remove("currentCPUUtilizationPercentage") {
            current.insert(
                0,
                json!({"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": cpu}}}),
            );
        }
        if !current.is_empty() {
            status.insert("currentMetrics".into(), json!(current));
        }
        if let Some(conditions) = conditions {
            status.insert("conditions".into(), conditions);
        }
    }
    out
}

/// The v1 shape of a stored (v2) object.
pub fn to_v1(v2: &Value) -> Value {
    let mut out = v2.clone();
    out["apiVersion"] = json!("autoscaling/v1");
    let mut notes: Vec<(&str, Value)> = Vec::new();
    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
        let metrics: Vec<Value> = spec
            .remove("metrics")
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default();
        let (cpu, other): (Vec<Value>, Vec<Value>) =
            metrics.into_iter().partition(is_cpu_utilization);
        if let Some(target) = cpu
            .first()
            .map(|m| &m["resource"]["target"]["averageUtilization"])
            && !target.is_null()
        {
            spec.insert("targetCPUUtilizationPercentage".into(), target.clone());
        }
        if !other.is_empty() {
            notes.push((METRICS, json!(other)));
        }
        if let Some(behavior) = spec.remove("behavior") {
            notes.push((BEHAVIOR, behavior));
        }
    }
    if let Some(status) = out.get_mut("status").and_then(Value::as_object_mut) {
        let current: Vec<Value> = status
            .remove("currentMetrics")
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default();
        let (cpu, other): (Vec<Value>, Vec<Value>) = current
            .into_iter()
            .partition(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu");
        if let Some(value) = cpu
            .first()
            .map(|m| &m["resource"]["current"]["averageUtilization"])
            && !value.is_null()
        {
            status.insert("currentCPUUtilizationPercentage".into(), value.clone());
        }
        if !other.is_empty() {
            notes.push((CURRENT, json!(other)));
        }
        if let Some(conditions) = status.remove("conditions") {
            notes.push((CONDITIONS, conditions));
        }
    }
    for (key, value) in notes {
        let text = serde_json::to_string(&value).expect("JSON values serialize");
        annotations(&mut out).insert(key.into(), json!(text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v2_object_survives_a_v1_round_trip() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"currentReplicas": 2, "desiredReplicas": 2,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 30}}}],
                "conditions": [{"type": "AbleToScale", "status": "True"}]}});
        let v1 = to_v1(&v2);
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 30);
        assert!(v1["spec"].get("metrics").is_none());
        assert!(
            v1["metadata"]["annotations"][METRICS]
                .as_str()
                .unwrap()
                .contains("memory")
        );
        assert!(validate(&v1, None).is_empty(), "{:?}", validate(&v1, None));
        assert_eq!(to_v2(&v1), v2);
    }

    #[test]
    fn a_plain_v1_object_becomes_a_cpu_metric() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3,
                "targetCPUUtilizationPercentage": 50}});
        let v2 = to_v2(&v1);
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            50
        );
        assert!(v2["metadata"].get("annotations").is_none());
        let bad =
            json!({"metadata": {"name": "web"}, "spec": {"minReplicas": 4, "maxReplicas": 3}});
        let fields: Vec<String> = validate(&bad, None).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            vec![
                "spec.scaleTargetRef.kind",
                "spec.scaleTargetRef.name",
                "spec.maxReplicas"
            ]
        );
    }
}
