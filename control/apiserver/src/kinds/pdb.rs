//! policy/v1 PodDisruptionBudget.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Min Available", "string", 0),
    Column::new("Max Unavailable", "string", 0),
    Column::new("Allowed Disruptions", "integer", 0),
    Column::new("Age", "string", 0),
];

pub fn resource() -> Resource {
    Resource {
        short_names: &["pdb"],
        has_status: true,
        tracks_generation: true,
        validate,
        ..common::base(
            "policy",
            "v1",
            "PodDisruptionBudget",
            ("poddisruptionbudgets", "poddisruptionbudget"),
            decode_as::<PodDisruptionBudget>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

/// An int-or-percent that must not be negative nor above 100%.
fn int_or_percent(value: &Value, field: &str) -> Option<Cause> {
    let bad = match value {
        Value::Number(n) => n.as_i64().is_some_and(|n| n < 0),
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .is_none_or(|p| !(0..=100).contains(&p)),
        _ => false,
    };
    bad.then(|| {
        Cause::invalid(
            field,
            value,
            "must be a non-negative integer or a percentage between 0% and 100%",
        )
    })
}

fn validate(pdb: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(pdb, None);
    let spec = &pdb["spec"];
    if !spec["minAvailable"].is_null() && !spec["maxUnavailable"].is_null() {
        causes.push(Cause::invalid(
            "spec",
            spec,
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    causes.extend(int_or_percent(&spec["minAvailable"], "spec.minAvailable"));
    causes.extend(int_or_percent(
        &spec["maxUnavailable"],
        "spec.maxUnavailable",
    ));
    if let Some(policy) = spec["unhealthyPodEvictionPolicy"].as_str()
        && !["IfHealthyBudget", "AlwaysAllow"].contains(&policy)
    {
        causes.push(Cause::unsupported(
            "spec.unhealthyPodEvictionPolicy",
            policy,
            &["AlwaysAllow", "IfHealthyBudget"],
        ));
    }
    causes.extend(common::validate_selector(
        &spec["selector"],
        "spec.selector",
    ));
    causes
}

fn n_a(value: &Value) -> Value {
    match value {
        Value::Null => json!("N/A"),
        Value::Number(n) => json!(n.to_string()),
        other => other.clone(),
    }
}

fn cells(pdb: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        pdb["metadata"]["name"].clone(),
        n_a(&pdb["spec"]["minAvailable"]),
        n_a(&pdb["spec"]["maxUnavailable"]),
        common::count(&pdb["status"]["disruptionsAllowed"]),
        table::age(pdb, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_rules_and_cells() {
        let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 2,
            "selector": {"matchLabels": {"app": "web"}}}});
        assert!(validate(&pdb, None).is_empty());
        assert_eq!(
            &cells(&pdb, jiff::Timestamp::now())[1..4],
            &[json!("2"), json!("N/A"), json!(0)]
        );
        let both = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": "50%",
            "maxUnavailable": "120%"}});
        let fields: Vec<String> = validate(&both, None).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, vec!["spec", "spec.maxUnavailable"]);
    }
}
