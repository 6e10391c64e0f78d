//! rbac.authorization.k8s.io/v1 Role, ClusterRole, RoleBinding and
//! ClusterRoleBinding. They are stored and served; nothing enforces them
//! (the API server has no authentication yet).

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const GROUP: &str = "rbac.authorization.k8s.io";

const ROLE_COLUMNS: &[Column] = &[table::NAME, Column::new("Created At", "date", 0)];

const BINDING_COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Role", "string", 0),
    Column::new("Age", "string", 0),
    Column::new("Users", "string", 1),
    Column::new("Groups", "string", 1),
    Column::new("ServiceAccounts", "string", 1),
];

fn role_table() -> TableDef {
    TableDef {
        columns: ROLE_COLUMNS,
        cells: |role, _| vec![role["metadata"]["name"].clone(), common::created_at(role)],
    }
}

fn binding_table() -> TableDef {
    TableDef {
        columns: BINDING_COLUMNS,
        cells: binding_cells,
    }
}

pub fn role() -> Resource {
    Resource {
        validate: |role, _| validate_role(role, true),
        ..common::base(
            GROUP,
            "v1",
            "Role",
            ("roles", "role"),
            decode_as::<Role>,
            role_table(),
        )
    }
}

pub fn cluster_role() -> Resource {
    Resource {
        namespaced: false,
        validate: |role, _| validate_role(role, false),
        ..common::base(
            GROUP,
            "v1",
            "ClusterRole",
            ("clusterroles", "clusterrole"),
            decode_as::<ClusterRole>,
            role_table(),
        )
    }
}

pub fn role_binding() -> Resource {
    Resource {
        validate: |binding, old| validate_binding(binding, old, true),
        ..common::base(
            GROUP,
            "v1",
            "RoleBinding",
            ("rolebindings", "rolebinding"),
            decode_as::<RoleBinding>,
            binding_table(),
        )
    }
}

pub fn cluster_role_binding() -> Resource {
    Resource {
        namespaced: false,
        validate: |binding, old| validate_binding(binding, old, false),
        ..common::base(
            GROUP,
            "v1",
            "ClusterRoleBinding",
            ("clusterrolebindings", "clusterrolebinding"),
            decode_as::<ClusterRoleBinding>,
            binding_table(),
        )
    }
}

/// RBAC names are path segments: anything but `.`, `..`, `/` and `%`
/// (so `system:controller:x` is fine).
fn path_segment(field: &str, name: &str) -> Option<Cause> {
    let bad = name == "." || name == ".." || name.contains(['/', '%']);
    bad.then(|| {
        Cause::invalid(
            field,
            &Value::String(name.into()),
            "may not be '.' or '..' and may not contain '/' or '%'",
        )
    })
}

fn validate_role(role: &Value, namespaced: bool) -> Vec<Cause> {
    let mut causes = crate::kinds::validation::metadata(role, path_segment);
    for (i, rule) in role["rules"].as_array().into_iter().flatten().enumerate() {
        let at = format!("rules[{i}]");
        let len = |f: &str| rule[f].as_array().map_or(0, Vec::len);
        if len("verbs") == 0 {
            causes.push(Cause::required(format!("{at}.verbs")));
        }
        let urls = len("nonResourceURLs");
        if namespaced && urls > 0 {
            causes.push(Cause::invalid(
                format!("{at}.nonResourceURLs"),
                &rule["nonResourceURLs"],
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if urls > 0 && (len("resources") > 0 || len("apiGroups") > 0) {
            causes.push(Cause::invalid(
                format!("{at}.nonResourceURLs"),
                &rule["nonResourceURLs"],
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        } else if urls == 0 {
            if len("apiGroups") == 0 {
                causes.push(Cause {
                    reason: "FieldValueRequired",
                    field: format!("{at}.apiGroups"),
                    message: "Required value: resource rules must supply at least one api group"
                        .into(),
                });
            }
            if len("resources") == 0 {
                causes.push(Cause {
                    reason: "FieldValueRequired",
                    field: format!("{at}.resources"),
                    message: "Required value: resource rules must supply at least one resource"
                        .into(),
                });
            }
        }
    }
    causes
}

fn validate_binding(binding: &Value, old: Option<&Value>, namespaced: bool) -> Vec<Cause> {
    let mut causes = crate::kinds::validation::metadata(binding, path_segment);
    let role_ref = &binding["roleRef"];
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    let kind = role_ref["kind"].as_str().unwrap_or_default();
    if !kinds.contains(&kind) {
        causes.push(Cause::unsupported("roleRef.kind", kind, kinds));
    }
    let group = role_ref["apiGroup"].as_str().unwrap_or_default();
    if group != GROUP {
        causes.push(Cause::unsupported("roleRef.apiGroup", group, &[GROUP]));
    }
    if role_ref["name"].as_str().is_none_or(str::is_empty) {
        causes.push(Cause::required("roleRef.name"));
    }
    for (i, subject) in binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("subjects[{i}]");
        if subject["name"].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(format!("{at}.name")));
        }
        match subject["kind"].as_str().unwrap_or_default() {
            "ServiceAccount" => {
                if !namespaced && subject["namespace"].as_str().is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("{at}.namespace")));
                }
            }
            "User" | "Group" => {}
            other => causes.push(Cause::unsupported(
                format!("{at}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    if let Some(old) = old
        && binding["roleRef"] != old["roleRef"]
    {
        causes.push(Cause::invalid(
            "roleRef",
            &binding["roleRef"],
            "cannot change roleRef",
        ));
    }
    causes
}

fn subjects(binding: &Value, kind: &str) -> Value {
    let names: Vec<String> = binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["kind"] == kind)
        .map(|s| {
            let name = s["name"].as_str().unwrap_or_default();
            match (kind, s["namespace"].as_str()) {
                ("ServiceAccount", Some(ns)) => format!("{ns}/{name}"),
                _ => name.to_string(),
            }
        })
        .collect();
    json!(names.join(", "))
}

fn binding_cells(binding: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let role_ref = &binding["roleRef"];
    vec![
        binding["metadata"]["name"].clone(),
        json!(format!(
            "{}/{}",
            role_ref["kind"].as_str().unwrap_or_default(),
            role_ref["name"].as_str().unwrap_or_default()
        )),
        table::age(binding, now),
        subjects(binding, "User"),
        subjects(binding, "Group"),
        subjects(binding, "ServiceAccount"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_rules() {
        let role = json!({"metadata": {"name": "pod-reader"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["pods"]}]});
        let fields: Vec<String> = validate_role(&role, true)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, vec!["rules[1].nonResourceURLs", "rules[2].verbs"]);
        let fields: Vec<String> = validate_role(&role, false)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, vec!["rules[2].verbs"]);
        let system = json!({"metadata": {"name": "system:controller:x"}});
        assert!(validate_role(&system, false).is_empty());
    }

    #[test]
    fn binding_rules_and_cells() {
        let binding = json!({"metadata": {"name": "read"}, "roleRef": {"apiGroup": GROUP,
            "kind": "Role", "name": "pod-reader"}, "subjects": [
            {"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "ci", "namespace": "build"}]});
        assert!(validate_binding(&binding, None, true).is_empty());
        let fields: Vec<String> = validate_binding(&binding, None, false)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, vec!["roleRef.kind"]);
        let mut changed = binding.clone();
        changed["roleRef"]["name"] = json!("admin");
        assert_eq!(
            validate_binding(&changed, Some(&binding), true)[0].field,
            "roleRef"
        );
        let cells = binding_cells(&binding, jiff::Timestamp::now());
        assert_eq!(
            &cells[..],
            &[
                json!("read"),
                json!("Role/pod-reader"),
                cells[2].clone(),
                json!("jane"),
                json!(""),
                json!("build/ci")
            ]
        );
    }
}
