//! The agent's own HTTP endpoints: container logs (which the API server
//! proxies `kubectl logs` to), exec (`kubectl exec`, a WebSocket the API
//! server passes through), usage (`kubectl top`), and a health check.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use std::time::Instant;

use crate::driver::ContainerDriver;
use crate::exec::{ExecRequest, PROTOCOLS};
use crate::logs::LogBook;
use crate::metrics::{CONTENT_TYPE, NodeMetrics};
use crate::ports::PortTable;
use crate::running::RunningTable;
use crate::usage::UsageSampler;

/// What the handlers read.
#[derive(Clone)]
struct Shared {
    logs: Arc<LogBook>,
    ports: Arc<PortTable>,
    running: Arc<RunningTable>,
    driver: Option<Arc<dyn ContainerDriver>>,
    metrics: Arc<NodeMetrics>,
    sampler: Arc<UsageSampler>,
    started: Instant,
}

/// What exec, usage and metrics need: the running containers, the driver that
/// runs them, and what the pod workers count.
pub struct Workloads {
    pub running: Arc<RunningTable>,
    pub driver: Arc<dyn ContainerDriver>,
    pub metrics: Arc<NodeMetrics>,
}

/// The query of `GET /containerLogs/...`, as the API server forwards it from
/// PodLogOptions. Values are kept as text and parsed the way Go's `ParseBool` does.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    follow: Option<String>,
    tail_lines: Option<i64>,
    previous: Option<String>,
    /// Accepted and ignored: the log files carry no timestamps yet.
    #[allow(dead_code)]
    timestamps: Option<String>,
}

fn flag(value: &Option<String>) -> Result<bool, String> {
    match value.as_deref() {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(format!("invalid boolean value {other:?}")),
    }
}

pub fn router(logs: Arc<LogBook>, ports: Arc<PortTable>) -> Router {
    router_with(logs, ports, None)
}

/// [`router`] with the exec and usage endpoints, which need the workloads.
pub fn router_with(
    logs: Arc<LogBook>,
    ports: Arc<PortTable>,
    workloads: Option<Workloads>,
) -> Router {
    let (running, driver, metrics) = match workloads {
        Some(w) => (w.running, Some(w.driver), w.metrics),
        None => (Arc::default(), None, Arc::default()),
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/pods/{namespace}/{pod}/ports", get(pod_ports))
        .route("/exec/{namespace}/{pod}/{container}", get(exec))
        .route("/stats/usage", get(usage))
        .route("/metrics", get(metrics_text))
        .with_state(Shared {
            logs,
            ports,
            running,
            driver,
            metrics,
            sampler: Arc::default(),
            started: Instant::now(),
        })
}

/// `GET /metrics`: Prometheus' text format (see [`crate::metrics`]).
async fn metrics_text(State(shared): State<Shared>) -> Response {
    let body = shared
        .metrics
        .render(&shared.running, shared.driver.as_deref())
        .await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// `GET /exec/{namespace}/{pod}/{container}?command=…`: a WebSocket session
/// running the command in the container (see [`crate::exec`]).
async fn exec(
    State(shared): State<Shared>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let request = match ExecRequest::parse(query.as_deref().unwrap_or_default()) {
        Ok(request) => request,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let Some(driver) = shared.driver.clone() else {
        return text(
            StatusCode::NOT_IMPLEMENTED,
            "this node does not run exec".into(),
        );
    };
    let template = match shared.running.find(&namespace, &pod, &container) {
        Ok(template) => template,
        Err(message) => return text(StatusCode::NOT_FOUND, message),
    };
    let Ok(upgrade) = upgrade else {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "exec needs a WebSocket upgrade with one of the subprotocols {}",
                PROTOCOLS.join(", ")
            ),
        );
    };
    let offered = upgrade
        .requested_protocols()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| PROTOCOLS.contains(&p.trim()));
    if !offered {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "exec speaks the subprotocols {}; the client offered none of them",
                PROTOCOLS.join(", ")
            ),
        );
    }
    upgrade
        .protocols(PROTOCOLS)
        .on_upgrade(move |socket| crate::exec::session(socket, driver, template, request))
}

/// `GET /stats/usage`: the node's and every running pod's CPU and memory, as a
/// [`UsageReport`](crate::usage::UsageReport).
async fn usage(State(shared): State<Shared>) -> Response {
    let Some(driver) = shared.driver.clone() else {
        return text(
            StatusCode::NOT_IMPLEMENTED,
            "this node does not measure usage".into(),
        );
    };
    let report = shared
        .sampler
        .report(&shared.running, driver.as_ref(), shared.started)
        .await;
    axum::Json(report).into_response()
}

/// `GET /pods/{namespace}/{pod}/ports`: the node ports the pod's containers
/// serve on now, as a JSON list of [`PortEntry`](crate::ports::PortEntry); 404
/// when it serves none.
async fn pod_ports(
    State(shared): State<Shared>,
    Path((namespace, pod)): Path<(String, String)>,
) -> Response {
    match shared.ports.of_pod(&namespace, &pod) {
        Some(entries) => axum::Json(entries).into_response(),
        None => text(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} serves no ports on this node"),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn container_logs(
    State(Shared { logs, .. }): State<Shared>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let (follow, previous) = match (flag(&query.follow), flag(&query.previous)) {
        (Ok(follow), Ok(previous)) => (follow, previous),
        (Err(message), _) | (_, Err(message)) => return text(StatusCode::BAD_REQUEST, message),
    };
    // A negative count means "everything", as kubectl's default of -1 does.
    let tail = query.tail_lines.and_then(|n| u64::try_from(n).ok());
    let source = match logs.find(&namespace, &pod, &container, previous) {
        Ok(source) => source,
        Err(error) if error.is_not_found() => {
            return text(StatusCode::NOT_FOUND, error.to_string());
        }
        Err(error) => return text(StatusCode::BAD_REQUEST, error.to_string()),
    };
    match source.open(tail, follow).await {
        Ok(stream) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the log of container {container:?} in pod {namespace}/{pod}: {error}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Sends an HTTP/1.0 request (so the body is not chunked) and returns status line and body.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.0\r\nHost: agent\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    #[tokio::test]
    async fn serves_logs_and_health() {
        let dir = tempfile::tempdir().unwrap();
        let logs = Arc::new(LogBook::new(dir.path().join("pods")));
        logs.register_pod("ns", "p", "u1", &["app".to_string()]);
        for (restart, text) in [(0, "old\n"), (1, "a\nb\nc\n")] {
            let mut attempt = logs
                .start_attempt("ns", "p", "u1", "app", restart)
                .await
                .unwrap();
            attempt.stdout.write_all(text.as_bytes()).await.unwrap();
            drop((attempt.stdout, attempt.stderr));
            attempt.pump.run().await;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ports = Arc::new(PortTable::default());
        let pod = crate::pod::PodIdentity {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u1".into(),
        };
        let served = crate::driver::ServedPort {
            name: None,
            container_port: 8080,
            address: ([127, 0, 0, 1], 4321).into(),
        };
        ports.serving(&pod, "app", &[served]);
        let server = tokio::spawn(axum::serve(listener, router(logs, ports)).into_future());

        assert_eq!(
            get(addr, "/healthz").await,
            ("HTTP/1.0 200 OK".into(), "ok".into())
        );
        let (status, body) = get(addr, "/containerLogs/ns/p/app").await;
        assert_eq!(
            (status.as_str(), body.as_str()),
            ("HTTP/1.0 200 OK", "a\nb\nc\n")
        );
        let (_, body) = get(
            addr,
            "/containerLogs/ns/p/app?tailLines=1&follow=true&timestamps=true",
        )
        .await;
        assert_eq!(body, "c\n", "a finished attempt ends the follow");
        let (_, body) = get(addr, "/containerLogs/ns/p/app?previous=true").await;
        assert_eq!(body, "old\n");
        let (status, body) = get(addr, "/containerLogs/ns/nope/app").await;
        assert_eq!(status, "HTTP/1.0 404 Not Found");
        assert!(body.contains("ns/nope"));
        let (status, _) = get(addr, "/containerLogs/ns/p/app?follow=maybe").await;
        assert_eq!(status, "HTTP/1.0 400 Bad Request");
        let (status, body) = get(addr, "/pods/ns/p/ports").await;
        assert_eq!(status, "HTTP/1.0 200 OK");
        assert_eq!(
            body,
            r#"[{"container":"app","containerPort":8080,"hostIP":"127.0.0.1","hostPort":4321}]"#
        );
        let (status, _) = get(addr, "/pods/ns/other/ports").await;
        assert_eq!(status, "HTTP/1.0 404 Not Found");
        server.abort();
    }
}
