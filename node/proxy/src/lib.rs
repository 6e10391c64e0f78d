//! skiff-proxy: the node gateway.
//!
//! Every node runs one. It listens for HTTP/1.1 and HTTP/2 (cleartext, h2c)
//! and routes each request by its Host header and path:
//!
//! - a Service host name (`<svc>.<ns>.svc.cluster.local`, `<svc>.<ns>.svc`,
//!   `<svc>.<ns>`, with or without `:port`) goes to that Service's port;
//! - otherwise Ingress rules (`networking.k8s.io/v1`, class `skiff` or none)
//!   pick a Service port by host (exact or `*.` wildcard) and path;
//! - then one of the Service's ready endpoints (EndpointSlices) gets it, round
//!   robin or by client IP (`sessionAffinity: ClientIP`): a local Wasm pod at
//!   the node port the agent serves it on ([`LocalPorts`]), an OCI pod at its
//!   IP, a Wasm pod on another node through that node's gateway.
//!
//! Deployments annotated `skiff.dev/scale-to-zero-after` are scaled to zero
//! when idle and woken by their first request, which the gateway holds until
//! an endpoint is Ready; `skiff.dev/target-concurrency` scales them on
//! in-flight requests per pod ([`policy`], [`scaler`]).
//!
//! The same port speaks TLS to clients that start a handshake, with the
//! certificate of the Ingress `spec.tls` entry for the SNI name ([`tls`]).
//!
//! NodePort Services get a raw TCP listener per port ([`nodeport`]). The
//! gateway's own endpoints live under `/_skiff/` on every host:
//! `/_skiff/metrics` (Prometheus text) and `/_skiff/healthz`.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use skiff_proxy::{GatewayConfig, LocalPorts};
//!
//! struct NoLocalPods;
//! impl LocalPorts for NoLocalPods {
//!     fn served(&self, _: &str, _: &str, _: u16) -> Option<SocketAddr> { None }
//! }
//!
//! # async fn demo(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
//! let config = GatewayConfig { node_name: "node-1".into(), ..GatewayConfig::default() };
//! config.validate()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let cancel = tokio_util::sync::CancellationToken::new();
//! skiff_proxy::run(config, client, std::sync::Arc::new(NoLocalPods), listener, cancel).await?;
//! # Ok(()) }
//! ```

pub mod cache;
pub mod config;
pub mod dns;
pub mod endpoints;
pub mod gateway;
pub mod metrics;
pub mod netpol;
pub mod nodeport;
pub mod podnet;
pub mod policy;
pub mod pool;
mod publish;
pub mod route;
pub mod scaler;
pub mod tls;
pub mod upstream;

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{ConfigError, GatewayConfig, LocalPorts};
pub use gateway::Gateway;
pub use upstream::GATEWAY_ANNOTATION;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid gateway configuration")]
    Config(#[from] ConfigError),
    #[error("setting up TLS")]
    Tls(#[source] tokio_rustls::rustls::Error),
    #[error("reading the gateway's listen address")]
    Listener(#[source] std::io::Error),
}

/// How long a new connection may take to send its first byte, and a TLS
/// client its handshake.
const FIRST_BYTE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long open connections get to finish after `cancel` fires.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Serve the gateway on `listener` until `cancel` fires.
pub async fn run(
    config: GatewayConfig,
    client: kube::Client,
    local: Arc<dyn LocalPorts>,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<(), GatewayError> {
    start(config, client, local, listener, cancel)?.wait().await;
    Ok(())
}

/// A gateway serving in the background, started by [`start`].
pub struct Running {
    services: Services,
    pod_networks: Arc<podnet::PodNetworks>,
    tasks: TaskTracker,
}

impl Running {
    /// What the node's Wasm runtime needs to send guests' requests for
    /// Service names here.
    pub fn services(&self) -> Services {
        self.services.clone()
    }

    /// Where the node's OCI driver reports pods' network namespaces, to
    /// get Service names and cluster IPs served inside them ([`podnet`]).
    pub fn pod_networks(&self) -> Arc<podnet::PodNetworks> {
        Arc::clone(&self.pod_networks)
    }

    /// Wait until the gateway has stopped (its `cancel` fired) and its
    /// connections have drained.
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The cluster's Services as this gateway sees them, and how to reach it:
/// for the node's Wasm runtime, which sends a guest's request for a Service
/// name to the gateway instead of resolving the name.
#[derive(Clone)]
pub struct Services {
    caches: cache::Caches,
    address: std::net::SocketAddr,
    caller_token: String,
}

impl Services {
    /// Whether Service `namespace/name` exists (in the gateway's cache).
    pub fn exists(&self, namespace: &str, name: &str) -> bool {
        self.caches.service(namespace, name).is_some()
    }

    /// Where to connect to the gateway from this host.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// The start of a [`gateway::CALLER_HEADER`] value this gateway trusts
    /// (its secret and a space); the caller's `<namespace>/<pod>` follows.
    pub fn caller_prefix(&self) -> String {
        format!("{} ", self.caller_token)
    }
}

/// Start the gateway on `listener`: it serves in background tasks until
/// `cancel` fires. Call from within a tokio runtime.
pub fn start(
    config: GatewayConfig,
    client: kube::Client,
    local: Arc<dyn LocalPorts>,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<Running, GatewayError> {
    config.validate()?;
    let address = listener.local_addr().map_err(GatewayError::Listener)?;
    let tasks = TaskTracker::new();
    let caches = cache::Caches::start(&client, &tasks, &cancel);
    let scaler = Arc::new(scaler::Scaler::new(client.clone(), caches.clone()));
    tasks.spawn(Arc::clone(&scaler).run(cancel.clone()));
    let caller_token = uuid::Uuid::new_v4().simple().to_string();
    let tls = tls::server_config(caches.clone())
        .map(tokio_rustls::TlsAcceptor::from)
        .map_err(GatewayError::Tls)?;
    let gateway = Arc::new(Gateway {
        resolver: upstream::Resolver {
            node_name: config.node_name.clone(),
            caches: caches.clone(),
            local,
        },
        caches: caches.clone(),
        balancer: endpoints::Balancer::default(),
        metrics: metrics::Metrics::default(),
        config: config.clone(),
        scaler,
        caller_token: caller_token.clone(),
        pool: pool::Pool::keeping(config.reuse_backend_connections),
    });
    tasks.spawn(publish::run(
        client,
        caches.clone(),
        config.node_name.clone(),
        address.to_string(),
        cancel.clone(),
    ));
    tasks.spawn(nodeport::run(
        Arc::clone(&gateway),
        tasks.clone(),
        cancel.clone(),
    ));
    tracing::info!(%address, "gateway listening");
    let pod_networks = Arc::new(podnet::PodNetworks::new(
        Arc::clone(&gateway),
        tasks.clone(),
        cancel.clone(),
    ));
    tasks.spawn(serve(gateway, listener, tls, cancel));
    // A gateway on every address is reached locally over loopback.
    let reach = if address.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if address.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        std::net::SocketAddr::new(loopback, address.port())
    } else {
        address
    };
    Ok(Running {
        services: Services {
            caches,
            address: reach,
            caller_token,
        },
        pod_networks,
        tasks,
    })
}

/// Accept connections until `cancel` fires, then let open ones finish.
async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    cancel: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "gateway accept failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let gateway = Arc::clone(&gateway);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| Arc::clone(&gateway).handle(request, peer));
            // One port for both: a TLS handshake starts with its record type.
            let mut first = [0u8; 1];
            let served = match tokio::time::timeout(FIRST_BYTE, stream.peek(&mut first)).await {
                Ok(Ok(1)) if first[0] == tls::HANDSHAKE => {
                    match tokio::time::timeout(FIRST_BYTE, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let connection =
                                builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(connection.into_owned()).await
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, %err, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                Ok(Ok(_)) => {
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(connection.into_owned()).await
                }
                _ => return,
            };
            if let Err(err) = served {
                tracing::debug!(%peer, %err, "gateway connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("gateway connections still open after {DRAIN:?}; closing");
    }
}
