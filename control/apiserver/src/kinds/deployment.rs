//! apps/v1 Deployment.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::kinds::template::{self, Rules};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Ready", "string", 0),
    Column::new("Up-to-date", "integer", 0),
    Column::new("Available", "integer", 0),
    Column::new("Age", "string", 0),
    Column::new("Containers", "string", 1),
    Column::new("Images", "string", 1),
    Column::new("Selector", "string", 1),
];

const RULES: Rules = Rules {
    restart_policies: &["Always"],
    noun: "deployment",
};

pub fn resource() -> Resource {
    Resource {
        short_names: &["deploy"],
        categories: &["all"],
        has_status: true,
        subresources: &["scale"],
        tracks_generation: true,
        defaults,
        validate,
        ..common::base(
            "apps",
            "v1",
            "Deployment",
            ("deployments", "deployment"),
            decode_as::<Deployment>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn defaults(deploy: &mut Value) {
    let spec = &mut deploy["spec"];
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    set_default(spec, "strategy", json!({}));
    let strategy = &mut spec["strategy"];
    set_default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        set_default(strategy, "rollingUpdate", json!({}));
        set_default(&mut strategy["rollingUpdate"], "maxSurge", json!("25%"));
        set_default(
            &mut strategy["rollingUpdate"],
            "maxUnavailable",
            json!("25%"),
        );
    }
    template::defaults(&mut spec["template"]);
}

/// An int-or-percent is zero when it is 0 or "0%".
fn is_zero(value: &Value) -> bool {
    value.as_i64() == Some(0) || value.as_str() == Some("0%")
}

fn validate(deploy: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = template::validate(deploy, old, &RULES);
    let spec = &deploy["spec"];
    let strategy = &spec["strategy"];
    match strategy["type"].as_str().unwrap_or_default() {
        "RollingUpdate" => {
            let rolling = &strategy["rollingUpdate"];
            if is_zero(&rolling["maxSurge"]) && is_zero(&rolling["maxUnavailable"]) {
                causes.push(Cause::invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    &rolling["maxUnavailable"],
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        "Recreate" => {
            if !strategy["rollingUpdate"].is_null() {
                causes.push(Cause::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        other => causes.push(Cause::unsupported(
            "spec.strategy.type",
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
    if let (Some(deadline), min_ready) = (
        spec["progressDeadlineSeconds"].as_i64(),
        spec["minReadySeconds"].as_i64().unwrap_or(0),
    ) && deadline <= min_ready
    {
        causes.push(Cause::invalid(
            "spec.progressDeadlineSeconds",
            &spec["progressDeadlineSeconds"],
            "must be greater than minReadySeconds",
        ));
    }
    causes
}

fn cells(deploy: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let status = &deploy["status"];
    let ready = format!(
        "{}/{}",
        status["readyReplicas"].as_i64().unwrap_or(0),
        deploy["spec"]["replicas"].as_i64().unwrap_or(0)
    );
    let [containers, images, selector] = template::wide_cells(deploy);
    vec![
        deploy["metadata"]["name"].clone(),
        json!(ready),
        common::count(&status["updatedReplicas"]),
        common::count(&status["availableReplicas"]),
        table::age(deploy, now),
        containers,
        images,
        selector,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "file:///web.wasm"}]}}}})
    }

    #[test]
    fn defaults_like_kubernetes() {
        let mut deploy = web();
        defaults(&mut deploy);
        let spec = &deploy["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            spec["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        assert!(validate(&deploy, None).is_empty());
    }

    #[test]
    fn strategy_checks() {
        let mut deploy = web();
        deploy["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}});
        defaults(&mut deploy);
        let fields: Vec<String> = validate(&deploy, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, vec!["spec.strategy.rollingUpdate"]);
        let mut zero = web();
        zero["spec"]["strategy"] =
            json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        zero["spec"]["replicas"] = json!(-1);
        defaults(&mut zero);
        let fields: Vec<String> = validate(&zero, None).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            vec![
                "spec.replicas",
                "spec.strategy.rollingUpdate.maxUnavailable"
            ]
        );
    }

    #[test]
    fn table_cells() {
        let mut deploy = web();
        defaults(&mut deploy);
        deploy["spec"]["replicas"] = json!(3);
        deploy["status"] =
            json!({"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2});
        let cells = cells(&deploy, jiff::Timestamp::now());
        assert_eq!(cells.len(), COLUMNS.len());
        assert_eq!(cells[1], "2/3");
        assert_eq!(cells[2], 3);
        assert_eq!(cells[3], 2);
        assert_eq!(cells[5], "c");
        assert_eq!(cells[6], "file:///web.wasm");
        assert_eq!(cells[7], "app=web");
    }
}
