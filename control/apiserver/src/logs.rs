//! `pods/log`: found on the pod's node and streamed through, as the
//! Kubernetes API server proxies to the kubelet.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::objects::Objects;
use crate::request::{Query, Target};

/// The query parameters passed on to the node.
const FORWARDED: [&str; 6] = [
    "follow",
    "tailLines",
    "previous",
    "timestamps",
    "limitBytes",
    "sinceSeconds",
];

pub(crate) fn pick_container(pod: &Value, requested: Option<&str>) -> ApiResult<String> {
    let name = crate::meta::name(pod);
    let names: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| pod["spec"][*l].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::BadRequest(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            let main: Vec<&str> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            match main.as_slice() {
                [only] => Ok(only.to_string()),
                _ => Err(ApiError::BadRequest(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                ))),
            }
        }
    }
}

/// Where a node's agent serves its HTTP endpoints.
pub(crate) fn node_endpoint(node: &Value) -> Option<String> {
    let address = node["status"]["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .or_else(|| node["status"]["addresses"].as_array()?.first())?["address"]
        .as_str()?
        .to_string();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_i64()?;
    if address.contains(':') {
        Some(format!("[{address}]:{port}"))
    } else {
        Some(format!("{address}:{port}"))
    }
}

/// The name of the pod's node and where its agent serves.
pub(crate) async fn pod_node(state: &AppState, pod: &Value) -> ApiResult<(String, String)> {
    let name = crate::meta::name(pod);
    let node_name = pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?;
    let nodes = crate::kinds::node::resource();
    let (node, _) = Objects::new(&state.store, &nodes)
        .get(None, node_name)
        .await?;
    let endpoint = node_endpoint(&node).ok_or_else(|| {
        ApiError::ServiceUnavailable(format!(
            "node {node_name:?} does not report an endpoint for its agent"
        ))
    })?;
    Ok((node_name.to_string(), endpoint))
}

pub async fn logs(state: Arc<AppState>, target: Target, query: Query) -> ApiResult<Response> {
    let objects = Objects::new(&state.store, target.resource);
    let namespace = target.namespace.as_deref().unwrap_or("default");
    let name = target.name.as_deref().unwrap_or_default();
    let (pod, _) = objects.get(Some(namespace), name).await?;
    let container = pick_container(&pod, query.get("container"))?;
    let (node_name, endpoint) = pod_node(&state, &pod).await?;
    let mut uri = format!("http://{endpoint}/containerLogs/{namespace}/{name}/{container}");
    let forwarded: Vec<String> = FORWARDED
        .iter()
        .filter_map(|k| query.get(k).map(|v| format!("{k}={}", urlencode(v))))
        .collect();
    if !forwarded.is_empty() {
        uri.push('?');
        uri.push_str(&forwarded.join("&"));
    }
    let request = axum::http::Request::get(&uri)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(ApiError::internal)?;
    let response = state.http.request(request).await.map_err(|e| {
        ApiError::ServiceUnavailable(format!(
            "cannot reach node {node_name:?} at {endpoint}: {e}"
        ))
    })?;
    let status = response.status();
    if !status.is_success() {
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = String::from_utf8_lossy(&body).trim().to_string();
        return Err(if status == StatusCode::NOT_FOUND {
            ApiError::BadRequest(message)
        } else {
            ApiError::Internal(message)
        });
    }
    let mut out = Response::new(Body::new(response.into_body()));
    out.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    Ok(out)
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
