//! core/v1 ReplicationController: the ReplicaSet's predecessor, with a
//! plain map as its selector.

use k8s_openapi::api::core::v1::ReplicationController;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::kinds::replicaset;
use crate::kinds::template::{self, Rules};
use crate::resources::Resource;
use crate::table::TableDef;

const RULES: Rules = Rules {
    restart_policies: &["Always"],
    noun: "replicationcontroller",
};

pub fn resource() -> Resource {
    Resource {
        short_names: &["rc"],
        categories: &["all"],
        has_status: true,
        subresources: &["scale"],
        tracks_generation: true,
        field_selectors: &["status.replicas"],
        defaults,
        validate,
        ..common::base(
            "",
            "v1",
            "ReplicationController",
            ("replicationcontrollers", "replicationcontroller"),
            decode_as::<ReplicationController>,
            TableDef {
                columns: replicaset::COLUMNS,
                cells,
            },
        )
    }
}

/// A missing selector (and missing object labels) come from the template's labels.
fn defaults(rc: &mut Value) {
    let labels = rc["spec"]["template"]["metadata"]["labels"].clone();
    if labels.as_object().is_some_and(|l| !l.is_empty()) {
        set_default(&mut rc["spec"], "selector", labels.clone());
        if rc["metadata"]["labels"]
            .as_object()
            .is_none_or(|l| l.is_empty())
        {
            rc["metadata"]["labels"] = labels;
        }
    }
    set_default(&mut rc["spec"], "replicas", json!(1));
    template::defaults(&mut rc["spec"]["template"]);
}

/// The shared workload checks, with the map selector read as `matchLabels`;
/// unlike the apps kinds the selector may change.
fn validate(rc: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut view = rc.clone();
    if !rc["spec"]["selector"].is_null() {
        view["spec"]["selector"] = json!({"matchLabels": rc["spec"]["selector"]});
    }
    template::validate(&view, None, &RULES)
}

fn cells(rc: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let selector = common::selector_cell(common::map_selector_string(&rc["spec"]["selector"]));
    replicaset::replica_cells(rc, selector, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_defaults_from_template() {
        let mut rc = json!({"metadata": {"name": "old"}, "spec": {"template": {
            "metadata": {"labels": {"app": "old"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        defaults(&mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "old"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "old"}));
        assert!(validate(&rc, None).is_empty());
        rc["spec"]["selector"] = json!({"app": "other"});
        assert_eq!(
            validate(&rc, None)[0].field,
            "spec.template.metadata.labels"
        );
        assert_eq!(cells(&rc, jiff::Timestamp::now())[7], "app=other");
    }
}
