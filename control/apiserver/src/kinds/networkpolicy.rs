//! networking.k8s.io/v1 NetworkPolicy.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Pod-Selector", "string", 0),
    Column::new("Age", "string", 0),
];

pub fn resource() -> Resource {
    Resource {
        short_names: &["netpol"],
        tracks_generation: true,
        defaults,
        validate,
        ..common::base(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            ("networkpolicies", "networkpolicy"),
            decode_as::<NetworkPolicy>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

/// A policy always governs ingress, and egress once it has egress rules.
fn defaults(policy: &mut Value) {
    let spec = &mut policy["spec"];
    if spec["policyTypes"].as_array().is_none_or(|t| t.is_empty()) {
        let mut types = vec![json!("Ingress")];
        if spec["egress"].as_array().is_some_and(|e| !e.is_empty()) {
            types.push(json!("Egress"));
        }
        spec["policyTypes"] = json!(types);
    }
    for direction in ["ingress", "egress"] {
        for rule in spec[direction].as_array_mut().into_iter().flatten() {
            for port in rule["ports"].as_array_mut().into_iter().flatten() {
                set_default(port, "protocol", json!("TCP"));
            }
        }
    }
}

fn validate(policy: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(policy, None);
    let spec = &policy["spec"];
    causes.extend(common::validate_selector(
        &spec["podSelector"],
        "spec.podSelector",
    ));
    for (i, kind) in spec["policyTypes"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let kind = kind.as_str().unwrap_or_default();
        if !["Ingress", "Egress"].contains(&kind) {
            causes.push(Cause::unsupported(
                format!("spec.policyTypes[{i}]"),
                kind,
                &["Ingress", "Egress"],
            ));
        }
    }
    causes
}

fn cells(policy: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        policy["metadata"]["name"].clone(),
        common::selector_cell(common::selector_string(&policy["spec"]["podSelector"])),
        table::age(policy, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_types_default_and_cells() {
        let mut policy = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {},
            "egress": [{"ports": [{"port": 53}]}]}});
        defaults(&mut policy);
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(policy["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        assert!(validate(&policy, None).is_empty());
        assert_eq!(cells(&policy, jiff::Timestamp::now())[1], "<none>");
    }
}
