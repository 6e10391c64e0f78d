//! What a guest's outgoing `wasi:http` requests may do. For now: nothing. Every
//! request is refused with `HTTP-request-denied`, and the refusal is noted in the
//! container's log so the pod's owner sees why. The per-pod allow-list belongs here.

use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::http_output::SharedOutput;

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

/// The `wasi:http` hooks of one store.
pub(crate) struct OutboundPolicy {
    /// Where refusals are reported; `None` logs them only through tracing.
    notices: Option<SharedOutput>,
}

impl OutboundPolicy {
    pub(crate) fn deny_all(notices: Option<SharedOutput>) -> OutboundPolicy {
        OutboundPolicy { notices }
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<HyperOutgoingBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        let target = format!(
            "{} {}",
            request.method(),
            request.uri().authority().map_or("?", |a| a.as_str())
        );
        tracing::info!(%target, "outbound HTTP request denied");
        if let Some(notices) = &self.notices {
            notices.notice(format!(
                "skiff: outbound HTTP request ({target}) denied: pods may not make outbound requests\n"
            ));
        }
        Box::new(async { Err(Error::HttpRequestDenied) })
    }
}
