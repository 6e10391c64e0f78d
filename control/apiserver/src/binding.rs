//! `pods/binding`: how the scheduler assigns a pod to a node.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::objects::Objects;
use crate::request::{Query, Target, body_value};

pub async fn bind(
    state: Arc<AppState>,
    target: Target,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let value = body_value(&headers, &body)?;
    let binding: k8s_openapi::api::core::v1::Binding = serde_json::from_value(value)
        .map_err(|e| ApiError::BadRequest(format!("invalid Binding: {e}")))?;
    let node = binding.target.name.unwrap_or_default();
    let pod_name = target.name.clone().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::Invalid {
            kind: "Binding".into(),
            name: pod_name,
            causes: vec![crate::error::Cause::required("target.name")],
        });
    }
    let objects = Objects::new(&state.store, target.resource);
    // Read, set the node, write if unchanged; a concurrent write to the pod
    // (its status, a label) is no reason to fail the binding, so read again
    // and retry, as Kubernetes' binding does through GuaranteedUpdate.
    const ATTEMPTS: usize = 5;
    for attempt in 0..ATTEMPTS {
        let (mut pod, kv) = match objects
            .get_for_update(target.namespace.as_deref(), &pod_name, attempt)
            .await
        {
            // A local read may not have seen the pod's create yet.
            Err(ApiError::NotFound { .. }) if attempt == 0 => continue,
            other => other?,
        };
        if !pod["metadata"]["deletionTimestamp"].is_null() {
            return Err(ApiError::Conflict {
                resource: "pods".into(),
                name: pod_name,
                message: "pod is being deleted, cannot be assigned to a host".into(),
            });
        }
        if let Some(existing) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::Conflict {
                resource: "pods/binding".into(),
                name: pod_name.clone(),
                message: format!("pod {pod_name} is already assigned to node {existing:?}"),
            });
        }
        if let Some(uid) = binding.metadata.uid.as_deref()
            && pod["metadata"]["uid"].as_str() != Some(uid)
        {
            return Err(ApiError::Conflict {
                resource: "pods".into(),
                name: pod_name.clone(),
                message: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    pod["metadata"]["uid"].as_str().unwrap_or_default()
                ),
            });
        }
        if query.dry_run()? {
            return Ok(success());
        }
        pod["spec"]["nodeName"] = json!(node);
        let condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": crate::meta::now()});
        let mut conditions: Vec<serde_json::Value> = pod["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conditions.insert(0, condition);
        pod["status"]["conditions"] = json!(conditions);
        match objects.put_if_unchanged(&kv, pod).await {
            Err(ApiError::Conflict { .. }) => continue,
            other => {
                other?;
                return Ok(success());
            }
        }
    }
    Err(ApiError::Conflict {
        resource: "pods/binding".into(),
        name: pod_name,
        message: "the pod kept changing; please try again".into(),
    })
}

fn success() -> Response {
    (
        StatusCode::CREATED,
        axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})),
    )
        .into_response()
}
