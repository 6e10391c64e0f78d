//! apps/v1 ControllerRevision: the history StatefulSets and DaemonSets keep.

use k8s_openapi::api::apps::v1::ControllerRevision;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common;
use crate::kinds::template::non_negative;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Controller", "string", 0),
    Column::new("Revision", "integer", 0),
    Column::new("Age", "string", 0),
];

pub fn resource() -> Resource {
    Resource {
        validate,
        ..common::base(
            "apps",
            "v1",
            "ControllerRevision",
            ("controllerrevisions", "controllerrevision"),
            decode_as::<ControllerRevision>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn validate(revision: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(revision, None);
    causes.extend(non_negative(&revision["revision"], "revision"));
    if let Some(old) = old {
        causes.extend(common::immutable(revision, old, &["data"], "data"));
    }
    causes
}

/// `kind.group/name` of the controlling owner, e.g. `statefulset.apps/web`.
pub fn controller(object: &Value) -> Value {
    let owner = object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["controller"] == json!(true));
    let Some(owner) = owner else {
        return json!("<none>");
    };
    let api_version = owner["apiVersion"].as_str().unwrap_or_default();
    let kind = owner["kind"].as_str().unwrap_or_default();
    let group_kind = match api_version.split_once('/') {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind.to_string(),
    };
    json!(format!(
        "{}/{}",
        group_kind.to_lowercase(),
        owner["name"].as_str().unwrap_or_default()
    ))
}

fn cells(revision: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        revision["metadata"]["name"].clone(),
        controller(revision),
        common::count(&revision["revision"]),
        table::age(revision, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_cell_and_immutable_data() {
        let rev = json!({"metadata": {"name": "web-7d4", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}]},
            "revision": 2, "data": {"spec": {}}});
        let cells = cells(&rev, jiff::Timestamp::now());
        assert_eq!(cells[1], "statefulset.apps/web");
        assert_eq!(cells[2], 2);
        let mut changed = rev.clone();
        changed["data"] = json!({"spec": {"x": 1}});
        assert_eq!(validate(&changed, Some(&rev))[0].field, "data");
    }
}
