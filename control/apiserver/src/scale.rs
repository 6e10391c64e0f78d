//! The `scale` subresource of Deployments, ReplicaSets, StatefulSets and
//! ReplicationControllers: an `autoscaling/v1` Scale view of the parent's
//! replica count. `kubectl scale` GETs the parent, then PATCHes `…/scale`
//! with `{"spec":{"replicas":N}}` as a JSON merge patch.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::autoscaling::v1::Scale;
use serde_json::{Value, json};

use crate::AppState;
use crate::decode::decode_as;
use crate::error::{ApiError, ApiResult, Cause};
use crate::kinds::common;
use crate::objects::{Objects, Part, WriteOptions};
use crate::request::{Query, Target, body_value, content_type};

pub const GROUP: &str = "autoscaling";
pub const VERSION: &str = "v1";

/// The Scale of a parent: its desired and current replicas and its
/// selector as a string (what an autoscaler lists pods with), read where a
/// custom resource's definition says (`specReplicasPath`,
/// `statusReplicasPath`, `labelSelectorPath`) or, for the built-in kinds,
/// from `spec.replicas`, `status.replicas` and `spec.selector`.
fn scale_for(paths: Option<&crate::crd::ScalePaths>, parent: &Value) -> Value {
    let mut scale = builtin_scale(parent);
    if let Some(paths) = paths {
        let first = |path: &str| {
            crate::crd::jsonpath::select(parent, path)
                .first()
                .copied()
                .cloned()
        };
        scale["apiVersion"] = json!(format!("{GROUP}/{VERSION}"));
        scale["spec"]["replicas"] = json!(
            first(&paths.spec_replicas)
                .and_then(|v| v.as_i64())
                .unwrap_or(0)
        );
        scale["status"] = json!({"replicas": first(&paths.status_replicas).and_then(|v| v.as_i64()).unwrap_or(0)});
        if let Some(selector) = paths
            .label_selector
            .as_deref()
            .and_then(first)
            .and_then(|v| v.as_str().map(String::from))
        {
            scale["status"]["selector"] = json!(selector);
        }
    }
    scale
}

fn builtin_scale(parent: &Value) -> Value {
    let spec = &parent["spec"];
    let selector = if spec["selector"]["matchLabels"].is_null()
        && spec["selector"]["matchExpressions"].is_null()
    {
        common::map_selector_string(&spec["selector"])
    } else {
        common::selector_string(&spec["selector"])
    };
    let meta = &parent["metadata"];
    let mut metadata = json!({});
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if !meta[field].is_null() {
            metadata[field] = meta[field].clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": metadata,
        "spec": {"replicas": spec["replicas"].as_i64().unwrap_or(0)},
        "status": {
            "replicas": parent["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector,
        },
    })
}

/// The replica count a Scale asks for, checked like Kubernetes does.
fn wanted_replicas(scale: &Value) -> ApiResult<i64> {
    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::Invalid {
            kind: "Scale".into(),
            name: scale["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .into(),
            causes: vec![Cause::invalid(
                "spec.replicas",
                &scale["spec"]["replicas"],
                "must be greater than or equal to 0",
            )],
        });
    }
    Ok(replicas)
}

/// A write to the Scale: a whole new Scale, or a patch of the current one.
enum Write {
    Put(Value),
    Patch(skiff_patch::PatchType),
}

pub async fn handle(
    state: Arc<AppState>,
    method: Method,
    target: Target,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let objects = Objects::new(&state.store, target.resource);
    let namespace = target.namespace.as_deref();
    let name = target.name.as_deref().unwrap_or_default();
    let paths = target
        .resource
        .custom
        .as_ref()
        .and_then(|c| c.scale.as_ref());
    let scale_of = |parent: &Value| scale_for(paths, parent);
    if method == Method::GET {
        let (parent, _) = objects.get(namespace, name).await?;
        return Ok(ok(scale_of(&parent)));
    }
    let options = WriteOptions {
        subresource: Some("scale"),
        ..crate::rest::write_options(&query, &headers)?
    };
    let write = if method == Method::PATCH {
        let media = content_type(&headers);
        Write::Patch(
            skiff_patch::PatchType::from_content_type(&media).ok_or_else(|| {
                ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - accepted media types include: \
                     application/json-patch+json, application/merge-patch+json, \
                     application/strategic-merge-patch+json (got {media})"
                ))
            })?,
        )
    } else {
        Write::Put(decode_as::<Scale>(&body_value(&headers, &body)?, options.validation)?.object)
    };
    for _ in 0..crate::objects::CONTENTION_ATTEMPTS {
        let (parent, kv) = objects.get(namespace, name).await?;
        let current = scale_of(&parent);
        let wanted = match &write {
            Write::Put(scale) => scale.clone(),
            Write::Patch(patch_type) => {
                skiff_patch::apply_patch("Scale", &current, *patch_type, &body)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?
            }
        };
        if wanted["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n != name)
        {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                wanted["metadata"]["name"].as_str().unwrap_or_default()
            )));
        }
        let pinned = wanted["metadata"]["resourceVersion"]
            .as_str()
            .filter(|rv| !rv.is_empty());
        if let Some(rv) = pinned
            && rv != kv.mod_revision.to_string()
        {
            return Err(conflict(target.resource.plural, name));
        }
        let replicas = wanted_replicas(&wanted)?;
        let mut next = parent.clone();
        match paths {
            Some(paths) => {
                crate::crd::jsonpath::set(&mut next, &paths.spec_replicas, json!(replicas));
            }
            None => next["spec"]["replicas"] = json!(replicas),
        }
        match objects
            .update(namespace, name, &next, Part::Main, &options)
            .await
        {
            Ok(written) => return Ok(ok(scale_of(&written.object))),
            // A patch carries the version it read over from the current
            // Scale, so only a PUT that names one is pinned: a patch is
            // applied again to what the concurrent write left (the next
            // round refuses it if the patch itself named an older version).
            Err(ApiError::Conflict { .. }) if !put_names_version(&write) => continue,
            Err(err) => return Err(err),
        }
    }
    Err(conflict(target.resource.plural, name))
}

/// Whether the write is a PUT whose Scale names a resourceVersion.
fn put_names_version(write: &Write) -> bool {
    match write {
        Write::Put(scale) => scale["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|rv| !rv.is_empty()),
        Write::Patch(_) => false,
    }
}

fn conflict(plural: &str, name: &str) -> ApiError {
    ApiError::Conflict {
        resource: plural.into(),
        name: name.into(),
        message: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_of_reads_both_selector_shapes() {
        let deploy = json!({"metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "front"}}},
            "status": {"replicas": 2}});
        let scale = scale_for(None, &deploy);
        assert_eq!(scale["apiVersion"], "autoscaling/v1");
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(
            scale["status"],
            json!({"replicas": 2, "selector": "app=web,tier=front"})
        );
        assert_eq!(scale["metadata"]["resourceVersion"], "7");
        let rc = json!({"metadata": {"name": "old"}, "spec": {"selector": {"app": "old"}}});
        assert_eq!(scale_for(None, &rc)["status"]["selector"], "app=old");
        assert_eq!(scale_for(None, &rc)["spec"]["replicas"], 0);
    }

    #[test]
    fn negative_replicas_are_invalid() {
        let err = wanted_replicas(&json!({"metadata": {"name": "web"}, "spec": {"replicas": -1}}))
            .unwrap_err();
        assert_eq!(err.code(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.to_string().contains("spec.replicas"), "{err}");
    }
}
