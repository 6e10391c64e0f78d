//! The gateway's settings: a plain struct with defaults and `validate()`.

use std::net::SocketAddr;
use std::time::Duration;

/// How a node's gateway listens and forwards.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The node this gateway belongs to (the `nodeName` of its local endpoints).
    pub node_name: String,
    /// How long to wait for a TCP connection to one endpoint before trying the next.
    pub connect_timeout: Duration,
    /// How long a backend may take to send its response head (then 504).
    pub response_timeout: Duration,
    /// The address NodePort listeners bind to (the node's IP); the port is the nodePort.
    pub node_port_ip: std::net::IpAddr,
    /// The cluster IP range (the API server allocates from `10.96.0.0/12`):
    /// made local inside OCI pods, where each cluster IP is served.
    pub service_cidr: String,
    /// Keep HTTP/1.1 connections to backends open and send later requests on
    /// them. Off by default: with it on, a Wasm pod that calls a Service through
    /// the gateway sometimes saw its call reset after a 200 head (the
    /// greeter/hello-http example, not yet explained), so each request opens
    /// its own connection until that is understood.
    pub reuse_backend_connections: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            node_name: String::new(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(30),
            node_port_ip: [127, 0, 0, 1].into(),
            service_cidr: "10.96.0.0/12".to_string(),
            reuse_backend_connections: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("node_name must not be empty")]
    NoNodeName,
    #[error("{0} must be more than zero")]
    ZeroTimeout(&'static str),
}

impl GatewayConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_name.is_empty() {
            return Err(ConfigError::NoNodeName);
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout("connect_timeout"));
        }
        if self.response_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout("response_timeout"));
        }
        Ok(())
    }
}

/// Where this node serves a local Wasm pod's container port: the node agent's
/// port table, passed in-process so the gateway needs no API call per request.
pub trait LocalPorts: Send + Sync + 'static {
    /// The address serving `container_port` of pod `namespace/name`, if it serves now.
    fn served(&self, namespace: &str, pod: &str, container_port: u16) -> Option<SocketAddr>;
}
