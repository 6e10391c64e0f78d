//! core/v1 PersistentVolume and PersistentVolumeClaim.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const PV_COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Capacity", "string", 0),
    Column::new("Access Modes", "string", 0),
    Column::new("Reclaim Policy", "string", 0),
    Column::new("Status", "string", 0),
    Column::new("Claim", "string", 0),
    Column::new("StorageClass", "string", 0),
    Column::new("VolumeAttributesClass", "string", 0),
    Column::new("Reason", "string", 0),
    Column::new("Age", "string", 0),
    Column::new("VolumeMode", "string", 1),
];

const PVC_COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Status", "string", 0),
    Column::new("Volume", "string", 0),
    Column::new("Capacity", "string", 0),
    Column::new("Access Modes", "string", 0),
    Column::new("StorageClass", "string", 0),
    Column::new("VolumeAttributesClass", "string", 0),
    Column::new("Age", "string", 0),
    Column::new("VolumeMode", "string", 1),
];

const ACCESS_MODES: [(&str, &str); 4] = [
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
];

/// PV spec fields that are not a volume source.
const NOT_SOURCES: [&str; 9] = [
    "accessModes",
    "capacity",
    "claimRef",
    "mountOptions",
    "nodeAffinity",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "volumeMode",
    "volumeAttributesClassName",
];

pub fn persistent_volume() -> Resource {
    Resource {
        namespaced: false,
        short_names: &["pv"],
        has_status: true,
        defaults: pv_defaults,
        validate: pv_validate,
        ..common::base(
            "",
            "v1",
            "PersistentVolume",
            ("persistentvolumes", "persistentvolume"),
            decode_as::<PersistentVolume>,
            TableDef {
                columns: PV_COLUMNS,
                cells: pv_cells,
            },
        )
    }
}

pub fn persistent_volume_claim() -> Resource {
    Resource {
        short_names: &["pvc"],
        has_status: true,
        defaults: pvc_defaults,
        validate: pvc_validate,
        ..common::base(
            "",
            "v1",
            "PersistentVolumeClaim",
            ("persistentvolumeclaims", "persistentvolumeclaim"),
            decode_as::<PersistentVolumeClaim>,
            TableDef {
                columns: PVC_COLUMNS,
                cells: pvc_cells,
            },
        )
    }
}

fn pv_defaults(pv: &mut Value) {
    set_default(
        &mut pv["spec"],
        "persistentVolumeReclaimPolicy",
        json!("Retain"),
    );
    set_default(&mut pv["spec"], "volumeMode", json!("Filesystem"));
    set_default(&mut pv["status"], "phase", json!("Pending"));
}

fn pvc_defaults(pvc: &mut Value) {
    set_default(&mut pvc["spec"], "volumeMode", json!("Filesystem"));
    set_default(&mut pvc["status"], "phase", json!("Pending"));
}

fn access_modes(spec: &Value, field: &str, causes: &mut Vec<Cause>) {
    let modes = spec["accessModes"].as_array().cloned().unwrap_or_default();
    if modes.is_empty() {
        causes.push(Cause::required(field));
    }
    let known: Vec<&str> = ACCESS_MODES.iter().map(|(m, _)| *m).collect();
    for mode in modes.iter().filter_map(Value::as_str) {
        if !known.contains(&mode) {
            causes.push(Cause::unsupported(field, mode, &known));
        }
    }
}

fn pv_validate(pv: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(pv, None);
    let spec = &pv["spec"];
    access_modes(spec, "spec.accessModes", &mut causes);
    if spec["capacity"]["storage"].is_null() {
        causes.push(Cause::required("spec.capacity"));
    }
    let sources = spec
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !NOT_SOURCES.contains(&k.as_str()))
        .count();
    if sources == 0 {
        causes.push(Cause {
            reason: "FieldValueRequired",
            field: "spec".into(),
            message: "Required value: must specify a volume type".into(),
        });
    }
    if let Some(policy) = spec["persistentVolumeReclaimPolicy"].as_str()
        && !["Retain", "Delete", "Recycle"].contains(&policy)
    {
        causes.push(Cause::unsupported(
            "spec.persistentVolumeReclaimPolicy",
            policy,
            &["Delete", "Recycle", "Retain"],
        ));
    }
    causes
}

fn pvc_validate(pvc: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(pvc, None);
    let spec = &pvc["spec"];
    access_modes(spec, "spec.accessModes", &mut causes);
    if spec["resources"]["requests"]["storage"].is_null() {
        causes.push(Cause::required("spec.resources[storage]"));
    }
    if let Some(old) = old {
        // Storage may grow, and a claim gets its volume name when bound.
        let fixed = |spec: &Value| {
            let mut spec = spec.clone();
            if let Some(map) = spec.as_object_mut() {
                map.remove("resources");
                map.remove("volumeAttributesClassName");
                if old["spec"]["volumeName"].is_null() {
                    map.remove("volumeName");
                }
            }
            spec
        };
        if fixed(&old["spec"]) != fixed(spec) {
            causes.push(Cause::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and \
                 volumeAttributesClassName for bound claims",
            ));
        }
    }
    causes
}

fn modes_cell(modes: &Value) -> Value {
    let short: Vec<&str> = modes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| ACCESS_MODES.iter().find(|(long, _)| m == *long))
        .map(|(_, short)| *short)
        .collect();
    json!(short.join(","))
}

fn phase(object: &Value) -> Value {
    if object["metadata"]["deletionTimestamp"].is_null() {
        object["status"]["phase"].clone()
    } else {
        json!("Terminating")
    }
}

fn unset(value: &Value) -> Value {
    match value.as_str().filter(|s| !s.is_empty()) {
        Some(s) => json!(s),
        None => json!("<unset>"),
    }
}

fn pv_cells(pv: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let spec = &pv["spec"];
    let claim = &spec["claimRef"];
    let claim = match (claim["namespace"].as_str(), claim["name"].as_str()) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        _ => String::new(),
    };
    vec![
        pv["metadata"]["name"].clone(),
        json!(spec["capacity"]["storage"].as_str().unwrap_or_default()),
        modes_cell(&spec["accessModes"]),
        spec["persistentVolumeReclaimPolicy"].clone(),
        phase(pv),
        json!(claim),
        json!(spec["storageClassName"].as_str().unwrap_or_default()),
        unset(&spec["volumeAttributesClassName"]),
        json!(pv["status"]["reason"].as_str().unwrap_or_default()),
        table::age(pv, now),
        unset(&spec["volumeMode"]),
    ]
}

fn pvc_cells(pvc: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let spec = &pvc["spec"];
    let status = &pvc["status"];
    let bound = spec["volumeName"].as_str().is_some_and(|v| !v.is_empty());
    let (capacity, modes) = if bound {
        (
            json!(status["capacity"]["storage"].as_str().unwrap_or_default()),
            modes_cell(&status["accessModes"]),
        )
    } else {
        (json!(""), json!(""))
    };
    vec![
        pvc["metadata"]["name"].clone(),
        phase(pvc),
        json!(spec["volumeName"].as_str().unwrap_or_default()),
        capacity,
        modes,
        json!(spec["storageClassName"].as_str().unwrap_or_default()),
        unset(&status["currentVolumeAttributesClassName"]),
        table::age(pvc, now),
        unset(&spec["volumeMode"]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_volume_rules_and_cells() {
        let mut pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "hostPath": {"path": "/data"},
            "claimRef": {"namespace": "default", "name": "data"}}});
        pv_defaults(&mut pv);
        assert!(pv_validate(&pv, None).is_empty());
        let cells = pv_cells(&pv, jiff::Timestamp::now());
        assert_eq!(cells.len(), PV_COLUMNS.len());
        assert_eq!(
            &cells[1..8],
            &[
                json!("1Gi"),
                json!("RWO,ROX"),
                json!("Retain"),
                json!("Pending"),
                json!("default/data"),
                json!(""),
                json!("<unset>")
            ]
        );
        let sourceless = json!({"metadata": {"name": "pv2"}, "spec": {}});
        let fields: Vec<String> = pv_validate(&sourceless, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, vec!["spec.accessModes", "spec.capacity", "spec"]);
    }

    #[test]
    fn claim_rules_and_cells() {
        let mut pvc = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}});
        pvc_defaults(&mut pvc);
        assert!(pvc_validate(&pvc, None).is_empty());
        let mut grown = pvc.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert!(pvc_validate(&grown, Some(&pvc)).is_empty());
        grown["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert_eq!(pvc_validate(&grown, Some(&pvc))[0].field, "spec");
        let cells = pvc_cells(&pvc, jiff::Timestamp::now());
        assert_eq!(cells.len(), PVC_COLUMNS.len());
        assert_eq!(cells[1], "Pending");
        assert_eq!(cells[8], "Filesystem");
    }
}
