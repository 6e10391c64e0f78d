//! What a REST request addresses and how it wants its answer: the path's
//! resource/namespace/name/subresource, query parameters and content types.

use std::collections::HashMap;

use axum::http::HeaderMap;

use crate::error::{ApiError, ApiResult};
use crate::resources::{Registry, Resource};

/// The object or collection a path names.
pub struct Target {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Resolve the path segments after `/api/v1/` or `/apis/<g>/<v>/`.
pub fn resolve(registry: &Registry, group: &str, version: &str, rest: &str) -> ApiResult<Target> {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let find = |plural: &str| {
        registry
            .find(group, version, plural)
            .ok_or(ApiError::NoRoute)
    };
    let target =
        |resource, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
            resource,
            namespace: namespace.map(String::from),
            name: name.map(String::from),
            subresource: sub.map(String::from),
        };
    let namespaced_here = |plural: &str| {
        registry
            .find(group, version, plural)
            .is_some_and(|r| r.namespaced)
    };
    match segments.as_slice() {
        ["namespaces", ns, plural, rest @ ..] if namespaced_here(plural) => {
            let resource = find(plural)?;
            match rest {
                [] => Ok(target(resource, Some(ns), None, None)),
                [name] => Ok(target(resource, Some(ns), Some(name), None)),
                [name, sub] => Ok(target(resource, Some(ns), Some(name), Some(sub))),
                _ => Err(ApiError::NoRoute),
            }
        }
        [plural] => Ok(target(find(plural)?, None, None, None)),
        [plural, name] => {
            let resource = find(plural)?;
            if resource.namespaced {
                return Err(ApiError::NoRoute);
            }
            Ok(target(resource, None, Some(name), None))
        }
        [plural, name, sub] => {
            let resource = find(plural)?;
            if resource.namespaced {
                return Err(ApiError::NoRoute);
            }
            Ok(target(resource, None, Some(name), Some(sub)))
        }
        _ => Err(ApiError::NoRoute),
    }
}

/// Query parameters; repeated keys keep the last value.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            ))),
        }
    }

    pub fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::BadRequest(format!("invalid value {v:?} for parameter {key}"))
                })
            })
            .transpose()
    }
}

/// The `includeObject` to use when the client asked for a Table, or None for
/// plain objects. Protobuf is never produced: JSON is always in kubectl's list.
pub fn wants_table(headers: &HeaderMap, query: &Query) -> Option<String> {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let table = accept
        .split(',')
        .any(|part| part.contains("as=Table") && part.contains("g=meta.k8s.io"));
    table.then(|| query.get("includeObject").unwrap_or("Metadata").to_string())
}

/// The media type of a request body, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Decode a create/update body: JSON, YAML or Kubernetes protobuf.
pub fn body_value(headers: &HeaderMap, body: &[u8]) -> ApiResult<serde_json::Value> {
    match content_type(headers).as_str() {
        "application/json" | "" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the request body is not valid YAML: {e}"))),
        "application/vnd.kubernetes.protobuf" => crate::proto::decode_body(body),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {other})"
        ))),
    }
}
