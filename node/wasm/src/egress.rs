//! Which hosts a guest may reach. Nothing, unless the pod declares them; the node
//! agent takes the list from the pod annotation `skiff.dev/allow-outbound`:
//!
//! ```text
//! skiff.dev/allow-outbound: "api.example.com:443, *.internal.example:8080, 10.0.0.7, [::1]:9000"
//! ```
//!
//! Entries are separated by commas or whitespace. Each is a host name, a `*.`
//! wildcard for the names under a domain (not the domain itself), an IPv4 address
//! or a bracketed IPv6 address, with an optional `:port` (no port: any port).
//! A single `*` allows every host. Names are compared case-insensitively as the
//! guest wrote them (wasi-http) or after resolving them (wasi-sockets, see
//! [`Egress::permits_addr`]).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

/// The annotation a pod declares its outbound hosts in.
pub const ALLOW_OUTBOUND_ANNOTATION: &str = "skiff.dev/allow-outbound";

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// Lower-case name, `*.suffix`, `*`, or an IP address's text.
    host: String,
    /// `None`: any port.
    port: Option<u16>,
}

/// Why an allow-list does not parse; the text names the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid entry {entry:?}: {reason}")]
pub struct EgressError {
    pub entry: String,
    pub reason: &'static str,
}

impl AllowedHost {
    fn parse(entry: &str) -> Result<AllowedHost, EgressError> {
        let bad = |reason| EgressError {
            entry: entry.to_string(),
            reason,
        };
        if entry.contains("://") || entry.contains('/') {
            return Err(bad("give a host and optional port, not a URL"));
        }
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (ip, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            ip.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address inside [...]"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("expected ':port' after ']'"))?,
                ),
            };
            (ip.to_string(), port)
        } else {
            match entry.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (entry.to_string(), None),
            }
        };
        let port = match port {
            None => None,
            Some(text) => Some(
                text.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("the port must be a number in 1..=65535"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        let name = host.strip_prefix("*.").unwrap_or(&host);
        let valid_name = host == "*"
            || host.parse::<IpAddr>().is_ok()
            || (!name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                }));
        if !valid_name {
            return Err(bad("not a host name, '*.' wildcard or IP address"));
        }
        Ok(AllowedHost { host, port })
    }

    fn matches_name(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match self.host.strip_prefix('*') {
            Some("") => true,
            Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
            None => self.host == host,
        }
    }
}

/// A pod's outbound allow-list; the default allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress {
    allowed: Vec<AllowedHost>,
}

impl Egress {
    /// Parses the annotation's value (see the module docs).
    pub fn parse(text: &str) -> Result<Egress, EgressError> {
        let allowed = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|entry| !entry.is_empty())
            .map(AllowedHost::parse)
            .collect::<Result<_, _>>()?;
        Ok(Egress { allowed })
    }

    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    /// May the guest send an HTTP request to `host:port` (as written in the URL)?
    pub fn permits(&self, host: &str, port: u16) -> bool {
        self.allowed.iter().any(|a| a.matches_name(host, port))
    }

    /// May the guest connect a socket to `addr`? IP entries compare directly;
    /// name entries are resolved now (so they follow DNS changes). Wildcards other
    /// than `*` cannot be checked against an address and do not open sockets.
    pub async fn permits_addr(&self, addr: SocketAddr) -> bool {
        for allowed in &self.allowed {
            if allowed.port.is_some_and(|p| p != addr.port()) {
                continue;
            }
            if allowed.host == "*" {
                return true;
            }
            if let Ok(ip) = allowed.host.parse::<IpAddr>() {
                if ip == addr.ip() {
                    return true;
                }
                continue;
            }
            if allowed.host.starts_with("*.") {
                continue;
            }
            let Ok(found) = tokio::net::lookup_host((allowed.host.as_str(), addr.port())).await
            else {
                continue;
            };
            if found.into_iter().any(|a| a.ip() == addr.ip()) {
                return true;
            }
        }
        false
    }

    /// Grants TCP connections (and name lookups) to the allowed hosts; UDP and
    /// listening sockets stay off. An empty list grants nothing.
    pub(crate) fn grant_sockets(&self, builder: &mut WasiCtxBuilder) {
        if self.is_empty() {
            return;
        }
        let egress = Arc::new(self.clone());
        builder
            .allow_tcp(true)
            .allow_ip_name_lookup(true)
            .socket_addr_check(move |addr, use_| {
                let egress = Arc::clone(&egress);
                let check: Pin<Box<dyn Future<Output = bool> + Send + Sync>> =
                    Box::pin(async move {
                        match use_ {
                            SocketAddrUse::TcpConnect => {
                                let allowed = egress.permits_addr(addr).await;
                                if !allowed {
                                    tracing::info!(%addr, "outbound connection denied");
                                }
                                allowed
                            }
                            // The implicit bind of a connect uses the wildcard address.
                            SocketAddrUse::TcpBind => {
                                addr.ip().is_unspecified() && addr.port() == 0
                            }
                            _ => false,
                        }
                    });
                check
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_wildcards_addresses_and_ports() {
        let egress =
            Egress::parse("api.example.com:443, *.svc.local  10.0.0.7,[::1]:9000").unwrap();
        assert!(egress.permits("API.example.com", 443));
        assert!(!egress.permits("api.example.com", 80));
        assert!(egress.permits("db.svc.local", 5432));
        assert!(
            !egress.permits("svc.local", 80),
            "a wildcard is for names under it"
        );
        assert!(!egress.permits("evilsvc.local", 80));
        assert!(egress.permits("10.0.0.7", 1));
        assert!(egress.permits("[::1]", 9000));
        assert!(!egress.permits("example.org", 443));
        assert!(Egress::parse("*").unwrap().permits("anything", 1));
        assert!(Egress::default().is_empty());
        assert!(!Egress::default().permits("localhost", 80));
    }

    #[test]
    fn bad_entries_are_named() {
        for (text, entry) in [
            ("http://example.com", "http://example.com"),
            ("ok.example, bad host!", "host!"),
            ("example.com:0", "example.com:0"),
            ("example.com:http", "example.com:http"),
            ("[::1", "[::1"),
        ] {
            let error = Egress::parse(text).unwrap_err();
            assert_eq!(error.entry, entry, "{text}");
        }
    }

    #[tokio::test]
    async fn sockets_compare_addresses_and_resolved_names() {
        let egress = Egress::parse("127.0.0.1:8080 localhost:9090").unwrap();
        assert!(egress.permits_addr("127.0.0.1:8080".parse().unwrap()).await);
        assert!(!egress.permits_addr("127.0.0.1:8081".parse().unwrap()).await);
        assert!(egress.permits_addr("127.0.0.1:9090".parse().unwrap()).await);
        assert!(!egress.permits_addr("10.1.2.3:9090".parse().unwrap()).await);
    }
}
