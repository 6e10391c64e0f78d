//! Service names inside Wasm guests, without DNS.
//!
//! A guest's outgoing `wasi:http` request whose host names a Service of the
//! cluster is not resolved or sent to that host: the runtime sends it to the
//! node gateway (which routes by Host header to a ready endpoint, holds it
//! while a scaled-to-zero Deployment starts, and applies NetworkPolicy), with
//! the Host header set to the Service's full name. The names are those
//! Kubernetes DNS answers for a pod in namespace `ns`:
//!
//! | the guest writes | means |
//! |---|---|
//! | `<svc>.<ns2>.svc.cluster.local`, `<svc>.<ns2>.svc` | Service `ns2/svc` (an unknown one fails like NXDOMAIN) |
//! | `<svc>.<ns2>` | Service `ns2/svc` when it exists, else an ordinary host |
//! | `<svc>` | Service `ns/svc` (the pod's own namespace) when it exists, else an ordinary host |
//!
//! The node tells the runtime which Services exist and where its gateway is
//! through [`ServiceNames`] ([`crate::WasmRuntime::set_services`]).

use std::net::SocketAddr;

/// The cluster's DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// What the node knows about Services, for the runtime to route guests'
/// requests by name.
pub trait ServiceNames: Send + Sync + 'static {
    /// Whether Service `namespace/name` exists.
    fn exists(&self, namespace: &str, name: &str) -> bool;
    /// The HTTP listener that routes by Service host name: the node gateway.
    fn gateway(&self) -> SocketAddr;
    /// A header proving to the gateway that the runtime (not a guest or an
    /// outside client) names the calling pod, so NetworkPolicy can judge the
    /// call by the pod's labels: `(header name, value prefix)`; the runtime
    /// appends `<namespace>/<pod>` to the value. `None`: calls are not marked.
    fn caller_header(&self) -> Option<(http::HeaderName, String)> {
        None
    }
}

/// The pod a guest runs for: whose namespace short Service names are in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity {
    pub namespace: String,
    pub name: String,
}

/// How a guest's host name reads, before knowing which Services exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameForm<'a> {
    /// `<svc>.<ns>.svc[.cluster.local]`: only ever a Service.
    Qualified {
        service: &'a str,
        namespace: &'a str,
    },
    /// `<svc>.<ns>` or `<svc>`: a Service if one exists, else an ordinary host.
    Maybe {
        service: &'a str,
        namespace: &'a str,
    },
    /// Anything else (more labels, an IP address, `localhost`).
    Other,
}

fn is_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// Reads `host` (lower case, no port, no trailing dot) as seen from a pod in
/// `own_namespace`.
pub(crate) fn classify<'a>(host: &'a str, own_namespace: &'a str) -> NameForm<'a> {
    let qualified = host
        .strip_suffix(CLUSTER_DOMAIN)
        .and_then(|h| h.strip_suffix('.'))
        .unwrap_or(host);
    if let Some(short) = qualified.strip_suffix(".svc") {
        return match short.split_once('.') {
            Some((service, namespace)) if is_label(service) && is_label(namespace) => {
                NameForm::Qualified { service, namespace }
            }
            _ => NameForm::Other,
        };
    }
    if qualified.len() != host.len() {
        // `<x>.cluster.local` that is not a Service name (a pod name, say).
        return NameForm::Other;
    }
    match host.split_once('.') {
        Some((service, namespace)) if is_label(service) && is_label(namespace) => {
            NameForm::Maybe { service, namespace }
        }
        None if is_label(host) && host != "localhost" && !own_namespace.is_empty() => {
            NameForm::Maybe {
                service: host,
                namespace: own_namespace,
            }
        }
        _ => NameForm::Other,
    }
}

/// Where a guest's request for a host goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// A Service: send to the gateway with this Host header (`<svc>.<ns>.svc.cluster.local[:port]`).
    Service { namespace: String, service: String },
    /// A qualified Service name for a Service that does not exist.
    UnknownService { namespace: String, service: String },
    /// Not a Service name: the pod's egress allow-list decides.
    Outside,
}

/// Decides where a request for `host` goes, given which Services exist.
pub(crate) fn destination(
    host: &str,
    own_namespace: &str,
    exists: impl Fn(&str, &str) -> bool,
) -> Destination {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match classify(&host, own_namespace) {
        NameForm::Qualified { service, namespace } if exists(namespace, service) => {
            Destination::Service {
                namespace: namespace.into(),
                service: service.into(),
            }
        }
        NameForm::Qualified { service, namespace } => Destination::UnknownService {
            namespace: namespace.into(),
            service: service.into(),
        },
        NameForm::Maybe { service, namespace } if exists(namespace, service) => {
            Destination::Service {
                namespace: namespace.into(),
                service: service.into(),
            }
        }
        NameForm::Maybe { .. } | NameForm::Other => Destination::Outside,
    }
}

/// The Host header the gateway routes a Service request by.
pub(crate) fn service_authority(namespace: &str, service: &str, port: Option<u16>) -> String {
    match port {
        Some(port) => format!("{service}.{namespace}.svc.{CLUSTER_DOMAIN}:{port}"),
        None => format!("{service}.{namespace}.svc.{CLUSTER_DOMAIN}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(namespace: &str, name: &str) -> bool {
        matches!(
            (namespace, name),
            ("shop", "web") | ("shop", "db") | ("other", "api")
        )
    }

    fn service(namespace: &str, service: &str) -> Destination {
        Destination::Service {
            namespace: namespace.into(),
            service: service.into(),
        }
    }

    #[test]
    fn every_kubernetes_form_names_the_service() {
        for host in [
            "web.shop.svc.cluster.local",
            "web.shop.svc.cluster.local.",
            "WEB.Shop.SVC",
            "web.shop",
            "web",
        ] {
            assert_eq!(
                destination(host, "shop", cluster),
                service("shop", "web"),
                "{host}"
            );
        }
        assert_eq!(
            destination("api.other", "shop", cluster),
            service("other", "api")
        );
        assert_eq!(
            destination("api", "other", cluster),
            service("other", "api"),
            "a bare name is in the pod's own namespace"
        );
    }

    #[test]
    fn names_that_are_not_services_go_outside() {
        for host in [
            "api",         // no Service api in shop
            "example.com", // no Service example in namespace com
            "a.b.example.com",
            "127.0.0.1",
            "localhost",
            "[::1]",
            "web.shop.example.com",
        ] {
            assert_eq!(
                destination(host, "shop", cluster),
                Destination::Outside,
                "{host}"
            );
        }
    }

    #[test]
    fn a_qualified_name_of_a_missing_service_is_unknown() {
        assert_eq!(
            destination("gone.shop.svc.cluster.local", "shop", cluster),
            Destination::UnknownService {
                namespace: "shop".into(),
                service: "gone".into()
            }
        );
        assert_eq!(
            destination("pod-1.cluster.local", "shop", cluster),
            Destination::Outside
        );
    }

    #[test]
    fn authority_keeps_the_port_written() {
        assert_eq!(
            service_authority("shop", "web", Some(8080)),
            "web.shop.svc.cluster.local:8080"
        );
        assert_eq!(
            service_authority("shop", "web", None),
            "web.shop.svc.cluster.local"
        );
    }
}
