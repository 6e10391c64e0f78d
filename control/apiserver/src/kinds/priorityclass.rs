//! scheduling.k8s.io/v1 PriorityClass, and the priority admission step that
//! turns a pod's `priorityClassName` into `spec.priority` and
//! `spec.preemptionPolicy`, as Kubernetes' Priority admission plugin does.

use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::{Value, json};
use skiff_store::Store;

use crate::decode::decode_as;
use crate::error::{ApiError, ApiResult, Cause};
use crate::kinds::common;
use crate::objects::from_kv;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

/// The highest value a user-made class may have; above it are the system's.
pub const HIGHEST_USER_DEFINABLE: i64 = 1_000_000_000;

/// The classes every Kubernetes cluster has, created at bootstrap.
pub const SYSTEM_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Value", "integer", 0),
    Column::new("Global-Default", "boolean", 0),
    Column::new("Age", "string", 0),
    Column::new("PreemptionPolicy", "string", 0),
];

pub fn resource() -> Resource {
    Resource {
        namespaced: false,
        short_names: &["pc"],
        defaults,
        validate,
        ..common::base(
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            ("priorityclasses", "priorityclass"),
            decode_as::<PriorityClass>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn defaults(class: &mut Value) {
    common::set_default(class, "preemptionPolicy", json!("PreemptLowerPriority"));
}

fn validate(class: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(class, None);
    let name = class["metadata"]["name"].as_str().unwrap_or_default();
    match class["value"].as_i64() {
        None => causes.push(Cause::required("value")),
        Some(value) => {
            let system = SYSTEM_CLASSES
                .iter()
                .any(|(n, v, _)| *n == name && *v == value);
            if name.starts_with("system-") && !system {
                causes.push(Cause::forbidden(
                    "metadata.name",
                    "priority class names with 'system-' prefix are reserved",
                ));
            } else if value > HIGHEST_USER_DEFINABLE && !system {
                causes.push(Cause::forbidden(
                    "value",
                    format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}"),
                ));
            }
        }
    }
    let policy = class["preemptionPolicy"]
        .as_str()
        .unwrap_or("PreemptLowerPriority");
    if !["PreemptLowerPriority", "Never"].contains(&policy) {
        causes.push(Cause::unsupported(
            "preemptionPolicy",
            policy,
            &["Never", "PreemptLowerPriority"],
        ));
    }
    if let Some(old) = old {
        causes.extend(common::immutable(class, old, &["value"], "value"));
        causes.extend(common::immutable(
            class,
            old,
            &["preemptionPolicy"],
            "preemptionPolicy",
        ));
    }
    causes
}

fn cells(class: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        class["metadata"]["name"].clone(),
        class["value"].clone(),
        json!(class["globalDefault"].as_bool().unwrap_or(false)),
        table::age(class, now),
        class["preemptionPolicy"].clone(),
    ]
}

/// The stored classes.
async fn classes(store: &Store) -> ApiResult<Vec<Value>> {
    let range = store.range(&resource().prefix(None)).await?;
    range.kvs.iter().map(from_kv).collect()
}

/// Priority admission for a new pod: the named class (or the global default
/// class when none is named) sets `spec.priority` and
/// `spec.preemptionPolicy`; a class that does not exist is Forbidden.
pub async fn admit_pod(store: &Store, pod: &mut Value) -> ApiResult<()> {
    let named = pod["spec"]["priorityClassName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(String::from);
    let found = match &named {
        Some(name) => {
            let key = resource().key(None, name);
            match store.get(&key).await? {
                Some(kv) => Some(from_kv(&kv)?),
                None => {
                    return Err(ApiError::Forbidden(format!(
                        "pods {:?} is forbidden: no PriorityClass with name {name} was found",
                        pod["metadata"]["name"].as_str().unwrap_or_default()
                    )));
                }
            }
        }
        None => {
            let mut defaults: Vec<Value> = classes(store)
                .await?
                .into_iter()
                .filter(|c| c["globalDefault"].as_bool() == Some(true))
                .collect();
            // Several defaults: the lowest value wins, as in Kubernetes.
            defaults.sort_by_key(|c| c["value"].as_i64().unwrap_or(0));
            defaults.into_iter().next()
        }
    };
    let Some(class) = found else {
        return Ok(());
    };
    let spec = &mut pod["spec"];
    if named.is_none() {
        spec["priorityClassName"] = class["metadata"]["name"].clone();
    }
    spec["priority"] = json!(class["value"].as_i64().unwrap_or(0));
    spec["preemptionPolicy"] = json!(
        class["preemptionPolicy"]
            .as_str()
            .unwrap_or("PreemptLowerPriority")
    );
    Ok(())
}

/// The system classes, as JSON objects for bootstrap.
pub fn system_classes() -> Vec<Value> {
    SYSTEM_CLASSES
        .iter()
        .map(|(name, value, description)| {
            json!({
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value, "description": description
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_names_and_policy_are_checked() {
        let class = |name: &str, value: i64| json!({"metadata": {"name": name}, "value": value});
        assert!(validate(&class("high", 1000), None).is_empty());
        assert_eq!(
            validate(&class("huge", 2_000_000_000), None)[0].field,
            "value"
        );
        assert_eq!(
            validate(&class("system-mine", 10), None)[0].field,
            "metadata.name"
        );
        assert!(validate(&class("system-node-critical", 2_000_001_000), None).is_empty());
        assert_eq!(
            validate(&json!({"metadata": {"name": "x"}}), None)[0].field,
            "value"
        );
        let mut changed = class("high", 1000);
        changed["value"] = json!(5);
        assert_eq!(
            validate(&changed, Some(&class("high", 1000)))[0].field,
            "value"
        );
        let mut bad = class("p", 1);
        bad["preemptionPolicy"] = json!("Sometimes");
        assert_eq!(validate(&bad, None)[0].field, "preemptionPolicy");
    }
}
