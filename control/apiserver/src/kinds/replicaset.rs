//! apps/v1 ReplicaSet.

use k8s_openapi::api::apps::v1::ReplicaSet;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::kinds::template::{self, Rules};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

/// The columns ReplicaSets and ReplicationControllers share.
pub const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Desired", "integer", 0),
    Column::new("Current", "integer", 0),
    Column::new("Ready", "integer", 0),
    Column::new("Age", "string", 0),
    Column::new("Containers", "string", 1),
    Column::new("Images", "string", 1),
    Column::new("Selector", "string", 1),
];

const RULES: Rules = Rules {
    restart_policies: &["Always"],
    noun: "replicaset",
};

pub fn resource() -> Resource {
    Resource {
        short_names: &["rs"],
        categories: &["all"],
        has_status: true,
        subresources: &["scale"],
        tracks_generation: true,
        field_selectors: &["status.replicas"],
        defaults,
        validate,
        ..common::base(
            "apps",
            "v1",
            "ReplicaSet",
            ("replicasets", "replicaset"),
            decode_as::<ReplicaSet>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn defaults(rs: &mut Value) {
    set_default(&mut rs["spec"], "replicas", json!(1));
    template::defaults(&mut rs["spec"]["template"]);
}

fn validate(rs: &Value, old: Option<&Value>) -> Vec<Cause> {
    template::validate(rs, old, &RULES)
}

/// DESIRED CURRENT READY from spec and status, then AGE, then `wide`.
pub fn replica_cells(object: &Value, selector: Value, now: jiff::Timestamp) -> Vec<Value> {
    let [containers, images] = common::containers_and_images(&object["spec"]["template"]["spec"]);
    vec![
        object["metadata"]["name"].clone(),
        common::count(&object["spec"]["replicas"]),
        common::count(&object["status"]["replicas"]),
        common::count(&object["status"]["readyReplicas"]),
        table::age(object, now),
        containers,
        images,
        selector,
    ]
}

fn cells(rs: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let selector = common::selector_cell(common::selector_string(&rs["spec"]["selector"]));
    replica_cells(rs, selector, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validation_and_cells() {
        let mut rs = json!({"metadata": {"name": "web-1"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        defaults(&mut rs);
        assert_eq!(rs["spec"]["replicas"], 1);
        assert!(validate(&rs, None).is_empty());
        rs["status"] = json!({"replicas": 1, "readyReplicas": 1});
        let cells = cells(&rs, jiff::Timestamp::now());
        assert_eq!(cells.len(), COLUMNS.len());
        assert_eq!(&cells[1..4], &[json!(1), json!(1), json!(1)]);
        assert_eq!(cells[7], "app=web");
    }
}
