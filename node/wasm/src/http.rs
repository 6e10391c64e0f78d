//! Serving a `wasi:http/proxy` program: HTTP/1.1 on the listeners the caller
//! bound, a fresh instance per request ([`crate::http_handler`]), and a graceful
//! stop: on cancellation the listeners close, in-flight requests get
//! `drain_timeout` to finish, then whatever is left is killed.

use std::convert::Infallible;
use std::time::Duration;

use futures::StreamExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmtime::Engine;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::error::RunError;
use crate::http_handler::{Handler, HandlerParts};
use crate::http_output::SharedOutput;
use crate::program::ComponentState;
use crate::run::{Exit, Process, RunLimits};

/// What serving an HTTP program needs besides the program: the container's
/// process (args, env, output) and where to listen.
pub struct HttpService {
    /// args and env every instance sees; stdout and stderr receive the output of
    /// all instances (interleaved by write).
    pub process: Process,
    /// Already bound, so the caller knows (and reports) the ports before serving.
    pub listeners: Vec<TcpListener>,
    /// How long in-flight requests may run on after cancellation.
    pub drain_timeout: Duration,
}

impl std::fmt::Debug for HttpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<_> = self
            .listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        f.debug_struct("HttpService")
            .field("process", &self.process)
            .field("listeners", &addrs)
            .field("drain_timeout", &self.drain_timeout)
            .finish()
    }
}

pub(crate) struct ServeTarget<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) pre: &'a ProxyPre<ComponentState>,
    pub(crate) digest: &'a str,
    pub(crate) limits: RunLimits,
}

/// Serves until `cancel` fires, then drains. `Exit::Code(0)` when every in-flight
/// request finished in time, `Exit::Killed` when some had to be cut off.
pub(crate) async fn serve(
    target: ServeTarget<'_>,
    service: HttpService,
    cancel: CancellationToken,
) -> Result<Exit, RunError> {
    let HttpService {
        process,
        listeners,
        drain_timeout,
    } = service;
    if listeners.is_empty() {
        return Err(RunError::NoListener {
            digest: target.digest.to_owned(),
        });
    }
    let (stdout, stdout_copy) = SharedOutput::start(process.stdout);
    let (stderr, stderr_copy) = SharedOutput::start(process.stderr);
    let kill = CancellationToken::new();
    let guests = TaskTracker::new();
    let handler = Handler::new(HandlerParts {
        engine: target.engine.clone(),
        pre: target.pre.clone(),
        digest: target.digest.to_owned(),
        limits: target.limits.for_sandbox(&process.sandbox),
        sandbox: process.sandbox,
        args: process.args,
        env: process.env,
        stdout,
        stderr,
        kill: kill.clone(),
        guests: guests.clone(),
    });
    for listener in &listeners {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(program = target.digest, %addr, "serving HTTP");
        }
    }

    let mut accepts = futures::stream::select_all(listeners.into_iter().map(|listener| {
        Box::pin(futures::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await;
            Some((accepted, listener))
        }))
    }));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(accepted) = accepts.next() => match accepted {
                Ok((stream, _peer)) => {
                    let handler = handler.clone();
                    let service = service_fn(move |request| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler.handle(request).await) }
                    });
                    let connection = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    let watched = graceful.watch(connection);
                    connections.spawn(async move {
                        if let Err(error) = watched.await {
                            tracing::debug!(%error, "HTTP connection ended with an error");
                        }
                    });
                }
                // Out of file descriptors and the like: the listener itself is
                // fine, so pause briefly instead of spinning.
                Err(error) => {
                    tracing::warn!(%error, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
    // Closing the listeners first: new connections are refused from here on.
    drop(accepts);
    drop(handler);
    let drained = tokio::time::timeout(drain_timeout, async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
        guests.close();
        guests.wait().await;
    })
    .await
    .is_ok();
    if !drained {
        tracing::info!(
            program = target.digest,
            "drain timeout passed; stopping the remaining requests"
        );
        kill.cancel();
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        guests.close();
        guests.wait().await;
    }
    // Every instance is gone, so the copy tasks see their channels close and drop
    // the container's writers, which ends the container's log.
    let _ = tokio::join!(stdout_copy, stderr_copy);
    Ok(if drained { Exit::Code(0) } else { Exit::Killed })
}
