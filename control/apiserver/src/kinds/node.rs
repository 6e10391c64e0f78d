//! core/v1 Node.

use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::validation;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Status", "string", 0),
    Column::new("Roles", "string", 0),
    Column::new("Age", "string", 0),
    Column::new("Version", "string", 0),
    Column::new("Internal-IP", "string", 1),
    Column::new("External-IP", "string", 1),
    Column::new("OS-Image", "string", 1),
    Column::new("Kernel-Version", "string", 1),
    Column::new("Container-Runtime", "string", 1),
];

pub fn resource() -> Resource {
    Resource {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        has_status: true,
        subresources: &[],
        tracks_generation: false,
        field_selectors: &["spec.unschedulable"],
        decode: decode_as::<Node>,
        defaults: |_| {},
        validate,
        table: TableDef {
            columns: COLUMNS,
            cells,
        },
        custom: None,
    }
}

fn validate(node: &Value, _old: Option<&Value>) -> Vec<Cause> {
    validation::metadata(node, validation::dns_subdomain)
}

/// `Ready`, `NotReady` or `Unknown`, with `,SchedulingDisabled` when cordoned.
fn status(node: &Value) -> String {
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| match c["status"].as_str() {
            Some("True") => "Ready",
            Some("False") => "NotReady",
            _ => "Unknown",
        })
        .unwrap_or("Unknown");
    if node["spec"]["unschedulable"] == json!(true) {
        format!("{ready},SchedulingDisabled")
    } else {
        ready.to_string()
    }
}

fn roles(node: &Value) -> String {
    let mut roles: Vec<&str> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn address(node: &Value, kind: &str) -> Value {
    node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == kind)
        .map(|a| a["address"].clone())
        .unwrap_or_else(|| json!("<none>"))
}

fn cells(node: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let info = &node["status"]["nodeInfo"];
    vec![
        node["metadata"]["name"].clone(),
        json!(status(node)),
        json!(roles(node)),
        table::age(node, now),
        info["kubeletVersion"].clone(),
        address(node, "InternalIP"),
        address(node, "ExternalIP"),
        info["osImage"].clone(),
        info["kernelVersion"].clone(),
        info["containerRuntimeVersion"].clone(),
    ]
}
