//! core/v1 ResourceQuota and LimitRange.

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const QUOTA_COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Age", "string", 0),
    Column::new("Request", "string", 0),
    Column::new("Limit", "string", 0),
];

const LIMIT_RANGE_COLUMNS: &[Column] = &[table::NAME, Column::new("Created At", "date", 0)];

const LIMIT_TYPES: [&str; 3] = ["Pod", "Container", "PersistentVolumeClaim"];

pub fn resource_quota() -> Resource {
    Resource {
        short_names: &["quota"],
        has_status: true,
        ..common::base(
            "",
            "v1",
            "ResourceQuota",
            ("resourcequotas", "resourcequota"),
            decode_as::<ResourceQuota>,
            TableDef {
                columns: QUOTA_COLUMNS,
                cells: quota_cells,
            },
        )
    }
}

pub fn limit_range() -> Resource {
    Resource {
        short_names: &["limits"],
        validate: limit_range_validate,
        ..common::base(
            "",
            "v1",
            "LimitRange",
            ("limitranges", "limitrange"),
            decode_as::<LimitRange>,
            TableDef {
                columns: LIMIT_RANGE_COLUMNS,
                cells: |lr, _| vec![lr["metadata"]["name"].clone(), common::created_at(lr)],
            },
        )
    }
}

fn limit_range_validate(lr: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(lr, None);
    for (i, limit) in lr["spec"]["limits"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let kind = limit["type"].as_str().unwrap_or_default();
        if kind.is_empty() {
            causes.push(Cause::required(format!("spec.limits[{i}].type")));
        } else if !LIMIT_TYPES.contains(&kind) && !kind.contains('/') {
            causes.push(Cause::unsupported(
                format!("spec.limits[{i}].type"),
                kind,
                &LIMIT_TYPES,
            ));
        }
    }
    causes
}

/// REQUEST and LIMIT: `resource: used/hard` from the status the quota
/// controller keeps, limits in their own column.
fn quota_cells(quota: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let status = &quota["status"];
    let mut names: Vec<&String> = status["hard"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .collect();
    names.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for name in names {
        let used = status["used"][name.as_str()].as_str().unwrap_or("0");
        let hard = status["hard"][name.as_str()].as_str().unwrap_or_default();
        let text = format!("{name}: {used}/{hard}");
        if name.starts_with("limits") {
            limits.push(text);
        } else {
            requests.push(text);
        }
    }
    vec![
        quota["metadata"]["name"].clone(),
        table::age(quota, now),
        json!(requests.join(", ")),
        json!(limits.join(", ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_cells_split_requests_and_limits() {
        let quota = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"pods": "10", "limits.cpu": "2", "requests.memory": "1Gi"},
            "used": {"pods": "3", "limits.cpu": "500m"}}});
        let cells = quota_cells(&quota, jiff::Timestamp::now());
        assert_eq!(cells[2], "pods: 3/10, requests.memory: 0/1Gi");
        assert_eq!(cells[3], "limits.cpu: 500m/2");
    }

    #[test]
    fn limit_types() {
        let lr = json!({"metadata": {"name": "l"}, "spec": {"limits": [{"type": "Container"}, {"type": "Node"}, {}]}});
        let fields: Vec<String> = limit_range_validate(&lr, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, vec!["spec.limits[1].type", "spec.limits[2].type"]);
    }
}
