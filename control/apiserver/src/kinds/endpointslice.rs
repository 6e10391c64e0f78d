//! discovery.k8s.io/v1 EndpointSlice.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("AddressType", "string", 0),
    Column::new("Ports", "string", 0),
    Column::new("Endpoints", "string", 0),
    Column::new("Age", "string", 0),
];

const ADDRESS_TYPES: [&str; 3] = ["IPv4", "IPv6", "FQDN"];

pub fn resource() -> Resource {
    Resource {
        defaults,
        validate,
        ..common::base(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            ("endpointslices", "endpointslice"),
            decode_as::<EndpointSlice>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn defaults(slice: &mut Value) {
    for port in slice["ports"].as_array_mut().into_iter().flatten() {
        set_default(port, "protocol", json!("TCP"));
    }
}

fn validate(slice: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(slice, None);
    match slice["addressType"].as_str() {
        None => causes.push(Cause::required("addressType")),
        Some(kind) if !ADDRESS_TYPES.contains(&kind) => {
            causes.push(Cause::unsupported("addressType", kind, &ADDRESS_TYPES))
        }
        _ => {}
    }
    for (i, endpoint) in slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if endpoint["addresses"]
            .as_array()
            .is_none_or(|a| a.is_empty())
        {
            causes.push(Cause::required(format!("endpoints[{i}].addresses")));
        }
    }
    if let Some(old) = old {
        causes.extend(common::immutable(
            slice,
            old,
            &["addressType"],
            "addressType",
        ));
    }
    causes
}

fn cells(slice: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let ports: Vec<String> = slice["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match p["port"].as_i64() {
            Some(n) => n.to_string(),
            None => "<unset>".into(),
        })
        .collect();
    let addresses: Vec<String> = slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    let or_unset = |items: &[String], limit| {
        if items.is_empty() {
            "<unset>".to_string()
        } else {
            common::join_limited(items, limit, ",")
        }
    };
    vec![
        slice["metadata"]["name"].clone(),
        slice["addressType"].clone(),
        json!(or_unset(&ports, usize::MAX)),
        json!(or_unset(&addresses, 3)),
        table::age(slice, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_rules_and_cells() {
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"port": 80}], "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
        assert!(validate(&slice, None).is_empty());
        let cells = cells(&slice, jiff::Timestamp::now());
        assert_eq!(
            &cells[1..4],
            &[json!("IPv4"), json!("80"), json!("10.0.0.1,10.0.0.2")]
        );
        let mut changed = slice.clone();
        changed["addressType"] = json!("IPv6");
        assert_eq!(validate(&changed, Some(&slice))[0].field, "addressType");
    }
}
