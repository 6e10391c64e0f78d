//! One request through the gateway: route, pick an endpoint, forward, and
//! answer every failure with a status and a reason (404 unknown host, 403
//! NetworkPolicy, 503 no ready endpoint, 502 backend unreachable or failing, 504 backend too slow).
//! A Service whose Deployment scales to zero holds the request instead of
//! the 503 while the Deployment starts ([`crate::scaler`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use k8s_openapi::api::core::v1::Pod;
use tokio::net::TcpStream;

use crate::cache::Caches;
use crate::config::GatewayConfig;
use crate::endpoints::{Balancer, Endpoint, affinity, ready_endpoints, service_port};
use crate::metrics::Metrics;
use crate::netpol::{self, Caller, Verdict};
use crate::pool::{Connection, Pool, Sent};
use crate::route::{self, Route};
use crate::scaler::{InFlight, Scaler, Target};
use crate::upstream::{HOP_HEADER, Resolver, Upstream};

pub type Body = BoxBody<Bytes, hyper::Error>;

/// Paths under this prefix are the gateway's own, on every host.
pub const OWN_PREFIX: &str = "/_skiff/";

/// How often a held request looks for a serving endpoint besides cache changes.
const HOLD_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// The header with which the node's Wasm runtime names the pod a request
/// comes from: `<token> <namespace>/<pod>`. Only a value with this gateway's
/// token counts (a guest or an outside client cannot know it); the header
/// never reaches a backend.
pub const CALLER_HEADER: &str = "x-skiff-caller";

/// Who is calling, as NetworkPolicy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    /// The calling pod `(namespace, name)` when the node's Wasm runtime
    /// vouched for it ([`CALLER_HEADER`]); else the pod is found by `ip`.
    pub pod: Option<(String, String)>,
}

impl Client {
    pub fn from_ip(ip: IpAddr) -> Client {
        Client { ip, pod: None }
    }
}

/// How often one request is sent again after a pooled connection turned out
/// to be closed before the request went out.
const MAX_UNSENT: usize = 3;

/// Everything a request needs, shared by all connections.
pub struct Gateway {
    pub config: GatewayConfig,
    /// The secret in [`CALLER_HEADER`] values, known to this node's runtime.
    pub caller_token: String,
    pub caches: Caches,
    pub resolver: Resolver,
    pub balancer: Balancer,
    pub metrics: Metrics,
    pub scaler: Arc<Scaler>,
    /// Keep-alive connections to backends.
    pub pool: Pool,
}

/// A response made by the gateway itself.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut body: String = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Headers that describe one connection, not the request (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

impl Gateway {
    /// Answer one request from `peer`.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(String::from)
            .or_else(|| request.uri().authority().map(|a| a.to_string()));
        let (label, response) = match host {
            _ if path.starts_with(OWN_PREFIX) => ("gateway".to_string(), self.own(&path)),
            None => (
                "none".to_string(),
                text(StatusCode::BAD_REQUEST, "the request names no host"),
            ),
            Some(host) => self.proxy(request, host.clone(), peer).await,
        };
        let status = response.status().as_u16();
        self.metrics.record(&label, status, started.elapsed());
        tracing::info!(
            target: "skiff_proxy::access",
            client = %peer.ip(),
            %method,
            path,
            route = label,
            status,
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
        Ok(response)
    }

    fn own(&self, path: &str) -> Response<Body> {
        match path {
            "/_skiff/metrics" => {
                let mut response = text(StatusCode::OK, self.metrics.render());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
            "/_skiff/healthz" => text(StatusCode::OK, "ok"),
            _ => text(StatusCode::NOT_FOUND, format!("no gateway endpoint {path}")),
        }
    }

    async fn proxy(
        &self,
        request: Request<Incoming>,
        host: String,
        peer: SocketAddr,
    ) -> (String, Response<Body>) {
        let ingresses = self.caches.ingresses.state();
        let route = match route::route(
            &host,
            request.uri().path(),
            |ns, name| self.caches.service(ns, name),
            &ingresses,
        ) {
            Ok(route) => route,
            Err(no_route) => {
                return (
                    "none".to_string(),
                    text(StatusCode::NOT_FOUND, no_route.to_string()),
                );
            }
        };
        let label = route.label.clone();
        let local_only = request.headers().contains_key(HOP_HEADER);
        let client = Client {
            ip: self.client_of(&request, peer.ip(), local_only),
            pod: self.vouched_caller(&request),
        };
        let target = self.scaler.target(&route.namespace, &route.service);
        let mut in_flight = target.as_deref().map(|t| self.scaler.start(t));
        let candidates = match self.candidates(&route, &client, local_only) {
            Ok(candidates) => candidates,
            // A gateway that forwarded here already saw a ready endpoint on
            // this node: holding is the first gateway's job.
            Err(NoCandidate::Unavailable(reason)) => {
                match (target.as_deref(), in_flight.as_mut()) {
                    (Some(target), Some(guard)) if target.policy.holds() && !local_only => {
                        match self.hold(&route, target, guard, &client).await {
                            Ok(candidates) => candidates,
                            Err(refused) => return (label, refused.response()),
                        }
                    }
                    _ => return (label, text(StatusCode::SERVICE_UNAVAILABLE, reason)),
                }
            }
            Err(refused) => return (label, refused.response()),
        };
        let response = self.forward(request, &host, peer, &route, candidates).await;
        drop(in_flight);
        (label, response)
    }

    /// The caller NetworkPolicy judges: the peer, or for a request another
    /// node's gateway forwarded (the hop header, from a node's address) the
    /// client that gateway saw, the last `X-Forwarded-For` entry.
    fn client_of(&self, request: &Request<Incoming>, peer: IpAddr, hop: bool) -> IpAddr {
        if !hop || !(peer.is_loopback() || self.resolver.is_node_address(peer)) {
            return peer;
        }
        request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|ip| ip.trim().parse().ok())
            .unwrap_or(peer)
    }

    /// The pod named by a [`CALLER_HEADER`] carrying this gateway's token.
    fn vouched_caller(&self, request: &Request<Incoming>) -> Option<(String, String)> {
        let value = request.headers().get(CALLER_HEADER)?.to_str().ok()?;
        let (token, pod) = value.split_once(' ')?;
        if token != self.caller_token || self.caller_token.is_empty() {
            return None;
        }
        let (namespace, name) = pod.trim().split_once('/')?;
        Some((namespace.to_string(), name.to_string()))
    }

    /// Hold a request for a Deployment with no ready endpoint: wake it (scale
    /// to one) and wait until an endpoint is Ready, within the policy's
    /// queue limit and timeout.
    pub(crate) async fn hold(
        &self,
        route: &Route,
        target: &Target,
        guard: &mut InFlight<'_>,
        client: &Client,
    ) -> Result<Vec<(Endpoint, Upstream)>, NoCandidate> {
        guard.hold(target).map_err(NoCandidate::Unavailable)?;
        let deadline = tokio::time::Instant::now() + target.policy.hold_timeout;
        let mut changes = self.caches.changes();
        loop {
            self.scaler.wake(target);
            match self.candidates(route, client, false) {
                Ok(candidates) => return Ok(candidates),
                Err(NoCandidate::Unavailable(_)) => {}
                Err(forbidden) => return Err(forbidden),
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() {
                    return Err(NoCandidate::Unavailable("the gateway is shutting down".into()));
                },
                // The agent's port table has no change signal: look again soon.
                _ = tokio::time::sleep(HOLD_POLL) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(NoCandidate::Unavailable(format!(
                        "Deployment {} has no ready endpoint after {:?} ({}); it is scaled up and still starting",
                        target.key(),
                        target.policy.hold_timeout,
                        crate::policy::SCALE_TO_ZERO_TIMEOUT,
                    )));
                }
            }
        }
    }

    /// The endpoints to try, in order, with how to reach each: ready, allowed
    /// by NetworkPolicy for `client`, reachable from this node.
    pub(crate) fn candidates(
        &self,
        route: &Route,
        client: &Client,
        local_only: bool,
    ) -> Result<Vec<(Endpoint, Upstream)>, NoCandidate> {
        let key = format!("{}/{}", route.namespace, route.service);
        let service = self
            .caches
            .service(&route.namespace, &route.service)
            .ok_or_else(|| NoCandidate::Unavailable(format!("Service {key} not found")))?;
        let spec = service.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") {
            let port = service_port(&service, &route.port).map_or(80, |p| p.port);
            let external = spec.external_name.unwrap_or_default();
            let endpoint = Endpoint {
                key: external.clone(),
                ip: external.clone(),
                node: None,
                pod: None,
                port: port as u16,
            };
            return Ok(vec![(
                endpoint,
                Upstream::Direct(format!("{external}:{port}")),
            )]);
        }
        let slices = self.caches.slices_of(&route.namespace, &route.service);
        let ready = ready_endpoints(&service, &route.port, &slices)
            .map_err(|e| NoCandidate::Unavailable(e.to_string()))?;
        let ready = self.admit(&key, ready, client)?;
        let ordered = self
            .balancer
            .order(&route.label, ready, client.ip, affinity(&service));
        let reachable: Vec<(Endpoint, Upstream)> = ordered
            .into_iter()
            .filter_map(|e| self.resolver.upstream(&e, local_only).map(|u| (e, u)))
            .collect();
        if reachable.is_empty() {
            return Err(NoCandidate::Unavailable(format!(
                "Service {key} has no ready endpoint that is serving"
            )));
        }
        Ok(reachable)
    }

    /// The endpoints NetworkPolicy lets `client` reach; `Forbidden` when
    /// policies select every one and none allows the call.
    fn admit(
        &self,
        service: &str,
        ready: Vec<Endpoint>,
        client: &Client,
    ) -> Result<Vec<Endpoint>, NoCandidate> {
        let policies = self.caches.policies.state();
        let governed = |e: &Endpoint| {
            e.pod.as_ref().is_some_and(|(ns, _)| {
                policies
                    .iter()
                    .any(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
            })
        };
        if !ready.iter().any(governed) {
            return Ok(ready);
        }
        let source = self.source_pod(client);
        let caller = Caller {
            ip: client.ip,
            pod: source.as_ref().map(|(pod, labels)| (&**pod, labels)),
        };
        let mut denied = std::collections::BTreeSet::new();
        let allowed: Vec<Endpoint> = ready
            .into_iter()
            .filter(|e| {
                let Some((ns, name)) = e.pod.as_ref().filter(|_| governed(e)) else {
                    return true;
                };
                // A pod not in the cache yet cannot be shown to be allowed.
                let Some(pod) = self.caches.pod(ns, name) else {
                    denied.insert(format!("(pod {ns}/{name} not known yet)"));
                    return false;
                };
                match netpol::decide(&policies, &pod, e.port, &caller) {
                    Verdict::Open | Verdict::Allowed(_) => true,
                    Verdict::Denied(names) => {
                        denied.extend(names);
                        false
                    }
                }
            })
            .collect();
        if allowed.is_empty() {
            let who = match &source {
                Some((pod, _)) => format!(
                    "pod {}/{} ({})",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    client.ip
                ),
                None => client.ip.to_string(),
            };
            let names: Vec<String> = denied.into_iter().collect();
            return Err(NoCandidate::Forbidden(format!(
                "NetworkPolicy {} allows {who} no endpoint of Service {service}",
                names.join(", ")
            )));
        }
        Ok(allowed)
    }

    /// The calling pod with its namespace's labels: the one the runtime
    /// vouched for, else the pod whose own IP is the client's (an OCI pod).
    /// Node addresses (where Wasm pods live) and loopback name no pod.
    fn source_pod(&self, client: &Client) -> Option<(Arc<Pod>, BTreeMap<String, String>)> {
        let pod = match &client.pod {
            Some((namespace, name)) => self.caches.pod(namespace, name)?,
            None => self.pod_by_ip(client.ip)?,
        };
        let labels = pod
            .metadata
            .namespace
            .as_deref()
            .and_then(|ns| self.caches.namespace(ns))
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default();
        Some((pod, labels))
    }

    /// The running pod whose own IP `ip` is.
    fn pod_by_ip(&self, ip: IpAddr) -> Option<Arc<Pod>> {
        if ip.is_loopback() {
            return None;
        }
        if self.resolver.is_node_address(ip) {
            return None;
        }
        let text = ip.to_string();
        self.caches.pods.state().into_iter().find(|p| {
            let status = p.status.as_ref();
            status.and_then(|s| s.pod_ip.as_deref()) == Some(text.as_str())
                && !matches!(
                    status.and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        })
    }

    pub(crate) async fn connect(
        &self,
        candidates: &[(Endpoint, Upstream)],
    ) -> Result<(usize, TcpStream), String> {
        self.connect_from(candidates, 0).await
    }

    /// Connect to the first candidate from `start` on that accepts.
    async fn connect_from(
        &self,
        candidates: &[(Endpoint, Upstream)],
        start: usize,
    ) -> Result<(usize, TcpStream), String> {
        let mut last = String::from("no endpoint");
        for (i, (_, upstream)) in candidates.iter().enumerate().skip(start) {
            match tokio::time::timeout(
                self.config.connect_timeout,
                TcpStream::connect(upstream.address()),
            )
            .await
            {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((i, stream));
                }
                Ok(Err(err)) => last = format!("{}: {err}", upstream.address()),
                Err(_) => last = format!("{}: connect timed out", upstream.address()),
            }
        }
        Err(last)
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
        host: &str,
        peer: SocketAddr,
        route: &Route,
        candidates: Vec<(Endpoint, Upstream)>,
    ) -> Response<Body> {
        let service = format!("{}/{}", route.namespace, route.service);
        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(HOP_HEADER);
        parts.headers.remove(CALLER_HEADER);
        if let Ok(value) = HeaderValue::from_str(host) {
            parts.headers.insert(header::HOST, value);
        }
        let forwarded_for = match parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(earlier) => format!("{earlier}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
            parts.headers.insert("x-forwarded-for", value);
        }
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
        parts.version = http::Version::HTTP_11;
        // A request without a body to an idempotent method can be sent again
        // when an endpoint drops the connection before answering (a pod that
        // stops between our connect and its accept).
        let retryable = body.is_end_stream() && (parts.method.is_idempotent());
        let template = retryable.then(|| parts.clone());
        let mut body = Some(body.boxed());
        let mut start = 0;
        // Pooled connections the backend had closed before our request went
        // out; each sends the request again on another connection.
        let mut unsent = 0;
        loop {
            // Connecting first means a refused connection (a pod that just
            // stopped) costs nothing but a try of the next endpoint.
            let (chosen, connection) = match self.connection_from(&candidates, start).await {
                Ok(connected) => connected,
                Err(last) => {
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("could not connect to any endpoint of Service {service} ({last})"),
                    );
                }
            };
            let (endpoint, upstream) = &candidates[chosen];
            let request_body = match body.take() {
                Some(body) => body,
                None => http_body_util::Empty::new().map_err(|e| match e {}).boxed(),
            };
            let mut request_parts = template.clone().unwrap_or_else(|| parts.clone());
            if let Upstream::Gateway(_) = upstream
                && let Ok(value) = HeaderValue::from_str(&self.config.node_name)
            {
                request_parts.headers.insert(HOP_HEADER, value);
            }
            let request = Request::from_parts(request_parts, request_body);
            match self.send(connection, request).await {
                Ok(response) => {
                    self.balancer.served(&route.label, peer.ip(), endpoint);
                    let (mut parts, body) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    return Response::from_parts(parts, body.boxed());
                }
                Err(SendError::NotSent(request)) if unsent < MAX_UNSENT => {
                    tracing::debug!(
                        endpoint = endpoint.key,
                        "pooled connection was closed; sending again"
                    );
                    unsent += 1;
                    body = Some(request.into_body());
                    start = chosen;
                }
                Err(SendError::NotSent(_)) => {
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "endpoint {} of Service {service} closed every connection before the request was sent",
                            endpoint.key
                        ),
                    );
                }
                Err(SendError::Timeout) => {
                    return text(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "endpoint {} of Service {service} did not answer within {:?}",
                            endpoint.key, self.config.response_timeout
                        ),
                    );
                }
                Err(SendError::Failed(err))
                    if template.is_some() && chosen + 1 < candidates.len() =>
                {
                    tracing::debug!(endpoint = endpoint.key, %err, "endpoint dropped the request; trying the next");
                    start = chosen + 1;
                }
                Err(SendError::Failed(err)) => {
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "endpoint {} of Service {service} failed: {err}",
                            endpoint.key
                        ),
                    );
                }
            }
        }
    }

    /// A connection to the first candidate from `start` on: an idle pooled
    /// one (when the gateway reuses backend connections), else a new one to
    /// the first that accepts.
    async fn connection_from(
        &self,
        candidates: &[(Endpoint, Upstream)],
        start: usize,
    ) -> Result<(usize, Connection), String> {
        if self.config.reuse_backend_connections
            && let Some((_, upstream)) = candidates.get(start)
            && let Some(connection) = self.pool.take(upstream.address())
        {
            return Ok((start, connection));
        }
        let mut from = start;
        loop {
            let (chosen, stream) = self.connect_from(candidates, from).await?;
            let address = candidates[chosen].1.address();
            match self.pool.open(address, stream).await {
                Ok(connection) => return Ok((chosen, connection)),
                Err(err) if chosen + 1 < candidates.len() => {
                    tracing::debug!(address, %err, "backend handshake failed; trying the next");
                    from = chosen + 1;
                }
                Err(err) => return Err(format!("{address}: {err}")),
            }
        }
    }

    async fn send(
        &self,
        connection: Connection,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        match tokio::time::timeout(
            self.config.response_timeout,
            self.pool.send(connection, request),
        )
        .await
        {
            Err(_) => Err(SendError::Timeout),
            Ok(Sent::Response(response)) => Ok(response),
            Ok(Sent::NotSent(request)) => Err(SendError::NotSent(Box::new(request))),
            Ok(Sent::Failed(err)) => Err(SendError::Failed(err)),
        }
    }
}

/// Why a request has no endpoint to go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoCandidate {
    /// No ready, serving endpoint (503).
    Unavailable(String),
    /// NetworkPolicy allows the caller none of the ready endpoints (403).
    Forbidden(String),
}

impl NoCandidate {
    pub fn response(&self) -> Response<Body> {
        match self {
            NoCandidate::Unavailable(reason) => {
                text(StatusCode::SERVICE_UNAVAILABLE, reason.clone())
            }
            NoCandidate::Forbidden(reason) => text(StatusCode::FORBIDDEN, reason.clone()),
        }
    }
}

impl std::fmt::Display for NoCandidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoCandidate::Unavailable(reason) | NoCandidate::Forbidden(reason) => {
                f.write_str(reason)
            }
        }
    }
}

enum SendError {
    Timeout,
    /// The connection closed before the request was written; here it is back.
    NotSent(Box<Request<Body>>),
    Failed(hyper::Error),
}
