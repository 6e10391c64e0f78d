//! OpenAPI v3, as much as `kubectl apply`'s default validation needs: per
//! group-version a document whose PATCH operations name their
//! group-version-kind and accept `fieldValidation`. kubectl then leaves
//! field validation to the server (it sends `fieldValidation=Strict`).
//!
//! Full schemas (for `kubectl explain`) are not served yet.

use serde_json::{Map, Value, json};

use crate::resources::{Registry, Resource};

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A content hash for the `?hash=` of each document; kubectl caches by it.
fn hash(document: &Value) -> String {
    use sha2::{Digest, Sha512};
    let bytes = serde_json::to_vec(document).expect("JSON values always serialize");
    hex::encode(&Sha512::digest(&bytes)[..32]).to_uppercase()
}

fn group_versions(registry: &Registry) -> Vec<(&'static str, &'static str)> {
    let mut all = vec![("", "v1")];
    all.extend(registry.groups());
    all
}

pub fn index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, version) in group_versions(registry) {
        let path = group_version_path(group, version);
        let doc = document(registry, group, version);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", hash(&doc))}),
        );
    }
    json!({"paths": paths})
}

fn operation(resource: &Resource, action: &str) -> Value {
    let mut op = json!({
        "operationId": format!("{action}{}", resource.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": resource.group, "version": resource.version, "kind": resource.kind,
        },
        "parameters": [
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ],
        "responses": {"200": {"description": "OK"}},
    });
    if action == "patch" {
        // No strategic-merge-patch here: without merge-key extensions in the
        // schemas kubectl would read the wrong merge keys from us.
        op["requestBody"] = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
        }, "required": true});
    }
    op
}

/// The document of one group-version.
pub fn document(registry: &Registry, group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in registry
        .all()
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let base = format!("/{}", group_version_path(group, version));
        let item = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{base}/{}/{{name}}", r.plural)
        };
        let collection = item.trim_end_matches("/{name}").to_string();
        paths.insert(
            item,
            json!({
                "get": operation(r, "get"),
                "put": operation(r, "put"),
                "patch": operation(r, "patch"),
                "delete": operation(r, "delete"),
            }),
        );
        paths.insert(
            collection,
            json!({"get": operation(r, "list"), "post": operation(r, "post")}),
        );
        let name = if group.is_empty() {
            format!("io.k8s.api.core.{version}.{}", r.kind)
        } else {
            format!("skiff.{group}.{version}.{}", r.kind)
        };
        schemas.insert(
            name,
            json!({
                "type": "object",
                "description": format!("{} (schema details are not served yet)", r.kind),
                "x-kubernetes-group-version-kind": [{
                    "group": r.group, "version": r.version, "kind": r.kind,
                }],
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::discovery::KUBERNETES_MINOR)},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

pub fn known(registry: &Registry, path: &str) -> Option<(&'static str, &'static str)> {
    group_versions(registry)
        .into_iter()
        .find(|(g, v)| group_version_path(g, v) == path)
}
