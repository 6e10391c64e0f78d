//! storage.k8s.io/v1 StorageClass.

use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Provisioner", "string", 0),
    Column::new("ReclaimPolicy", "string", 0),
    Column::new("VolumeBindingMode", "string", 0),
    Column::new("AllowVolumeExpansion", "string", 0),
    Column::new("Age", "string", 0),
];

const DEFAULT_CLASS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

pub fn resource() -> Resource {
    Resource {
        namespaced: false,
        short_names: &["sc"],
        defaults,
        validate,
        ..common::base(
            "storage.k8s.io",
            "v1",
            "StorageClass",
            ("storageclasses", "storageclass"),
            decode_as::<StorageClass>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn defaults(class: &mut Value) {
    set_default(class, "reclaimPolicy", json!("Delete"));
    set_default(class, "volumeBindingMode", json!("Immediate"));
}

fn validate(class: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(class, None);
    if class["provisioner"].as_str().is_none_or(str::is_empty) {
        causes.push(Cause::required("provisioner"));
    }
    if let Some(policy) = class["reclaimPolicy"].as_str()
        && !["Delete", "Retain"].contains(&policy)
    {
        causes.push(Cause::unsupported(
            "reclaimPolicy",
            policy,
            &["Delete", "Retain"],
        ));
    }
    if let Some(mode) = class["volumeBindingMode"].as_str()
        && !["Immediate", "WaitForFirstConsumer"].contains(&mode)
    {
        causes.push(Cause::unsupported(
            "volumeBindingMode",
            mode,
            &["Immediate", "WaitForFirstConsumer"],
        ));
    }
    if let Some(old) = old {
        for field in [
            "provisioner",
            "parameters",
            "reclaimPolicy",
            "volumeBindingMode",
        ] {
            if class[field] != old[field] {
                causes.push(Cause::forbidden(
                    field,
                    format!("updates to {field} are forbidden."),
                ));
            }
        }
    }
    causes
}

fn cells(class: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let name = class["metadata"]["name"].as_str().unwrap_or_default();
    let annotations = &class["metadata"]["annotations"];
    let is_default = DEFAULT_CLASS.iter().any(|a| annotations[*a] == "true");
    let name = if is_default {
        format!("{name} (default)")
    } else {
        name.to_string()
    };
    vec![
        json!(name),
        class["provisioner"].clone(),
        class["reclaimPolicy"].clone(),
        class["volumeBindingMode"].clone(),
        json!(
            class["allowVolumeExpansion"]
                .as_bool()
                .unwrap_or(false)
                .to_string()
        ),
        table::age(class, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_immutability_and_cells() {
        let mut class = json!({"metadata": {"name": "local",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "skiff.dev/local"});
        defaults(&mut class);
        assert!(validate(&class, None).is_empty());
        assert_eq!(
            &cells(&class, jiff::Timestamp::now())[..5],
            &[
                json!("local (default)"),
                json!("skiff.dev/local"),
                json!("Delete"),
                json!("Immediate"),
                json!("false")
            ]
        );
        let mut changed = class.clone();
        changed["provisioner"] = json!("other");
        assert_eq!(validate(&changed, Some(&class))[0].field, "provisioner");
    }
}
