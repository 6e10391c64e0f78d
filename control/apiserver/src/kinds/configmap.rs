//! core/v1 ConfigMap.

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Data", "string", 0),
    Column::new("Age", "string", 0),
];

/// ConfigMaps and Secrets hold at most 1 MiB.
pub const MAX_SIZE: usize = 1024 * 1024;

pub fn resource() -> Resource {
    Resource {
        short_names: &["cm"],
        validate,
        ..common::base(
            "",
            "v1",
            "ConfigMap",
            ("configmaps", "configmap"),
            decode_as::<ConfigMap>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn keys(map: &Value) -> impl Iterator<Item = (&String, &Value)> {
    map.as_object().into_iter().flatten()
}

/// An object with `immutable: true` keeps its data (and the flag) forever.
pub fn immutable_data(object: &Value, old: &Value, fields: &[&str]) -> Vec<Cause> {
    if old["immutable"] != json!(true) {
        return Vec::new();
    }
    let mut causes: Vec<Cause> = fields
        .iter()
        .filter(|f| object[**f] != old[**f])
        .map(|f| Cause::forbidden(*f, "field is immutable when `immutable` is set"))
        .collect();
    if object["immutable"] != json!(true) {
        causes.push(Cause::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    causes
}

fn validate(cm: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(cm, None);
    let mut size = 0;
    for (key, value) in keys(&cm["data"]) {
        causes.extend(common::validate_config_key(key, "data"));
        size += key.len() + value.as_str().map_or(0, str::len);
    }
    for (key, value) in keys(&cm["binaryData"]) {
        causes.extend(common::validate_config_key(key, "binaryData"));
        if cm["data"].get(key).is_some() {
            causes.push(Cause::invalid(
                "data",
                &json!(key),
                "duplicate of key present in binaryData",
            ));
        }
        size += key.len() + value.as_str().map_or(0, |v| v.len() * 3 / 4);
    }
    if size > MAX_SIZE {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            field: String::new(),
            message: format!("Too long: must have at most {MAX_SIZE} bytes"),
        });
    }
    if let Some(old) = old {
        causes.extend(immutable_data(cm, old, &["data", "binaryData"]));
    }
    causes
}

fn cells(cm: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let data = keys(&cm["data"]).count() + keys(&cm["binaryData"]).count();
    vec![
        cm["metadata"]["name"].clone(),
        json!(data),
        table::age(cm, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_size_and_immutability() {
        let cm = json!({"metadata": {"name": "app"}, "data": {"a.conf": "x", "B_KEY": "y"},
            "binaryData": {"blob": "AAE="}});
        assert!(validate(&cm, None).is_empty());
        assert_eq!(cells(&cm, jiff::Timestamp::now())[1], 3);
        let bad = json!({"metadata": {"name": "app"}, "data": {"bad/key": "x"}});
        assert_eq!(validate(&bad, None)[0].field, "data");
        let mut frozen = cm.clone();
        frozen["immutable"] = json!(true);
        let mut changed = frozen.clone();
        changed["data"]["a.conf"] = json!("z");
        assert_eq!(validate(&changed, Some(&frozen))[0].field, "data");
        assert!(validate(&changed, Some(&cm)).is_empty());
    }
}
