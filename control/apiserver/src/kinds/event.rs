//! core/v1 Event.

use k8s_openapi::api::core::v1::Event;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::validation;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    Column::new("Last Seen", "string", 0),
    Column::new("Type", "string", 0),
    Column::new("Reason", "string", 0),
    Column::new("Object", "string", 0),
    Column::new("Subobject", "string", 1),
    Column::new("Source", "string", 1),
    Column::new("Message", "string", 0),
    Column::new("First Seen", "string", 1),
    Column::new("Count", "integer", 1),
    Column::new("Name", "string", 1),
];

pub fn resource() -> Resource {
    Resource {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        has_status: false,
        subresources: &[],
        tracks_generation: false,
        field_selectors: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        decode: decode_as::<Event>,
        defaults,
        validate,
        table: TableDef {
            columns: COLUMNS,
            cells,
        },
        custom: None,
    }
}

fn defaults(event: &mut Value) {
    if event["type"].is_null() {
        event["type"] = json!("Normal");
    }
    if event["count"].is_null() {
        event["count"] = json!(1);
    }
}

fn validate(event: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = validation::metadata(event, validation::dns_subdomain);
    if event["involvedObject"]["name"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        causes.push(Cause::required("involvedObject.name"));
    }
    if let Some(kind) = event["type"].as_str()
        && kind != "Normal"
        && kind != "Warning"
    {
        causes.push(Cause::unsupported("type", kind, &["Normal", "Warning"]));
    }
    causes
}

fn seen(event: &Value, field: &str, now: jiff::Timestamp) -> Value {
    let at = [field, "eventTime", "firstTimestamp"]
        .iter()
        .find_map(|f| table::since(&event[*f], now));
    json!(
        at.map(table::human_duration)
            .unwrap_or_else(|| "<unknown>".into())
    )
}

fn cells(event: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let object = &event["involvedObject"];
    let source = &event["source"];
    let source = match (source["component"].as_str(), source["host"].as_str()) {
        (Some(c), Some(h)) => format!("{c}, {h}"),
        (Some(c), None) => c.to_string(),
        _ => event["reportingComponent"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    };
    vec![
        seen(event, "lastTimestamp", now),
        event["type"].clone(),
        event["reason"].clone(),
        json!(format!(
            "{}/{}",
            object["kind"].as_str().unwrap_or("").to_lowercase(),
            object["name"].as_str().unwrap_or("")
        )),
        object["fieldPath"].clone(),
        json!(source),
        event["message"].clone(),
        seen(event, "firstTimestamp", now),
        event["count"].clone(),
        event["metadata"]["name"].clone(),
    ]
}
