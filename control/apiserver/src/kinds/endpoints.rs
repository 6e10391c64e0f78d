//! core/v1 Endpoints.

use k8s_openapi::api::core::v1::Endpoints;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Endpoints", "string", 0),
    Column::new("Age", "string", 0),
];

pub fn resource() -> Resource {
    Resource {
        short_names: &["ep"],
        defaults,
        validate,
        ..common::base(
            "",
            "v1",
            "Endpoints",
            ("endpoints", "endpoints"),
            decode_as::<Endpoints>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn defaults(endpoints: &mut Value) {
    for subset in endpoints["subsets"].as_array_mut().into_iter().flatten() {
        for port in subset["ports"].as_array_mut().into_iter().flatten() {
            common::set_default(port, "protocol", json!("TCP"));
        }
    }
}

fn validate(endpoints: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(endpoints, None);
    for (i, subset) in endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (j, address) in subset["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if address["ip"]
                .as_str()
                .is_none_or(|ip| ip.parse::<std::net::IpAddr>().is_err())
            {
                causes.push(Cause::invalid(
                    format!("subsets[{i}].addresses[{j}].ip"),
                    &address["ip"],
                    "must be a valid IP address",
                ));
            }
        }
        for (j, port) in subset["ports"].as_array().into_iter().flatten().enumerate() {
            if !(1..=65535).contains(&port["port"].as_i64().unwrap_or(0)) {
                causes.push(Cause::invalid(
                    format!("subsets[{i}].ports[{j}].port"),
                    &port["port"],
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
    }
    causes
}

/// `ip:port` pairs as kubectl lists them, at most three.
fn format_endpoints(endpoints: &Value) -> String {
    let mut pairs = Vec::new();
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let addresses: Vec<&str> = subset["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["ip"].as_str())
            .collect();
        match subset["ports"].as_array().filter(|p| !p.is_empty()) {
            None => pairs.extend(addresses.iter().map(|a| a.to_string())),
            Some(ports) => {
                for port in ports {
                    for address in &addresses {
                        pairs.push(format!("{address}:{}", port["port"]));
                    }
                }
            }
        }
    }
    if pairs.is_empty() {
        "<none>".into()
    } else {
        common::join_limited(&pairs, 3, ",")
    }
}

fn cells(endpoints: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        endpoints["metadata"]["name"].clone(),
        json!(format_endpoints(endpoints)),
        table::age(endpoints, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_cell() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [
            {"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]});
        assert!(validate(&ep, None).is_empty());
        assert_eq!(
            cells(&ep, jiff::Timestamp::now())[1],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
        );
        assert_eq!(format_endpoints(&json!({})), "<none>");
        let bad = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "x"}]}]});
        assert_eq!(validate(&bad, None)[0].field, "subsets[0].addresses[0].ip");
    }
}
