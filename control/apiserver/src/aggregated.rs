//! Aggregated discovery (`apidiscovery.k8s.io/v2`, and `v2beta1` for older
//! clients): every resource of `/api` or of `/apis` in one document, so
//! kubectl needs two discovery requests instead of one per group-version.
//!
//! The documents are built from the legacy `APIResourceList`s
//! ([`crate::discovery::resource_list`]) rather than from the registry
//! directly, so a subresource listed there (`status`, `scale`, `log`, …)
//! appears here with the same kind and verbs without a second table.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::discovery;
use crate::resources::Registry;

/// The discovery document a client asked for with its `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `APIVersions` / `APIGroupList`.
    Legacy,
    /// `APIGroupDiscoveryList` in this `apidiscovery.k8s.io` version.
    Aggregated(&'static str),
}

const AGGREGATED_VERSIONS: [&str; 2] = ["v2", "v2beta1"];

/// Pick the first media range of `Accept` that we can serve as JSON, in the
/// client's order (kubectl lists v2, then v2beta1, then plain JSON).
pub fn negotiate(headers: &HeaderMap) -> Flavor {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        if !matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
            continue;
        }
        let (mut group, mut version, mut kind) = (None, None, None);
        for param in parts {
            match param.split_once('=') {
                Some(("g", g)) => group = Some(g),
                Some(("v", v)) => version = Some(v),
                Some(("as", a)) => kind = Some(a),
                _ => {}
            }
        }
        match (group, version, kind) {
            (None, None, None) => return Flavor::Legacy,
            (Some("apidiscovery.k8s.io"), Some(v), Some("APIGroupDiscoveryList")) => {
                if let Some(v) = AGGREGATED_VERSIONS.iter().find(|known| **known == v) {
                    return Flavor::Aggregated(v);
                }
            }
            _ => {}
        }
    }
    Flavor::Legacy
}

/// Which half of the API a discovery document covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `/api`: the core group.
    Core,
    /// `/apis`: every named group.
    Groups,
}

/// The `APIGroupDiscoveryList` of `/api` or `/apis` in discovery `version`.
pub fn document(registry: &Registry, root: Root, version: &str) -> Value {
    let groups: Vec<&str> = match root {
        Root::Core => vec![""],
        Root::Groups => discovery::group_names(registry),
    };
    let mut items: Vec<Value> = groups
        .into_iter()
        .map(|group| group_discovery(registry, group))
        .collect();
    if matches!(root, Root::Groups) {
        // Served by the metrics module, not the registry (nothing is stored).
        let (group, version) = (crate::metrics::GROUP, crate::metrics::VERSION);
        items.push(json!({"metadata": {"name": group}, "versions": [{
            "version": version,
            "resources": resources(group, version, &crate::metrics::resource_list()),
            "freshness": "Current",
        }]}));
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// One `APIGroupDiscovery`: the group's versions, preferred first.
fn group_discovery(registry: &Registry, group: &str) -> Value {
    let versions: Vec<Value> = discovery::group_versions_of(registry, group)
        .into_iter()
        .filter_map(|version| {
            let list = discovery::resource_list(registry, group, version)?;
            Some(json!({
                "version": version,
                "resources": resources(group, version, &list),
                "freshness": "Current",
            }))
        })
        .collect();
    json!({"metadata": {"name": group}, "versions": versions})
}

/// Fold a legacy resource list into aggregated resources, each with its
/// `name/sub` entries as subresources.
fn resources(group: &str, version: &str, list: &Value) -> Vec<Value> {
    let entries = list["resources"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let response_kind = |entry: &Value| {
        json!({
            "group": entry["group"].as_str().unwrap_or(group),
            "version": entry["version"].as_str().unwrap_or(version),
            "kind": entry["kind"],
        })
    };
    let mut out: Vec<Value> = Vec::new();
    for entry in entries {
        let name = entry["name"].as_str().unwrap_or_default();
        match name.split_once('/') {
            None => {
                let scope = if entry["namespaced"].as_bool().unwrap_or(false) {
                    "Namespaced"
                } else {
                    "Cluster"
                };
                let mut resource = Map::new();
                resource.insert("resource".into(), json!(name));
                resource.insert("responseKind".into(), response_kind(entry));
                resource.insert("scope".into(), json!(scope));
                resource.insert("singularResource".into(), entry["singularName"].clone());
                resource.insert("verbs".into(), entry["verbs"].clone());
                for (from, to) in [("shortNames", "shortNames"), ("categories", "categories")] {
                    if let Some(values) = entry.get(from) {
                        resource.insert(to.into(), values.clone());
                    }
                }
                out.push(Value::Object(resource));
            }
            Some((parent, sub)) => {
                let subresource = json!({
                    "subresource": sub,
                    "responseKind": response_kind(entry),
                    "verbs": entry["verbs"],
                });
                // Legacy lists put subresources after their parent; a
                // subresource without a parent entry is dropped, as it
                // could not be addressed anyway.
                if let Some(owner) = out.iter_mut().find(|r| r["resource"] == parent) {
                    match owner.get_mut("subresources").and_then(Value::as_array_mut) {
                        Some(subs) => subs.push(subresource),
                        None => owner["subresources"] = json!([subresource]),
                    }
                }
            }
        }
    }
    out
}

/// The serialized documents, computed once per registry snapshot: discovery
/// is read on every kubectl invocation whose cache is cold.
pub(crate) struct Cached {
    legacy_core: Bytes,
    legacy_groups: Bytes,
    /// Indexed like [`AGGREGATED_VERSIONS`].
    core: Vec<Bytes>,
    groups: Vec<Bytes>,
}

fn bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("JSON values always serialize"))
}

fn cache(registry: &Registry) -> Cached {
    let per_version = |root| {
        AGGREGATED_VERSIONS
            .iter()
            .map(|v| bytes(&document(registry, root, v)))
            .collect()
    };
    Cached {
        legacy_core: bytes(&discovery::api_versions()),
        legacy_groups: bytes(&discovery::api_groups(registry)),
        core: per_version(Root::Core),
        groups: per_version(Root::Groups),
    }
}

/// Answer `GET /api` or `GET /apis` in the flavor the client asked for.
pub fn respond(registry: &Registry, root: Root, headers: &HeaderMap) -> Response {
    let cached = registry.discovery.get_or_init(|| cache(registry));
    let (body, content_type) = match negotiate(headers) {
        Flavor::Legacy => {
            let body = match root {
                Root::Core => &cached.legacy_core,
                Root::Groups => &cached.legacy_groups,
            };
            (body.clone(), "application/json".to_string())
        }
        Flavor::Aggregated(version) => {
            let index = AGGREGATED_VERSIONS
                .iter()
                .position(|v| *v == version)
                .expect("negotiate only returns known versions");
            let body = match root {
                Root::Core => &cached.core[index],
                Root::Groups => &cached.groups[index],
            };
            (
                body.clone(),
                format!(
                    "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
                ),
            )
        }
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).expect("media types are ASCII"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

#[cfg(test)]
#[path = "aggregated_tests.rs"]
mod tests;
