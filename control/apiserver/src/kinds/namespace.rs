//! core/v1 Namespace.

use k8s_openapi::api::core::v1::Namespace;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::validation;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Status", "string", 0),
    Column::new("Age", "string", 0),
];

pub fn resource() -> Resource {
    Resource {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        has_status: true,
        subresources: &[],
        tracks_generation: false,
        field_selectors: &["status.phase"],
        decode: decode_as::<Namespace>,
        defaults,
        validate,
        table: TableDef {
            columns: COLUMNS,
            cells,
        },
        custom: None,
    }
}

fn defaults(ns: &mut Value) {
    let name = ns["metadata"]["name"].clone();
    if name.is_string() {
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
    }
    if ns["spec"]["finalizers"].is_null() {
        ns["spec"]["finalizers"] = json!(["kubernetes"]);
    }
    if ns["status"]["phase"].is_null() {
        ns["status"]["phase"] = json!("Active");
    }
}

fn validate(ns: &Value, _old: Option<&Value>) -> Vec<Cause> {
    validation::metadata(ns, validation::dns_label)
}

fn cells(ns: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        ns["metadata"]["name"].clone(),
        ns["status"]["phase"].clone(),
        table::age(ns, now),
    ]
}
