//! From a route to the endpoints to try, in order: the Service port, its
//! ready endpoints in the EndpointSlices, spread round robin, with
//! `sessionAffinity: ClientIP` keeping a client on its endpoint.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::route::PortRef;

/// Why a route has nowhere to go: 503 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("Service {0} not found")]
    NoService(String),
    #[error("Service {service} has no port {port}")]
    NoPort { service: String, port: String },
    #[error("Service {0} has no ready endpoints")]
    NoEndpoints(String),
}

/// One ready endpoint of a Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `namespace/pod` (or the address when the endpoint names no pod):
    /// what session affinity remembers.
    pub key: String,
    pub ip: String,
    pub node: Option<String>,
    /// The pod, when the slice names one.
    pub pod: Option<(String, String)>,
    /// The port on the endpoint (the resolved targetPort).
    pub port: u16,
}

/// The Service port a [`PortRef`] means.
pub fn service_port<'a>(service: &'a Service, port: &PortRef) -> Option<&'a ServicePort> {
    let ports = service.spec.as_ref()?.ports.as_deref()?;
    match port {
        PortRef::Number(n) => ports.iter().find(|p| p.port == *n),
        PortRef::Name(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str())),
        PortRef::FromHost(host_port) => host_port
            .and_then(|hp| ports.iter().find(|p| p.port == i32::from(hp)))
            .or_else(|| ports.first()),
    }
}

/// The ready, not terminating endpoints for `port` of the Service, in slice order.
pub fn ready_endpoints(
    service: &Service,
    port: &PortRef,
    slices: &[Arc<EndpointSlice>],
) -> Result<Vec<Endpoint>, Unavailable> {
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let key = format!(
        "{namespace}/{}",
        service.metadata.name.as_deref().unwrap_or_default()
    );
    let Some(service_port) = service_port(service, port) else {
        let port = match port {
            PortRef::Number(n) => n.to_string(),
            PortRef::Name(name) => name.clone(),
            PortRef::FromHost(_) => "(none defined)".into(),
        };
        return Err(Unavailable::NoPort { service: key, port });
    };
    let port_name = service_port.name.clone().unwrap_or_default();
    let mut ready = Vec::new();
    for slice in slices {
        let Some(target) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.clone().unwrap_or_default();
            // Kubernetes reads an unset `ready` as ready.
            if conditions.ready == Some(false) || conditions.terminating == Some(true) {
                continue;
            }
            let Some(ip) = endpoint.addresses.first() else {
                continue;
            };
            let pod = endpoint.target_ref.as_ref().and_then(|r| {
                (r.kind.as_deref() == Some("Pod")).then(|| {
                    (
                        r.namespace.clone().unwrap_or_else(|| namespace.clone()),
                        r.name.clone().unwrap_or_default(),
                    )
                })
            });
            ready.push(Endpoint {
                key: pod
                    .as_ref()
                    .map_or_else(|| format!("{ip}:{target}"), |(ns, n)| format!("{ns}/{n}")),
                ip: ip.clone(),
                node: endpoint.node_name.clone(),
                pod,
                port: target,
            });
        }
    }
    if ready.is_empty() {
        return Err(Unavailable::NoEndpoints(key));
    }
    Ok(ready)
}

/// `sessionAffinity: ClientIP` and its timeout, if the Service asks for it.
pub fn affinity(service: &Service) -> Option<Duration> {
    let spec = service.spec.as_ref()?;
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let seconds = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
        .unwrap_or(10_800);
    Some(Duration::from_secs(
        u64::try_from(seconds).unwrap_or(10_800),
    ))
}

/// Spreads requests across endpoints: a round-robin position per route and
/// the endpoint each client was last sent to (for session affinity).
#[derive(Debug, Default)]
pub struct Balancer {
    next: Mutex<HashMap<String, usize>>,
    sticky: Mutex<HashMap<(String, IpAddr), (String, Instant)>>,
}

impl Balancer {
    /// The order to try `endpoints` in for one request to `route`.
    pub fn order(
        &self,
        route: &str,
        endpoints: Vec<Endpoint>,
        client: IpAddr,
        affinity: Option<Duration>,
    ) -> Vec<Endpoint> {
        let mut endpoints = endpoints;
        let start = {
            let mut next = self.next.lock().expect("balancer lock");
            let n = next.entry(route.to_string()).or_insert(0);
            let start = *n % endpoints.len().max(1);
            *n = n.wrapping_add(1);
            start
        };
        endpoints.rotate_left(start);
        if let Some(timeout) = affinity {
            let sticky = self.sticky.lock().expect("balancer lock");
            if let Some((key, at)) = sticky.get(&(route.to_string(), client))
                && at.elapsed() < timeout
                && let Some(i) = endpoints.iter().position(|e| &e.key == key)
            {
                let chosen = endpoints.remove(i);
                endpoints.insert(0, chosen);
            }
        }
        endpoints
    }

    /// Remember that `client` was served by `endpoint` (session affinity).
    pub fn served(&self, route: &str, client: IpAddr, endpoint: &Endpoint) {
        let mut sticky = self.sticky.lock().expect("balancer lock");
        sticky.insert(
            (route.to_string(), client),
            (endpoint.key.clone(), Instant::now()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(extra: serde_json::Value) -> Service {
        let mut spec =
            json!({"ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 81}]});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": spec}),
        )
        .unwrap()
    }

    fn slice() -> Arc<EndpointSlice> {
        let endpoint = |pod: &str, ready: bool, terminating: bool| {
            json!({"addresses": ["127.0.0.1"], "nodeName": "n1",
                "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
                "targetRef": {"kind": "Pod", "name": pod, "namespace": "ns"}})
        };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "web-1", "namespace": "ns"},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}],
                "endpoints": [endpoint("a", true, false), endpoint("b", false, false),
                              endpoint("c", false, true), endpoint("d", true, false)]
            }))
            .unwrap(),
        )
    }

    #[test]
    fn only_ready_endpoints_with_the_resolved_port() {
        let ready = ready_endpoints(
            &service(json!({})),
            &PortRef::Name("admin".into()),
            &[slice()],
        )
        .unwrap();
        let got: Vec<_> = ready.iter().map(|e| (e.key.as_str(), e.port)).collect();
        assert_eq!(got, vec![("ns/a", 9090), ("ns/d", 9090)]);
        let by_host = ready_endpoints(
            &service(json!({})),
            &PortRef::FromHost(Some(81)),
            &[slice()],
        )
        .unwrap();
        assert_eq!(by_host[0].port, 9090);
        let first =
            ready_endpoints(&service(json!({})), &PortRef::FromHost(Some(5)), &[slice()]).unwrap();
        assert_eq!(first[0].port, 8080);
        assert_eq!(
            ready_endpoints(&service(json!({})), &PortRef::Number(1), &[slice()]),
            Err(Unavailable::NoPort {
                service: "ns/web".into(),
                port: "1".into()
            })
        );
        assert_eq!(
            ready_endpoints(&service(json!({})), &PortRef::Number(80), &[]),
            Err(Unavailable::NoEndpoints("ns/web".into()))
        );
    }

    #[test]
    fn round_robin_and_client_ip_affinity() {
        let balancer = Balancer::default();
        let ready = ready_endpoints(&service(json!({})), &PortRef::Number(80), &[slice()]).unwrap();
        let client: IpAddr = [10, 0, 0, 1].into();
        let firsts: Vec<String> = (0..4)
            .map(|_| {
                balancer.order("r", ready.clone(), client, None)[0]
                    .key
                    .clone()
            })
            .collect();
        assert_eq!(firsts, vec!["ns/a", "ns/d", "ns/a", "ns/d"]);

        let sticky = service(json!({"sessionAffinity": "ClientIP"}));
        let timeout = affinity(&sticky);
        assert_eq!(timeout, Some(Duration::from_secs(10_800)));
        let first = balancer.order("s", ready.clone(), client, timeout)[0].clone();
        balancer.served("s", client, &first);
        for _ in 0..3 {
            assert_eq!(
                balancer.order("s", ready.clone(), client, timeout)[0],
                first
            );
        }
    }
}
