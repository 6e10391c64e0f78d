//! coordination.k8s.io/v1 Lease.

use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Holder", "string", 0),
    Column::new("Age", "string", 0),
];

pub fn resource() -> Resource {
    Resource {
        validate,
        ..common::base(
            "coordination.k8s.io",
            "v1",
            "Lease",
            ("leases", "lease"),
            decode_as::<Lease>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn validate(lease: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(lease, None);
    let spec = &lease["spec"];
    if let Some(seconds) = spec["leaseDurationSeconds"].as_i64()
        && seconds <= 0
    {
        causes.push(Cause::invalid(
            "spec.leaseDurationSeconds",
            &spec["leaseDurationSeconds"],
            "must be greater than 0",
        ));
    }
    causes.extend(crate::kinds::template::non_negative(
        &spec["leaseTransitions"],
        "spec.leaseTransitions",
    ));
    causes
}

fn cells(lease: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        lease["metadata"]["name"].clone(),
        json!(lease["spec"]["holderIdentity"].as_str().unwrap_or_default()),
        table::age(lease, now),
    ]
}
