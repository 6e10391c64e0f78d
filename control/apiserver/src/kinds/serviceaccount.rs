//! core/v1 ServiceAccount.

use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::kinds::common;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Secrets", "string", 0),
    Column::new("Age", "string", 0),
];

pub fn resource() -> Resource {
    Resource {
        short_names: &["sa"],
        ..common::base(
            "",
            "v1",
            "ServiceAccount",
            ("serviceaccounts", "serviceaccount"),
            decode_as::<ServiceAccount>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn cells(sa: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        sa["metadata"]["name"].clone(),
        json!(sa["secrets"].as_array().map_or(0, Vec::len)),
        table::age(sa, now),
    ]
}
