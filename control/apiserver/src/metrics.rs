//! `metrics.k8s.io/v1beta1` (what `kubectl top node|pod` reads), served the
//! way metrics-server would, but fetched on demand: each request asks the
//! nodes involved for `GET /stats/usage` (see the agent's `usage` module)
//! and answers `NodeMetrics` / `PodMetrics` built from the replies. Nothing is
//! stored; the group is read-only (`get`, `list`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::objects::Objects;
use crate::request::Query;
use crate::selectors::{FieldSelector, LabelSelector, Selectors};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

/// How long a node may take to report its usage.
const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// The `APIResourceList` of `metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    })
}

/// The `APIGroup` of `metrics.k8s.io`.
pub fn api_group() -> Value {
    let version = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [version.clone()],
        "preferredVersion": version,
    })
}

pub async fn handle(
    State(state): State<Arc<AppState>>,
    Path(rest): Path<String>,
    method: Method,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = Query::parse(raw.as_deref());
    let result = if method != Method::GET {
        Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        )))
    } else {
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            ["nodes"] => nodes(&state, None, &query).await,
            ["nodes", name] => nodes(&state, Some(name), &query).await,
            ["pods"] => pods(&state, None, None, &query).await,
            ["namespaces", ns, "pods"] => pods(&state, Some(ns), None, &query).await,
            ["namespaces", ns, "pods", name] => pods(&state, Some(ns), Some(name), &query).await,
            _ => Err(ApiError::NoRoute),
        }
    };
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => error.into_response(),
    }
}

fn selectors(resource: &crate::resources::Resource, query: &Query) -> ApiResult<Selectors> {
    Ok(Selectors {
        labels: LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?,
        fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or_default(), resource)?,
    })
}

/// A node's usage report, or `None` when it cannot be had (metrics-server
/// leaves such nodes out too).
async fn usage_of(state: &AppState, node: &Value) -> Option<Value> {
    let endpoint = crate::logs::node_endpoint(node)?;
    let request = axum::http::Request::get(format!("http://{endpoint}/stats/usage"))
        .body(Empty::<Bytes>::new())
        .ok()?;
    let fetch = async {
        let response = state.http.request(request).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        serde_json::from_slice::<Value>(&body).ok()
    };
    let report = tokio::time::timeout(NODE_TIMEOUT, fetch)
        .await
        .ok()
        .flatten();
    if report.is_none() {
        tracing::debug!(node = crate::meta::name(node), "no usage from node");
    }
    report
}

fn usage(figures: &Value) -> Value {
    let cpu = figures["cpuNanoCores"].as_u64().unwrap_or(0);
    let memory = figures["memoryBytes"].as_u64().unwrap_or(0);
    json!({"cpu": format!("{cpu}n"), "memory": format!("{}Ki", memory / 1024)})
}

fn window(report: &Value) -> String {
    let seconds = report["windowSeconds"].as_f64().unwrap_or(0.0);
    format!("{:.3}s", seconds.max(0.001))
}

fn metadata(object: &Value, timestamp: &Value) -> Value {
    let mut metadata = json!({
        "name": object["metadata"]["name"],
        "creationTimestamp": timestamp,
    });
    if let Some(ns) = object["metadata"]["namespace"].as_str() {
        metadata["namespace"] = json!(ns);
    }
    if let Some(labels) = object["metadata"]["labels"].as_object() {
        metadata["labels"] = json!(labels);
    }
    metadata
}

async fn nodes(state: &AppState, name: Option<&str>, query: &Query) -> ApiResult<Value> {
    let resource = crate::kinds::node::resource();
    let objects = Objects::new(&state.store, &resource);
    let candidates = match name {
        Some(name) => vec![objects.get(None, name).await?.0],
        None => objects.list(None, &selectors(&resource, query)?).await?.0,
    };
    let reports =
        futures::future::join_all(candidates.iter().map(|node| usage_of(state, node))).await;
    let items: Vec<Value> = candidates
        .iter()
        .zip(reports)
        .filter_map(|(node, report)| {
            let report = report?;
            Some(json!({
                "kind": "NodeMetrics",
                "apiVersion": format!("{GROUP}/{VERSION}"),
                "metadata": metadata(node, &report["timestamp"]),
                "timestamp": report["timestamp"],
                "window": window(&report),
                "usage": usage(&report["node"]),
            }))
        })
        .collect();
    match name {
        Some(name) => items.into_iter().next().ok_or_else(|| ApiError::NotFound {
            resource: "nodemetrics.metrics.k8s.io".into(),
            name: name.to_string(),
        }),
        None => Ok(json!({
            "kind": "NodeMetricsList",
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "metadata": {},
            "items": items,
        })),
    }
}

async fn pods(
    state: &AppState,
    namespace: Option<&str>,
    name: Option<&str>,
    query: &Query,
) -> ApiResult<Value> {
    let resource = crate::kinds::pod::resource();
    let objects = Objects::new(&state.store, &resource);
    let candidates = match name {
        Some(name) => vec![objects.get(namespace, name).await?.0],
        None => {
            objects
                .list(namespace, &selectors(&resource, query)?)
                .await?
                .0
        }
    };
    // One request per node that runs any of the pods.
    let mut by_node: HashMap<String, Vec<&Value>> = HashMap::new();
    for pod in &candidates {
        if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            by_node.entry(node.to_string()).or_default().push(pod);
        }
    }
    let node_resource = crate::kinds::node::resource();
    let node_objects = Objects::new(&state.store, &node_resource);
    let fetches = by_node.keys().map(|node_name| async {
        let node = node_objects.get(None, node_name).await.ok()?.0;
        Some((node_name.clone(), usage_of(state, &node).await?))
    });
    let reports: HashMap<String, Value> = futures::future::join_all(fetches)
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut items = Vec::new();
    for pod in &candidates {
        let Some(report) = pod["spec"]["nodeName"]
            .as_str()
            .and_then(|n| reports.get(n))
        else {
            continue;
        };
        let found = report["pods"].as_array().into_iter().flatten().find(|p| {
            p["namespace"] == pod["metadata"]["namespace"] && p["name"] == pod["metadata"]["name"]
        });
        let Some(found) = found else { continue };
        let containers: Vec<Value> = found["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| json!({"name": c["name"], "usage": usage(c)}))
            .collect();
        items.push(json!({
            "kind": "PodMetrics",
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "metadata": metadata(pod, &report["timestamp"]),
            "timestamp": report["timestamp"],
            "window": window(report),
            "containers": containers,
        }));
    }
    match name {
        Some(name) => items.into_iter().next().ok_or_else(|| ApiError::NotFound {
            resource: "podmetrics.metrics.k8s.io".into(),
            name: name.to_string(),
        }),
        None => Ok(json!({
            "kind": "PodMetricsList",
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "metadata": {},
            "items": items,
        })),
    }
}
