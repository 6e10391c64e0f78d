//! The agent's configuration: a plain struct with defaults and validation;
//! parsing flags or environment belongs to the binary.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The Node object's name; must be a DNS subdomain.
    pub node_name: String,
    /// Where the agent keeps its state (container logs under `pods/`).
    pub data_dir: PathBuf,
    /// The agent's own HTTP server (logs, health). Port 0 picks a free port,
    /// which is then advertised in the Node's `daemonEndpoints`.
    pub listen_addr: SocketAddr,
    /// The address advertised as the node's InternalIP (and, for now, every
    /// pod's IP). `None`: the listen address, or 127.0.0.1 if that is unspecified.
    pub node_ip: Option<IpAddr>,
    /// How often the Ready condition's heartbeat is refreshed.
    pub heartbeat_interval: Duration,
    /// The `pods` capacity advertised to the scheduler.
    pub max_pods: u32,
    /// Extra labels for the Node, on top of the `kubernetes.io/*` ones.
    pub labels: BTreeMap<String, String>,
}

impl Default for AgentConfig {
    fn default() -> AgentConfig {
        AgentConfig {
            node_name: default_node_name(),
            data_dir: PathBuf::from("skiff-data/node"),
            listen_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            node_ip: None,
            heartbeat_interval: Duration::from_secs(10),
            max_pods: 110,
            labels: BTreeMap::new(),
        }
    }
}

/// The host's name in Node-name form, or `skiff-node` when it is not usable.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim().to_ascii_lowercase();
    if is_dns_subdomain(&host) {
        host
    } else {
        "skiff-node".to_string()
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "node_name {0:?} is not a valid node name (lowercase DNS subdomain, at most 253 characters)"
    )]
    NodeName(String),
    #[error("data_dir must not be empty")]
    DataDir,
    #[error("heartbeat_interval must be positive")]
    HeartbeatInterval,
    #[error("max_pods must be positive")]
    MaxPods,
    #[error("node_ip must be a specific address, not {0}")]
    NodeIp(IpAddr),
}

impl AgentConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_dns_subdomain(&self.node_name) {
            return Err(ConfigError::NodeName(self.node_name.clone()));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::DataDir);
        }
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::HeartbeatInterval);
        }
        if self.max_pods == 0 {
            return Err(ConfigError::MaxPods);
        }
        if let Some(ip) = self.node_ip
            && ip.is_unspecified()
        {
            return Err(ConfigError::NodeIp(ip));
        }
        Ok(())
    }

    /// The address the node advertises, given where its server is listening.
    pub fn advertised_ip(&self) -> IpAddr {
        match self.node_ip {
            Some(ip) => ip,
            None if self.listen_addr.ip().is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => self.listen_addr.ip(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = AgentConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.advertised_ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn rejects_bad_values() {
        let bad_name = AgentConfig {
            node_name: "Node_1".into(),
            ..AgentConfig::default()
        };
        assert_eq!(
            bad_name.validate(),
            Err(ConfigError::NodeName("Node_1".into()))
        );
        let no_heartbeat = AgentConfig {
            heartbeat_interval: Duration::ZERO,
            ..AgentConfig::default()
        };
        assert_eq!(no_heartbeat.validate(), Err(ConfigError::HeartbeatInterval));
        let unspecified = AgentConfig {
            node_ip: Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            ..AgentConfig::default()
        };
        assert!(unspecified.validate().is_err());
    }

    #[test]
    fn advertises_the_listen_ip_unless_told_otherwise() {
        let config = AgentConfig {
            listen_addr: "10.0.0.5:10250".parse().unwrap(),
            ..AgentConfig::default()
        };
        assert_eq!(
            config.advertised_ip(),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
        let any = AgentConfig {
            listen_addr: "0.0.0.0:10250".parse().unwrap(),
            ..AgentConfig::default()
        };
        assert_eq!(any.advertised_ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}
