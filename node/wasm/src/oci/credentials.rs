//! Registry credentials, as Kubernetes stores them in `kubernetes.io/dockerconfigjson`
//! Secrets (`{"auths": {"<registry>": {"auth": base64("user:password")}}}`) and in
//! the older `kubernetes.io/dockercfg` form (the same map without `auths`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Credentials by registry host (`host[:port]`, `docker.io` for Docker Hub). When
/// several sources name the same registry, the first one added wins, like the
/// order of a pod's `imagePullSecrets`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    by_registry: BTreeMap<String, RegistryAuth>,
}

/// A docker config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("not a docker config JSON document")]
    Json {
        #[source]
        source: serde_json::Error,
    },
    #[error("the auth entry for {registry:?} is not base64 of \"user:password\"")]
    Auth { registry: String },
}

#[derive(Deserialize)]
struct DockerConfig {
    auths: Option<BTreeMap<String, DockerAuth>>,
    #[serde(flatten)]
    legacy: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl Credentials {
    /// Adds credentials for `registry` unless it already has some.
    pub fn insert(&mut self, registry: &str, auth: RegistryAuth) {
        self.by_registry
            .entry(registry_key(registry))
            .or_insert(auth);
    }

    /// Adds every entry of `other` whose registry has no credentials yet.
    pub fn extend(&mut self, other: Credentials) {
        for (registry, auth) in other.by_registry {
            self.by_registry.entry(registry).or_insert(auth);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_registry.is_empty()
    }

    /// Parses the `.dockerconfigjson` (or `.dockercfg`) value of a pull Secret.
    pub fn from_docker_config_json(bytes: &[u8]) -> Result<Credentials, CredentialsError> {
        let config: DockerConfig =
            serde_json::from_slice(bytes).map_err(|source| CredentialsError::Json { source })?;
        let entries = match config.auths {
            Some(auths) => auths,
            None => {
                let legacy = serde_json::Value::Object(config.legacy.into_iter().collect());
                serde_json::from_value(legacy)
                    .map_err(|source| CredentialsError::Json { source })?
            }
        };
        let mut credentials = Credentials::default();
        for (registry, entry) in entries {
            let auth = match (entry.username, entry.password, entry.auth) {
                (Some(username), Some(password), _) => RegistryAuth { username, password },
                (_, _, Some(encoded)) => {
                    decode_auth(&encoded).ok_or_else(|| CredentialsError::Auth {
                        registry: registry.clone(),
                    })?
                }
                // An entry with neither (an identity token only) gives nothing to send.
                _ => continue,
            };
            credentials.insert(&registry, auth);
        }
        Ok(credentials)
    }

    pub(crate) fn for_registry(&self, registry: &str) -> Option<&RegistryAuth> {
        self.by_registry.get(&registry_key(registry))
    }
}

/// Docker config keys come as `https://index.docker.io/v1/`, `host:port` or
/// `http://host:port/path`; references name only `host[:port]`.
fn registry_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_ascii_lowercase(),
    }
}

fn decode_auth(encoded: &str) -> Option<RegistryAuth> {
    let text = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(RegistryAuth {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// Standard base64 with optional padding; small enough not to need a crate.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let text = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut bits = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            bits |= value(c)? << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("a*bc").is_none());
    }

    #[test]
    fn parses_docker_config_json() {
        let json = br#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
            "127.0.0.1:5000": {"username": "u", "password": "p:w", "auth": "ignored"},
            "http://REG.example:8443/v2/": {"auth": "YTpiOmM="},
            "token-only.example": {"identitytoken": "x"}
        }}"#;
        let c = Credentials::from_docker_config_json(json).unwrap();
        let auth = |u: &str, p: &str| RegistryAuth {
            username: u.into(),
            password: p.into(),
        };
        assert_eq!(c.for_registry("docker.io"), Some(&auth("user", "pass")));
        assert_eq!(c.for_registry("127.0.0.1:5000"), Some(&auth("u", "p:w")));
        assert_eq!(c.for_registry("reg.example:8443"), Some(&auth("a", "b:c")));
        assert_eq!(c.for_registry("token-only.example"), None);
        assert_eq!(c.for_registry("other.example"), None);
        assert!(!format!("{c:?}").contains("pass"), "Debug hides secrets");
    }

    #[test]
    fn parses_legacy_dockercfg_and_keeps_the_first_source() {
        let mut first =
            Credentials::from_docker_config_json(br#"{"r.example": {"auth": "YTpi"}}"#).unwrap();
        let second =
            Credentials::from_docker_config_json(br#"{"auths": {"r.example": {"auth": "Yzpk"}}}"#)
                .unwrap();
        first.extend(second);
        assert_eq!(first.for_registry("r.example").unwrap().username, "a");
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(matches!(
            Credentials::from_docker_config_json(b"not json"),
            Err(CredentialsError::Json { .. })
        ));
        assert!(matches!(
            Credentials::from_docker_config_json(br#"{"auths": {"r": {"auth": "bm9jb2xvbg=="}}}"#),
            Err(CredentialsError::Auth { .. })
        ));
    }
}
