//! `pods/exec`: kubectl's WebSocket upgrade (`v5.channel.k8s.io`, or
//! `v4.channel.k8s.io`) is checked here (pod, container, node) and then passed
//! through to the pod's node, which speaks the channel protocol; after the
//! node's `101 Switching Protocols` the two connections are spliced, as the
//! Kubernetes API server's upgrade-aware proxy does with a kubelet.
//!
//! Only WebSocket is served: kubectl's SPDY fallback gets a `Status` that
//! says so.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::logs::{pick_container, pod_node};
use crate::objects::Objects;
use crate::request::Query;

/// Request headers the node needs to accept the upgrade.
const FORWARDED: [HeaderName; 4] = [
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
];

/// Response headers the client needs from the node's 101.
const RETURNED: [HeaderName; 4] = [
    header::UPGRADE,
    header::CONNECTION,
    header::SEC_WEBSOCKET_ACCEPT,
    header::SEC_WEBSOCKET_PROTOCOL,
];

pub async fn handle(
    State(state): State<Arc<AppState>>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    request: Request,
) -> Response {
    match exec(state, namespace, name, raw.unwrap_or_default(), request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

async fn exec(
    state: Arc<AppState>,
    namespace: String,
    name: String,
    raw_query: String,
    mut request: Request,
) -> ApiResult<Response> {
    if request.method() != Method::GET && request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({})",
            request.method()
        )));
    }
    let pods = crate::kinds::pod::resource();
    let (pod, _) = Objects::new(&state.store, &pods)
        .get(Some(&namespace), &name)
        .await?;
    let query = Query::parse(Some(&raw_query));
    let container = pick_container(&pod, query.get("container"))?;
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(ApiError::BadRequest(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    if !is_websocket(request.headers()) {
        return Err(ApiError::BadRequest(
            "exec is served over WebSocket only (subprotocol v5.channel.k8s.io or v4.channel.k8s.io); SPDY is not supported".into(),
        ));
    }
    let (node_name, endpoint) = pod_node(&state, &pod).await?;
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::ServiceUnavailable(format!(
            "cannot reach node {node_name:?} at {endpoint}: {e}"
        ))
    };
    let uri = format!("/exec/{namespace}/{name}/{container}?{raw_query}");
    let mut forwarded = axum::http::Request::get(&uri)
        .header(header::HOST, &endpoint)
        .header(header::CONNECTION, "Upgrade");
    for name in &FORWARDED {
        if let Some(value) = request.headers().get(name) {
            forwarded = forwarded.header(name, value);
        }
    }
    let forwarded = forwarded
        .body(Empty::<Bytes>::new())
        .map_err(ApiError::internal)?;
    let stream = tokio::net::TcpStream::connect(&endpoint)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "exec connection to the node ended");
        }
    });
    let mut response = sender
        .send_request(forwarded)
        .await
        .map_err(|e| unreachable(&e))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = String::from_utf8_lossy(&body).trim().to_string();
        return Err(match status {
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => ApiError::BadRequest(message),
            _ => ApiError::Internal(format!("node {node_name:?} refused exec: {message}")),
        });
    }
    let from_client = hyper::upgrade::on(&mut request);
    let from_node = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (client, node) = match tokio::join!(from_client, from_node) {
            (Ok(client), Ok(node)) => (client, node),
            (Err(error), _) | (_, Err(error)) => {
                tracing::debug!(%error, "exec upgrade failed");
                return;
            }
        };
        let (mut client, mut node) = (TokioIo::new(client), TokioIo::new(node));
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut node).await {
            tracing::debug!(%error, "exec stream ended");
        }
    });
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for name in &RETURNED {
        if let Some(value) = response.headers().get(name) {
            out.headers_mut().insert(name, value.clone());
        }
    }
    Ok(out)
}
