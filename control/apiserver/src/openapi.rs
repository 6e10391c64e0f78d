//! OpenAPI v3: an index at `/openapi/v3` and one document per group-version
//! with the REST paths of its resources and the component schemas of its
//! kinds ([`crate::schemas`]), enough for `kubectl explain` and for
//! `kubectl apply`'s default validation.
//!
//! The PATCH operations name their group-version-kind and accept
//! `fieldValidation`, so kubectl sends `fieldValidation=Strict` and leaves
//! validation to the server. They do not offer strategic merge patch: the
//! schemas carry no `x-kubernetes-patch-merge-key` extensions, and kubectl
//! would read (missing) merge keys from them instead of its compiled-in ones.
//!
//! Documents are computed once per registry snapshot (a CRD change makes a
//! new one); `?hash=` is a digest of the served bytes, so
//! it is stable for a given build.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::resources::{Registry, Resource};
use crate::schemas;

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A content hash for the `?hash=` of each document; kubectl caches by it.
fn hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha512};
    hex::encode(&Sha512::digest(bytes)[..32]).to_uppercase()
}

fn group_versions(registry: &Registry) -> Vec<(&'static str, &'static str)> {
    let mut all = vec![("", "v1")];
    all.extend(registry.groups());
    all
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_content(schema: &Value) -> Value {
    json!({"application/json": {"schema": schema}, "application/yaml": {"schema": schema}})
}

fn parameter(name: &str, kind: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": kind, "uniqueItems": true}})
}

fn operation(resource: &Resource, action: &str, schema: &Value) -> Value {
    let mut parameters = vec![parameter("pretty", "string")];
    let writes = matches!(action, "post" | "put" | "patch");
    if writes || action == "delete" {
        parameters.push(parameter("dryRun", "string"));
    }
    if writes {
        parameters.push(parameter("fieldManager", "string"));
        parameters.push(parameter("fieldValidation", "string"));
    }
    if action == "list" {
        for name in [
            "labelSelector",
            "fieldSelector",
            "continue",
            "resourceVersion",
        ] {
            parameters.push(parameter(name, "string"));
        }
        parameters.push(parameter("limit", "integer"));
        parameters.push(parameter("timeoutSeconds", "integer"));
        parameters.push(parameter("watch", "boolean"));
        parameters.push(parameter("allowWatchBookmarks", "boolean"));
    }
    if action == "patch" {
        parameters.push(parameter("force", "boolean"));
    }
    let mut op = json!({
        "operationId": format!("{action}{}", resource.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": resource.group, "version": resource.version, "kind": resource.kind,
        },
        "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": json_content(schema)}},
    });
    match action {
        "post" | "put" => {
            op["requestBody"] = json!({"content": json_content(schema), "required": true});
        }
        "patch" => {
            // No strategic-merge-patch here (see the module doc).
            let any = json!({"type": "object"});
            op["requestBody"] = json!({"content": {
                "application/json-patch+json": {"schema": any},
                "application/merge-patch+json": {"schema": any},
            }, "required": true});
        }
        _ => {}
    }
    op
}

/// The document of one group-version.
pub fn document(registry: &Registry, group: &str, version: &str) -> Value {
    let resources: Vec<&Resource> = registry
        .all()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    let components = schemas::components(resources.iter().copied());
    let mut paths = Map::new();
    for (r, name) in resources.iter().zip(&components.names) {
        let schema = schema_ref(name);
        let base = format!("/{}", group_version_path(group, version));
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let list_schema = json!({"type": "object", "properties": {
            "items": {"type": "array", "items": schema},
        }});
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": operation(r, "get", &schema),
                "put": operation(r, "put", &schema),
                "patch": operation(r, "patch", &schema),
                "delete": operation(r, "delete", &schema),
            }),
        );
        paths.insert(
            collection,
            json!({"get": operation(r, "list", &list_schema), "post": operation(r, "post", &schema)}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::discovery::KUBERNETES_MINOR)},
        "paths": paths,
        "components": {"schemas": components.schemas},
    })
}

/// Every served document, serialized once, with its hash.
pub(crate) struct Documents {
    index: Bytes,
    /// By path below `/openapi/v3/` (`api/v1`, `apis/apps/v1`).
    documents: BTreeMap<String, (Bytes, String)>,
}

fn build(registry: &Registry) -> Documents {
    let mut documents = BTreeMap::new();
    let mut paths = Map::new();
    for (group, version) in group_versions(registry) {
        let path = group_version_path(group, version);
        let bytes = serde_json::to_vec(&document(registry, group, version))
            .expect("JSON values always serialize");
        let digest = hash(&bytes);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={digest}")}),
        );
        documents.insert(path, (Bytes::from(bytes), digest));
    }
    let index = serde_json::to_vec(&json!({"paths": paths})).expect("JSON values always serialize");
    Documents {
        index: Bytes::from(index),
        documents,
    }
}

fn json_response(body: Bytes, cache_control: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    response
}

/// `GET /openapi/v3`.
pub fn index_response(registry: &Registry) -> Response {
    let documents = registry.openapi.get_or_init(|| build(registry));
    json_response(documents.index.clone(), "no-cache, private")
}

/// `GET /openapi/v3/<path>[?hash=…]`, or None if no document lives there. A
/// matching hash may be cached forever: the content cannot change under it.
pub fn document_response(
    registry: &Registry,
    path: &str,
    requested_hash: Option<&str>,
) -> Option<Response> {
    let documents = registry.openapi.get_or_init(|| build(registry));
    let (bytes, digest) = documents.documents.get(path)?;
    let cache = if requested_hash == Some(digest.as_str()) {
        "public, immutable, max-age=31536000"
    } else {
        "no-cache, private"
    };
    Some(json_response(bytes.clone(), cache))
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;
