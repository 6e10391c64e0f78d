//! What a guest's outgoing `wasi:http` requests may do:
//!
//! - a request for a Service name of the cluster (see [`crate::services`]) goes
//!   to the node gateway, whatever the allow-list says: in-cluster calls are
//!   governed by NetworkPolicy at the gateway, as in Kubernetes, where pods
//!   reach Services unless a policy says otherwise;
//! - any other host must be on the pod's allow-list ([`Egress`], the
//!   `skiff.dev/allow-outbound` annotation).
//!
//! A refused request fails with `HTTP-request-denied` (an unknown qualified
//! Service name with a DNS error, as NXDOMAIN would), and the refusal is noted
//! in the container's log so the pod's owner sees why.

use std::sync::Arc;

use http::HeaderValue;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::egress::{ALLOW_OUTBOUND_ANNOTATION, Egress};
use crate::http_output::SharedOutput;
use crate::services::{self, Destination, PodIdentity, ServiceNames};

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

/// The Services a guest can reach by name, and as which pod.
#[derive(Clone)]
pub(crate) struct ServiceScope {
    pub(crate) names: Arc<dyn ServiceNames>,
    pub(crate) pod: PodIdentity,
}

/// The `wasi:http` hooks of one store.
pub(crate) struct OutboundPolicy {
    /// Where refusals are reported; `None` logs them only through tracing.
    notices: Option<SharedOutput>,
    egress: Egress,
    services: Option<ServiceScope>,
}

impl OutboundPolicy {
    pub(crate) fn new(
        notices: Option<SharedOutput>,
        egress: Egress,
        services: Option<ServiceScope>,
    ) -> OutboundPolicy {
        OutboundPolicy {
            notices,
            egress,
            services,
        }
    }

    fn notice(&self, text: String) {
        if let Some(notices) = &self.notices {
            notices.notice(text);
        }
    }

    fn refuse(&self, error: Error) -> ResponseFuture {
        Box::new(async { Err(error) })
    }
}

/// Sends the request as it is, to the host its URI names.
fn send(
    request: http::Request<HyperOutgoingBody>,
    options: Option<RequestOptions>,
) -> ResponseFuture {
    Box::new(async move {
        use http_body_util::BodyExt;
        let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
        Ok((
            response.map(BodyExt::boxed_unsync),
            Box::new(io) as Box<dyn Future<Output = _> + Send>,
        ))
    })
}

/// Points a request for Service `namespace/service` at the gateway: the URI
/// names the gateway's address, the Host header the Service's full name (and
/// the port the guest wrote, so the gateway picks that Service port).
fn to_gateway(
    mut request: http::Request<HyperOutgoingBody>,
    scope: &ServiceScope,
    namespace: &str,
    service: &str,
) -> Result<http::Request<HyperOutgoingBody>, Error> {
    let port = request.uri().port_u16();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let uri = http::Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(scope.names.gateway().to_string())
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    *request.uri_mut() = uri;
    let authority = services::service_authority(namespace, service, port);
    let host = HeaderValue::from_str(&authority).map_err(|_| Error::HttpRequestUriInvalid)?;
    let headers = request.headers_mut();
    headers.insert(http::header::HOST, host);
    if let Some((name, prefix)) = scope.names.caller_header() {
        let caller = format!("{prefix}{}/{}", scope.pod.namespace, scope.pod.name);
        match HeaderValue::from_str(&caller) {
            Ok(value) => {
                headers.insert(name, value);
            }
            Err(_) => {
                headers.remove(name);
            }
        }
    }
    Ok(request)
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
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if let Some(scope) = &self.services {
            let names = &scope.names;
            match services::destination(&host, &scope.pod.namespace, |ns, name| {
                names.exists(ns, name)
            }) {
                Destination::Service { namespace, service } if https => {
                    let target = format!("{} {host}:{port}", request.method());
                    tracing::info!(%target, "outbound HTTPS request to a Service refused");
                    self.notice(format!(
                        "skiff: outbound HTTP request ({target}) denied: Service {namespace}/{service} is reached over http://, the node gateway does not terminate TLS for Services\n"
                    ));
                    return self.refuse(Error::HttpRequestDenied);
                }
                Destination::Service { namespace, service } => {
                    tracing::debug!(%host, %namespace, %service, "outbound request to a Service, through the gateway");
                    return match to_gateway(request, scope, &namespace, &service) {
                        Ok(request) => send(request, options),
                        Err(error) => self.refuse(error),
                    };
                }
                Destination::UnknownService { namespace, service } => {
                    tracing::info!(%host, "outbound request to an unknown Service");
                    self.notice(format!(
                        "skiff: outbound HTTP request to {host} failed: there is no Service {namespace}/{service}\n"
                    ));
                    return self.refuse(Error::DnsError {
                        rcode: Some("NXDOMAIN".into()),
                        info_code: None,
                    });
                }
                Destination::Outside => {}
            }
        }
        if self.egress.permits(&host, port) {
            tracing::debug!(%host, port, "outbound HTTP request allowed");
            return send(request, options);
        }
        let target = format!("{} {host}:{port}", request.method());
        tracing::info!(%target, "outbound HTTP request denied");
        self.notice(format!(
            "skiff: outbound HTTP request ({target}) denied: the pod's {ALLOW_OUTBOUND_ANNOTATION} annotation does not list {host}:{port}\n"
        ));
        self.refuse(Error::HttpRequestDenied)
    }
}
