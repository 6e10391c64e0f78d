//! node.k8s.io/v1 RuntimeClass.

use k8s_openapi::api::node::v1::RuntimeClass;
use serde_json::Value;

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::{common, validation};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Handler", "string", 0),
    Column::new("Age", "string", 0),
];

pub fn resource() -> Resource {
    Resource {
        namespaced: false,
        validate,
        ..common::base(
            "node.k8s.io",
            "v1",
            "RuntimeClass",
            ("runtimeclasses", "runtimeclass"),
            decode_as::<RuntimeClass>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn validate(class: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(class, None);
    match class["handler"].as_str().filter(|h| !h.is_empty()) {
        None => causes.push(Cause::required("handler")),
        Some(handler) => causes.extend(validation::dns_label("handler", handler)),
    }
    if let Some(old) = old {
        causes.extend(common::immutable(class, old, &["handler"], "handler"));
    }
    causes
}

fn cells(class: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        class["metadata"]["name"].clone(),
        class["handler"].clone(),
        table::age(class, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn handler_required_and_immutable() {
        let class = json!({"metadata": {"name": "wasm"}, "handler": "wasmtime"});
        assert!(validate(&class, None).is_empty());
        let mut changed = class.clone();
        changed["handler"] = json!("runc");
        assert_eq!(validate(&changed, Some(&class))[0].field, "handler");
        assert_eq!(
            validate(&json!({"metadata": {"name": "x"}}), None)[0].field,
            "handler"
        );
    }
}
