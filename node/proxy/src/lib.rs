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
pub mod endpoints;
pub mod gateway;
pub mod metrics;
pub mod netpol;
pub mod nodeport;
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
    config.validate()?;
    let address = listener.local_addr().map_err(GatewayError::Listener)?;
    let tasks = TaskTracker::new();
    let caches = cache::Caches::start(&client, &tasks, &cancel);
    let scaler = Arc::new(scaler::Scaler::new(client.clone(), caches.clone()));
    let caches_for_tls = caches.clone();
    tasks.spawn(Arc::clone(&scaler).run(cancel.clone()));
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
        pool: pool::Pool::default(),
    });
    tasks.spawn(publish::run(
        client,
        caches,
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

    let tls = tls::server_config(caches_for_tls)
        .map(tokio_rustls::TlsAcceptor::from)
        .map_err(GatewayError::Tls)?;
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
    tasks.close();
    tasks.wait().await;
    Ok(())
}
