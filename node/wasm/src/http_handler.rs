//! Answering one HTTP request with a fresh instance of an HTTP program: a new
//! `Store` (with the container's env and output), instantiated from the program's
//! `ProxyPre`, handed the request, dropped when the response body is done. Nothing
//! survives from one request to the next.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmtime::{Engine, Trap};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::http_outbound::OutboundPolicy;
use crate::http_output::SharedOutput;
use crate::program::ComponentState;
use crate::run::{RunLimits, base_wasi_builder, exit_from_error, new_store};
use crate::{Exit, Sandbox};

/// Serves requests for one container. Cheap to clone (one clone per connection).
#[derive(Clone)]
pub(crate) struct Handler {
    inner: Arc<HandlerInner>,
}

pub(crate) struct HandlerParts {
    pub(crate) engine: Engine,
    pub(crate) pre: ProxyPre<ComponentState>,
    pub(crate) digest: String,
    pub(crate) limits: RunLimits,
    /// The container's mounts and working directory, granted to every instance.
    pub(crate) sandbox: Sandbox,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) stdout: SharedOutput,
    pub(crate) stderr: SharedOutput,
    /// Firing it ends every guest still running (the drain deadline passed).
    pub(crate) kill: CancellationToken,
    /// Every guest task, so the server can wait for them all to end.
    pub(crate) guests: TaskTracker,
}

struct HandlerInner {
    parts: HandlerParts,
}

/// Why a request got no response from the guest.
enum Failure {
    /// The guest trapped (or exited) before responding; the text says how.
    Trap(String),
    /// The node could not create an instance (e.g. the instance pool is full).
    Instantiate(String),
    /// The guest returned without setting a response.
    NoResponse,
    /// The server is shutting down and stopped the guest.
    Killed,
}

impl Handler {
    pub(crate) fn new(parts: HandlerParts) -> Handler {
        Handler {
            inner: Arc::new(HandlerInner { parts }),
        }
    }

    pub(crate) async fn handle<B>(&self, request: http::Request<B>) -> Response<HyperOutgoingBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let parts = &self.inner.parts;
        let wasi = match base_wasi_builder(&parts.args, &parts.env, &parts.sandbox) {
            Ok(mut builder) => {
                builder
                    .stdout(parts.stdout.stream())
                    .stderr(parts.stderr.stream());
                builder.build()
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "cannot grant the container's files");
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the node cannot set up the function's files\n".into(),
                );
            }
        };
        let outbound = OutboundPolicy::new(
            Some(parts.stderr.clone()),
            parts.sandbox.egress.clone(),
            parts.limits.service_scope(&parts.sandbox),
        );
        let state = ComponentState::new(wasi, parts.limits.store_limits(), outbound);
        let mut store = new_store(&parts.engine, state, parts.limits.cpu.as_ref());
        let (sender, receiver) = oneshot::channel();
        let resources = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .and_then(|req| {
                let out = store.data_mut().http().new_response_outparam(sender)?;
                Ok((req, out))
            });
        let (req, out) = match resources {
            Ok(resources) => resources,
            Err(error) => {
                return plain(StatusCode::BAD_REQUEST, format!("bad request: {error:#}\n"));
            }
        };

        let pre = parts.pre.clone();
        let kill = parts.kill.clone();
        let meter = parts.limits.meter.clone();
        let digest = parts.digest.clone();
        let stderr = parts.stderr.clone();
        // The guest runs in a task of its own: after it sets the response it may go
        // on streaming the body while this function has already returned.
        let guest = parts.guests.spawn(async move {
            let run = async {
                let proxy = match pre.instantiate_async(&mut store).await {
                    Ok(proxy) => proxy,
                    Err(error) if error.is::<Trap>() => {
                        return Err(trapped(&digest, error));
                    }
                    Err(error) => return Err(Failure::Instantiate(format!("{error:#}"))),
                };
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
                    .map_err(|error| trapped(&digest, error))
            };
            let run = async move {
                match &meter {
                    Some(meter) => meter.timed(run).await,
                    None => run.await,
                }
            };
            let ended = tokio::select! {
                biased;
                () = kill.cancelled() => Err(Failure::Killed),
                ended = run => ended,
            };
            if let Err(Failure::Trap(message)) = &ended {
                stderr.notice(format!("skiff: request handler trapped: {message}\n"));
            }
            ended
        });

        match receiver.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the function failed: {code:?}\n"),
            ),
            // The guest dropped the response outparam without using it: its task
            // says why.
            Err(_) => {
                let failure = match guest.await {
                    Ok(Ok(())) => Failure::NoResponse,
                    Ok(Err(failure)) => failure,
                    Err(join) => Failure::Trap(format!("guest task failed: {join}")),
                };
                failure_response(failure)
            }
        }
    }
}

fn trapped(digest: &str, error: wasmtime::Error) -> Failure {
    match exit_from_error(digest, error) {
        Exit::Trap(message) => Failure::Trap(message),
        Exit::Code(code) => Failure::Trap(format!("the handler exited with code {code}")),
        Exit::Killed => Failure::Killed,
        Exit::OutOfMemory(message) => Failure::Trap(message),
    }
}

fn failure_response(failure: Failure) -> Response<HyperOutgoingBody> {
    match failure {
        Failure::Trap(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the function trapped; see the container log\n".into(),
        ),
        Failure::NoResponse => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the function returned without a response\n".into(),
        ),
        Failure::Instantiate(message) => {
            tracing::warn!(%message, "cannot instantiate an HTTP program");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the node cannot start the function right now\n".into(),
            )
        }
        Failure::Killed => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the function was stopped\n".into(),
        ),
    }
}

/// A short text response from the node itself.
pub(crate) fn plain(status: StatusCode, text: String) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
