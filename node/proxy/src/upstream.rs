//! Where an endpoint is reached from this node: a local Wasm pod through the
//! node agent's port table, an OCI pod at its own IP, or a Wasm pod on
//! another node through that node's gateway (published on its Node object).

use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::cache::Caches;
use crate::config::LocalPorts;
use crate::endpoints::Endpoint;

/// The Node annotation carrying a node's gateway address (`HOST:PORT`).
pub const GATEWAY_ANNOTATION: &str = "skiff.dev/gateway-address";

/// A request header marking a request one gateway forwarded to another: the
/// receiving gateway only uses its own node's endpoints, so a request never
/// travels between gateways twice.
pub const HOP_HEADER: &str = "x-skiff-gateway-hop";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// Connect here and send the request as it is.
    Direct(String),
    /// Another node's gateway: send with the Host header kept and [`HOP_HEADER`] set.
    Gateway(String),
}

impl Upstream {
    pub fn address(&self) -> &str {
        match self {
            Upstream::Direct(a) | Upstream::Gateway(a) => a,
        }
    }
}

/// Resolves endpoints to upstreams for one node.
pub struct Resolver {
    pub node_name: String,
    pub caches: Caches,
    pub local: Arc<dyn LocalPorts>,
}

fn addresses(node: &Node) -> Vec<String> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .map(|a| a.address.clone())
        .collect()
}

fn join(ip: &str, port: u16) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(parsed) => SocketAddr::new(parsed, port).to_string(),
        Err(_) => format!("{ip}:{port}"),
    }
}

impl Resolver {
    /// Whether `ip` is one of the addresses of a known Node.
    pub fn is_node_address(&self, ip: std::net::IpAddr) -> bool {
        let text = ip.to_string();
        self.caches
            .nodes
            .state()
            .iter()
            .any(|n| addresses(n).contains(&text))
    }

    /// How to reach `endpoint`; `None` when it cannot be reached from here
    /// now (a local pod that does not serve yet, a node without a gateway,
    /// or any other node's endpoint when `local_only`).
    pub fn upstream(&self, endpoint: &Endpoint, local_only: bool) -> Option<Upstream> {
        let node_name = endpoint.node.as_deref().unwrap_or(&self.node_name);
        let node = self.caches.node(node_name);
        // A Wasm pod shares its node's network: its podIP is the node's IP
        // (or loopback), and the node serves it on a node port.
        let shares_node_ip = endpoint.ip == "127.0.0.1"
            || endpoint.ip == "::1"
            || node
                .as_deref()
                .is_some_and(|n| addresses(n).contains(&endpoint.ip));
        if !shares_node_ip {
            return Some(Upstream::Direct(join(&endpoint.ip, endpoint.port)));
        }
        if node_name == self.node_name {
            let (namespace, pod) = endpoint.pod.as_ref()?;
            let served = self.local.served(namespace, pod, endpoint.port)?;
            return Some(Upstream::Direct(served.to_string()));
        }
        if local_only {
            return None;
        }
        let gateway = node?
            .metadata
            .annotations
            .as_ref()?
            .get(GATEWAY_ANNOTATION)?
            .clone();
        Some(Upstream::Gateway(gateway))
    }
}
