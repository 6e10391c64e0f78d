//! What a guest's outgoing `wasi:http` requests may do: reach the hosts the pod's
//! allow-list ([`Egress`], the `skiff.dev/allow-outbound` annotation) names, and
//! nothing else. A refused request fails with `HTTP-request-denied`, and the
//! refusal is noted in the container's log so the pod's owner sees why.

use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::egress::{ALLOW_OUTBOUND_ANNOTATION, Egress};
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
    egress: Egress,
}

impl OutboundPolicy {
    pub(crate) fn new(notices: Option<SharedOutput>, egress: Egress) -> OutboundPolicy {
        OutboundPolicy { notices, egress }
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<HyperOutgoingBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if self.egress.permits(host, port) {
            tracing::debug!(%host, port, "outbound HTTP request allowed");
            return Box::new(async move {
                use http_body_util::BodyExt;
                let (response, io) =
                    wasmtime_wasi_http::default_send_request(request, options).await?;
                Ok((
                    response.map(BodyExt::boxed_unsync),
                    Box::new(io) as Box<dyn Future<Output = _> + Send>,
                ))
            });
        }
        let target = format!("{} {host}:{port}", request.method());
        tracing::info!(%target, "outbound HTTP request denied");
        if let Some(notices) = &self.notices {
            notices.notice(format!(
                "skiff: outbound HTTP request ({target}) denied: the pod's {ALLOW_OUTBOUND_ANNOTATION} annotation does not list {host}:{port}\n"
            ));
        }
        Box::new(async { Err(Error::HttpRequestDenied) })
    }
}
