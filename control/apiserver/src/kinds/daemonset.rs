//! apps/v1 DaemonSet.

use k8s_openapi::api::apps::v1::DaemonSet;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::kinds::template::{self, Rules};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Desired", "integer", 0),
    Column::new("Current", "integer", 0),
    Column::new("Ready", "integer", 0),
    Column::new("Up-to-date", "integer", 0),
    Column::new("Available", "integer", 0),
    Column::new("Node Selector", "string", 0),
    Column::new("Age", "string", 0),
    Column::new("Containers", "string", 1),
    Column::new("Images", "string", 1),
    Column::new("Selector", "string", 1),
];

const RULES: Rules = Rules {
    restart_policies: &["Always"],
    noun: "daemonset",
};

pub fn resource() -> Resource {
    Resource {
        short_names: &["ds"],
        categories: &["all"],
        has_status: true,
        tracks_generation: true,
        defaults,
        validate,
        ..common::base(
            "apps",
            "v1",
            "DaemonSet",
            ("daemonsets", "daemonset"),
            decode_as::<DaemonSet>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn defaults(ds: &mut Value) {
    let spec = &mut ds["spec"];
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "updateStrategy", json!({}));
    let strategy = &mut spec["updateStrategy"];
    set_default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        set_default(strategy, "rollingUpdate", json!({}));
        set_default(&mut strategy["rollingUpdate"], "maxUnavailable", json!(1));
        set_default(&mut strategy["rollingUpdate"], "maxSurge", json!(0));
    }
    template::defaults(&mut spec["template"]);
}

fn validate(ds: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = template::validate(ds, old, &RULES);
    if let Some(kind) = ds["spec"]["updateStrategy"]["type"].as_str()
        && !["RollingUpdate", "OnDelete"].contains(&kind)
    {
        causes.push(Cause::unsupported(
            "spec.updateStrategy.type",
            kind,
            &["OnDelete", "RollingUpdate"],
        ));
    }
    causes
}

fn cells(ds: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let status = &ds["status"];
    let node_selector =
        common::map_selector_string(&ds["spec"]["template"]["spec"]["nodeSelector"]);
    let [containers, images, selector] = template::wide_cells(ds);
    vec![
        ds["metadata"]["name"].clone(),
        common::count(&status["desiredNumberScheduled"]),
        common::count(&status["currentNumberScheduled"]),
        common::count(&status["numberReady"]),
        common::count(&status["updatedNumberScheduled"]),
        common::count(&status["numberAvailable"]),
        common::selector_cell(node_selector),
        table::age(ds, now),
        containers,
        images,
        selector,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validation_and_cells() {
        let mut ds = json!({"metadata": {"name": "agent"}, "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "i"}],
                         "nodeSelector": {"kubernetes.io/os": "linux"}}}}});
        defaults(&mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert!(validate(&ds, None).is_empty());
        let cells = cells(&ds, jiff::Timestamp::now());
        assert_eq!(cells.len(), COLUMNS.len());
        assert_eq!(cells[6], "kubernetes.io/os=linux");
        ds["spec"]["updateStrategy"]["type"] = json!("Sometimes");
        assert_eq!(validate(&ds, None)[0].field, "spec.updateStrategy.type");
    }
}
