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
mod publish;
pub mod route;
pub mod scaler;
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
    #[error("reading the gateway's listen address")]
    Listener(#[source] std::io::Error),
}

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
        let service = service_fn(move |request| Arc::clone(&gateway).handle(request, peer));
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(err) = connection.await {
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
