//! Which Service a request is for: by Service host name
//! (`<svc>.<ns>.svc.cluster.local`, `<svc>.<ns>.svc`, `<svc>.<ns>`) or by
//! Ingress rules (host exact or `*.` wildcard, path Exact / Prefix /
//! ImplementationSpecific, default backend). Pure functions over cached objects.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressBackend};

/// The IngressClass the gateway serves (besides Ingresses with no class).
pub const INGRESS_CLASS: &str = "skiff";

/// Which port of the Service a route means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    Number(i32),
    Name(String),
    /// The Service's port numbered like the Host header's port, else its first port.
    FromHost(Option<u16>),
}

/// Where a request goes: a port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// For logs and metrics: `service/<ns>/<name>` or `ingress/<ns>/<name>`.
    pub label: String,
    pub namespace: String,
    pub service: String,
    pub port: PortRef,
}

/// Why no route was found; the gateway answers 404 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoute {
    #[error("no Service or Ingress rule for host {0:?}")]
    UnknownHost(String),
    #[error("Ingress {ingress} has no rule for host {host:?} and path {path:?}")]
    NoPath {
        ingress: String,
        host: String,
        path: String,
    },
}

/// Splits a Host header into lower-case name and port.
pub fn split_host(host: &str) -> (String, Option<u16>) {
    let host = host.trim();
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || host.starts_with('[') => {
            (name, port.parse().ok())
        }
        _ => (host, None),
    };
    (name.trim_end_matches('.').to_ascii_lowercase(), port)
}

/// `(service, namespace)` named by a Service host name, if `host` has that shape.
pub fn service_host(host: &str) -> Option<(&str, &str)> {
    let short = host
        .strip_suffix(".svc.cluster.local")
        .or_else(|| host.strip_suffix(".svc"))
        .unwrap_or(host);
    let (service, namespace) = short.split_once('.')?;
    (!service.is_empty() && !namespace.is_empty() && !namespace.contains('.'))
        .then_some((service, namespace))
}

/// Whether the gateway serves this Ingress: class `skiff` or none.
pub fn serves(ingress: &Ingress) -> bool {
    let class = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.clone())
        .or_else(|| {
            ingress
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/ingress.class").cloned())
        });
    class.is_none_or(|c| c == INGRESS_CLASS)
}

/// A rule's match quality: host rank, then (exact path, path length).
type Rank = (u8, (bool, usize));

/// How well a rule's host matches: exact beats wildcard beats no host.
fn host_rank(rule_host: Option<&str>, host: &str) -> Option<u8> {
    match rule_host.filter(|h| !h.is_empty()) {
        None => Some(0),
        Some(h) if h.eq_ignore_ascii_case(host) => Some(2),
        Some(h) => {
            let suffix = h.strip_prefix("*.")?;
            let (first, rest) = host.split_once('.')?;
            (!first.is_empty() && rest.eq_ignore_ascii_case(suffix)).then_some(1)
        }
    }
}

/// How well a path rule matches: `(exact, length)`, more is better.
fn path_rank(rule: &HTTPIngressPath, path: &str) -> Option<(bool, usize)> {
    let rule_path = rule.path.as_deref().unwrap_or("/");
    match rule.path_type.as_str() {
        "Exact" => (rule_path == path).then_some((true, rule_path.len())),
        // Prefix, and ImplementationSpecific read as Prefix: element-wise,
        // so `/foo` matches `/foo` and `/foo/bar` but not `/foobar`.
        _ => {
            let prefix = rule_path.trim_end_matches('/');
            let matches = prefix.is_empty()
                || path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'));
            matches.then_some((false, prefix.len()))
        }
    }
}

fn ingress_key(ingress: &Ingress) -> String {
    format!(
        "{}/{}",
        ingress.metadata.namespace.as_deref().unwrap_or_default(),
        ingress.metadata.name.as_deref().unwrap_or_default()
    )
}

fn backend_route(ingress: &Ingress, backend: &IngressBackend) -> Option<Route> {
    let service = backend.service.as_ref()?;
    let port = service.port.as_ref();
    let port = match (
        port.and_then(|p| p.number),
        port.and_then(|p| p.name.clone()),
    ) {
        (Some(n), _) => PortRef::Number(n),
        (None, Some(name)) => PortRef::Name(name),
        (None, None) => PortRef::FromHost(None),
    };
    Some(Route {
        label: format!("ingress/{}", ingress_key(ingress)),
        namespace: ingress.metadata.namespace.clone().unwrap_or_default(),
        service: service.name.clone(),
        port,
    })
}

/// The route for a request with this Host header and path.
pub fn route(
    host_header: &str,
    path: &str,
    service: impl Fn(&str, &str) -> Option<Arc<Service>>,
    ingresses: &[Arc<Ingress>],
) -> Result<Route, NoRoute> {
    let (host, host_port) = split_host(host_header);
    if let Some((name, namespace)) = service_host(&host)
        && service(namespace, name).is_some()
    {
        return Ok(Route {
            label: format!("service/{namespace}/{name}"),
            namespace: namespace.to_string(),
            service: name.to_string(),
            port: PortRef::FromHost(host_port),
        });
    }

    let mut ours: Vec<&Arc<Ingress>> = ingresses.iter().filter(|i| serves(i)).collect();
    ours.sort_by(|a, b| {
        (&a.metadata.creation_timestamp, ingress_key(a))
            .cmp(&(&b.metadata.creation_timestamp, ingress_key(b)))
    });
    // The best (host rank, path rank) over all rules of all Ingresses; the
    // first Ingress wins a tie.
    let mut best: Option<(Rank, Route)> = None;
    let mut host_matched: Option<&Ingress> = None;
    for ingress in &ours {
        let rules = ingress.spec.as_ref().and_then(|s| s.rules.as_ref());
        for rule in rules.into_iter().flatten() {
            let Some(h_rank) = host_rank(rule.host.as_deref(), &host) else {
                continue;
            };
            if h_rank > 0 {
                host_matched.get_or_insert(ingress);
            }
            let paths = rule
                .http
                .as_ref()
                .map(|h| h.paths.as_slice())
                .unwrap_or_default();
            for p in paths {
                let Some(p_rank) = path_rank(p, path) else {
                    continue;
                };
                let rank = (h_rank, p_rank);
                if best.as_ref().is_none_or(|(r, _)| rank > *r)
                    && let Some(route) = backend_route(ingress, &p.backend)
                {
                    best = Some((rank, route));
                }
            }
        }
    }
    if let Some((_, route)) = best {
        return Ok(route);
    }
    let default = ours.iter().find_map(|i| {
        let backend = i.spec.as_ref()?.default_backend.as_ref()?;
        backend_route(i, backend)
    });
    if let Some(route) = default {
        return Ok(route);
    }
    match host_matched {
        Some(ingress) => Err(NoRoute::NoPath {
            ingress: ingress_key(ingress),
            host,
            path: path.to_string(),
        }),
        None => Err(NoRoute::UnknownHost(host)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(name: &str, spec: serde_json::Value) -> Arc<Ingress> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": "web"}, "spec": spec}),
            )
            .unwrap(),
        )
    }

    fn no_services(_: &str, _: &str) -> Option<Arc<Service>> {
        None
    }

    fn backend(service: &str) -> serde_json::Value {
        json!({"service": {"name": service, "port": {"number": 80}}})
    }

    #[test]
    fn host_names() {
        assert_eq!(
            split_host("Web.Default.SVC:8080"),
            ("web.default.svc".into(), Some(8080))
        );
        assert_eq!(split_host("example.com."), ("example.com".into(), None));
        assert_eq!(
            service_host("web.default.svc.cluster.local"),
            Some(("web", "default"))
        );
        assert_eq!(service_host("web.default.svc"), Some(("web", "default")));
        assert_eq!(service_host("web.default"), Some(("web", "default")));
        assert_eq!(service_host("web"), None);
        assert_eq!(service_host("a.b.c"), None);
    }

    #[test]
    fn service_names_route_to_existing_services_only() {
        let svc = Arc::new(Service::default());
        let lookup = |ns: &str, name: &str| (ns == "default" && name == "web").then(|| svc.clone());
        let route = route("web.default.svc.cluster.local:80", "/", lookup, &[]).unwrap();
        assert_eq!(route.service, "web");
        assert_eq!(route.port, PortRef::FromHost(Some(80)));
        assert_eq!(
            super::route("db.default", "/", lookup, &[]),
            Err(NoRoute::UnknownHost("db.default".into()))
        );
    }

    #[test]
    fn ingress_hosts_paths_and_default_backend() {
        let rules = ingress(
            "a",
            json!({"rules": [
                {"host": "shop.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": backend("front")},
                    {"path": "/api", "pathType": "Prefix", "backend": backend("api")},
                    {"path": "/api/v1/exact", "pathType": "Exact", "backend": backend("exact")}
                ]}},
                {"host": "*.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": backend("wild")}]}}
            ]}),
        );
        let ingresses = vec![rules.clone()];
        let to =
            |host: &str, path: &str| route(host, path, no_services, &ingresses).map(|r| r.service);
        assert_eq!(to("shop.example.com", "/"), Ok("front".into()));
        assert_eq!(to("shop.example.com", "/apix"), Ok("front".into()));
        assert_eq!(to("shop.example.com", "/api/items"), Ok("api".into()));
        assert_eq!(to("shop.example.com", "/api/v1/exact"), Ok("exact".into()));
        assert_eq!(to("SHOP.example.com:8080", "/api"), Ok("api".into()));
        assert_eq!(to("blog.example.com", "/"), Ok("wild".into()));
        assert_eq!(
            to("a.b.example.com", "/"),
            Err(NoRoute::UnknownHost("a.b.example.com".into()))
        );

        let with_default = ingress("b", json!({"defaultBackend": backend("fallback")}));
        let ingresses = vec![rules, with_default];
        let route = route("other.org", "/", no_services, &ingresses).unwrap();
        assert_eq!(route.service, "fallback");
        assert_eq!(route.label, "ingress/web/b");
        assert_eq!(route.port, PortRef::Number(80));
    }

    #[test]
    fn only_our_ingress_class_is_served() {
        let theirs = ingress(
            "nginx",
            json!({"ingressClassName": "nginx", "defaultBackend": backend("x")}),
        );
        assert!(route("a.org", "/", no_services, &[theirs]).is_err());
        let ours = ingress(
            "skiff",
            json!({"ingressClassName": "skiff", "defaultBackend": backend("x")}),
        );
        assert!(route("a.org", "/", no_services, &[ours]).is_ok());
    }

    #[test]
    fn host_without_matching_path_says_which_ingress() {
        let only_api = ingress(
            "a",
            json!({"rules": [{"host": "x.org", "http": {"paths": [
                {"path": "/api", "pathType": "Exact", "backend": backend("api")}]}}]}),
        );
        let err = route("x.org", "/other", no_services, &[only_api]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Ingress web/a has no rule for host \"x.org\" and path \"/other\""
        );
    }
}
