//! TLS for Ingress: the certificate for a connection is chosen by its SNI
//! name from the `spec.tls` entries of the Ingresses the gateway serves
//! (`hosts`, exact or `*.` wildcard one label deep, and `secretName`, a
//! `kubernetes.io/tls` Secret in the Ingress's namespace with PEM `tls.crt`
//! and `tls.key`). The gateway's one port takes both: a connection whose
//! first byte starts a TLS handshake (0x16) is TLS, anything else plain HTTP.
//! ALPN offers `h2` and `http/1.1`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::networking::v1::Ingress;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::cache::Caches;
use crate::route::{serves, split_host};

/// The first byte of a TLS record carrying a handshake.
pub const HANDSHAKE: u8 = 0x16;

/// The server configuration: certificates from Ingress Secrets, ring crypto
/// (chosen here, so no process-wide default provider is needed).
pub fn server_config(caches: Caches) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(IngressCerts {
            caches,
            parsed: Mutex::default(),
        }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `(namespace, secret name)` of the Secret for `host` among `ingresses`'
/// TLS entries: an exact host wins over a wildcard; then the oldest Ingress.
pub fn secret_for(host: &str, ingresses: &[Arc<Ingress>]) -> Option<(String, String)> {
    let mut ingresses: Vec<&Arc<Ingress>> = ingresses.iter().filter(|i| serves(i)).collect();
    ingresses.sort_by(|a, b| {
        (&a.metadata.creation_timestamp, &a.metadata.name)
            .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
    });
    let wildcard = host.split_once('.').map(|(_, rest)| format!("*.{rest}"));
    for exact in [true, false] {
        for ingress in &ingresses {
            for tls in ingress.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
                let Some(secret) = &tls.secret_name else {
                    continue;
                };
                let hit = tls.hosts.iter().flatten().any(|h| {
                    let h = h.to_ascii_lowercase();
                    if exact {
                        h == host
                    } else {
                        Some(&h) == wildcard.as_ref()
                    }
                });
                if hit {
                    let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
                    return Some((namespace, secret.clone()));
                }
            }
        }
    }
    None
}

/// Why a Secret's certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BadCert {
    #[error("Secret {0} not found")]
    NoSecret(String),
    #[error("Secret {secret} has no {key}")]
    Missing { secret: String, key: &'static str },
    #[error("Secret {secret}: {key} is not PEM: {reason}")]
    Pem {
        secret: String,
        key: &'static str,
        reason: String,
    },
    #[error("Secret {secret}: tls.key cannot sign")]
    Key {
        secret: String,
        #[source]
        source: rustls::Error,
    },
}

/// A certificate and key from PEM.
pub fn certified_key(secret: &str, crt: &[u8], key: &[u8]) -> Result<CertifiedKey, BadCert> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<_, _>>()
        .map_err(|e| BadCert::Pem {
            secret: secret.into(),
            key: "tls.crt",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(BadCert::Missing {
            secret: secret.into(),
            key: "tls.crt",
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| BadCert::Pem {
        secret: secret.into(),
        key: "tls.key",
        reason: e.to_string(),
    })?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| BadCert::Key {
            secret: secret.into(),
            source,
        })?;
    Ok(CertifiedKey::new(certs, signing))
}

/// A Secret's resourceVersion and the key parsed from it.
type Parsed = (Option<String>, Arc<CertifiedKey>);

struct IngressCerts {
    caches: Caches,
    /// Parsed keys by `ns/secret`, with the Secret's resourceVersion.
    parsed: Mutex<HashMap<String, Parsed>>,
}

impl fmt::Debug for IngressCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IngressCerts")
    }
}

impl IngressCerts {
    fn load(&self, namespace: &str, name: &str) -> Result<Arc<CertifiedKey>, BadCert> {
        let key = format!("{namespace}/{name}");
        let secret = self
            .caches
            .secret(namespace, name)
            .ok_or_else(|| BadCert::NoSecret(key.clone()))?;
        let version = secret.metadata.resource_version.clone();
        if let Some((seen, parsed)) = self.parsed.lock().expect("tls lock").get(&key)
            && *seen == version
        {
            return Ok(Arc::clone(parsed));
        }
        let data = secret.data.clone().unwrap_or_default();
        let field = |field: &'static str| {
            data.get(field)
                .map(|b| b.0.clone())
                .ok_or(BadCert::Missing {
                    secret: key.clone(),
                    key: field,
                })
        };
        let parsed = Arc::new(certified_key(&key, &field("tls.crt")?, &field("tls.key")?)?);
        self.parsed
            .lock()
            .expect("tls lock")
            .insert(key, (version, Arc::clone(&parsed)));
        Ok(parsed)
    }
}

impl ResolvesServerCert for IngressCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            tracing::info!("TLS connection without a server name (SNI) refused");
            return None;
        };
        let (host, _) = split_host(name);
        let ingresses = self.caches.ingresses.state();
        let Some((namespace, secret)) = secret_for(&host, &ingresses) else {
            tracing::info!(
                host,
                "TLS connection refused: no Ingress has a tls entry for it"
            );
            return None;
        };
        match self.load(&namespace, &secret) {
            Ok(key) => Some(key),
            Err(err) => {
                tracing::warn!(host, error = %err, "TLS connection refused");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(name: &str, created: &str, tls: serde_json::Value) -> Arc<Ingress> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
                "spec": {"tls": tls}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn secrets_by_host_exact_over_wildcard() {
        let ingresses = [
            ingress(
                "wild",
                "2024-01-01T00:00:00Z",
                json!([{"hosts": ["*.example.com"], "secretName": "wild"}]),
            ),
            ingress(
                "exact",
                "2024-02-01T00:00:00Z",
                json!([{"hosts": ["a.example.com", "b.example.com"], "secretName": "ab"}]),
            ),
        ];
        let found = |host| secret_for(host, &ingresses).map(|(_, s)| s);
        assert_eq!(found("a.example.com").as_deref(), Some("ab"));
        assert_eq!(found("c.example.com").as_deref(), Some("wild"));
        assert_eq!(found("x.c.example.com"), None);
        assert_eq!(found("example.org"), None);
    }

    #[test]
    fn pem_errors_name_the_secret_and_key() {
        let err = certified_key("ns/s", b"not pem", b"").unwrap_err();
        assert_eq!(err.to_string(), "Secret ns/s has no tls.crt");
        let crt = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = certified_key("ns/s", crt, b"junk").unwrap_err();
        assert!(err.to_string().starts_with("Secret ns/s: tls.key"), "{err}");
    }
}
