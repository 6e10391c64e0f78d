//! `/version` and API discovery (`/api`, `/apis`, resource lists), which
//! kubectl reads before anything else.

use serde_json::{Value, json};

use crate::resources::Registry;

/// The Kubernetes minor version served. The installed kubectl dispatcher
/// picks its own client version from this.
pub const KUBERNETES_MINOR: &str = "32";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0"),
        "gitCommit": "skiff",
        "gitTreeState": "clean",
        "buildDate": "2026-11-22T00:00:00Z",
        "goVersion": "skiff (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }),
    })
}

pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

/// The named groups, in registry order.
pub fn group_names(registry: &Registry) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for (group, _) in registry.groups() {
        if !names.contains(&group) {
            names.push(group);
        }
    }
    names
}

/// The versions served for `group` ("" is core), preferred first.
pub fn group_versions_of(registry: &Registry, group: &str) -> Vec<&'static str> {
    let mut versions: Vec<&'static str> = Vec::new();
    for r in registry.all().filter(|r| r.group == group) {
        if !versions.contains(&r.version) {
            versions.push(r.version);
        }
    }
    versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    versions
}

/// How Kubernetes ranks versions: GA above beta above alpha, then higher
/// major, then higher minor (`v2` > `v1` > `v2beta1` > `v1beta2` > `v1alpha1`).
pub(crate) fn version_priority(version: &str) -> (u8, u32, u32) {
    let rest = version.strip_prefix('v').unwrap_or(version);
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let major = rest[..digits].parse().unwrap_or(0);
    let suffix = &rest[digits..];
    let (stability, minor) = if suffix.is_empty() {
        (3, 0)
    } else if let Some(n) = suffix.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = suffix.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (stability, major, minor)
}

/// The `APIGroup` of one named group, or None if it is not served.
pub fn api_group(registry: &Registry, group: &str) -> Option<Value> {
    let versions: Vec<Value> = group_versions_of(registry, group)
        .into_iter()
        .map(|version| json!({"groupVersion": format!("{group}/{version}"), "version": version}))
        .collect();
    if group.is_empty() || versions.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }))
}

pub fn api_groups(registry: &Registry) -> Value {
    let groups: Vec<Value> = group_names(registry)
        .into_iter()
        .filter_map(|group| {
            let mut entry = api_group(registry, group)?;
            let object = entry.as_object_mut()?;
            object.remove("kind");
            object.remove("apiVersion");
            Some(entry)
        })
        .collect();
    let mut groups = groups;
    let mut metrics = crate::metrics::api_group();
    if let Some(object) = metrics.as_object_mut() {
        object.remove("kind");
        object.remove("apiVersion");
    }
    groups.push(metrics);
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The `APIResourceList` of one group-version, or None if nothing is served there.
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in registry
        .all()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": if crate::auth::is_review(r) { &["create"][..] } else { &VERBS[..] },
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        if r.has_status {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        for sub in r.subresources {
            let (kind, verbs): (&str, &[&str]) = match *sub {
                "log" => ("Pod", &["get"]),
                "binding" => ("Binding", &["create"]),
                "exec" => ("PodExecOptions", &["create", "get"]),
                "eviction" => ("Eviction", &["create"]),
                "scale" => ("Scale", &["get", "patch", "update"]),
                _ => continue,
            };
            let mut entry = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            // Scale lives in another group than its parent; kubectl reads
            // the group and version from the entry.
            if *sub == "scale" {
                entry["group"] = json!(crate::scale::GROUP);
                entry["version"] = json!(crate::scale::VERSION);
            }
            if *sub == "eviction" {
                entry["group"] = json!("policy");
                entry["version"] = json!("v1");
            }
            resources.push(entry);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}
