//! Registry credentials for a pull, from the `.dockerconfigjson` documents of
//! the pod's `imagePullSecrets`.

use base64::Engine;
use bollard::auth::DockerCredentials;
use serde::Deserialize;

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    username: Option<String>,
    password: Option<String>,
    /// base64 of `user:password`.
    auth: Option<String>,
    identitytoken: Option<String>,
    registrytoken: Option<String>,
}

/// The registry host of an image reference, as Docker reads it: the first path
/// component if it looks like a host (has a `.` or `:`, or is `localhost`),
/// else Docker Hub.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// A config key names `registry` when its host part (scheme and path stripped) does;
/// Docker Hub is also stored as `https://index.docker.io/v1/`.
fn names(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    host == registry
        || (registry == "docker.io" && matches!(host, "index.docker.io" | "registry-1.docker.io"))
}

/// The first credentials for the image's registry among `configs` (documents that
/// do not parse are skipped with a warning, as kubelet does).
pub fn credentials_for(image: &str, configs: &[Vec<u8>]) -> Option<DockerCredentials> {
    let registry = registry_of(image);
    for config in configs {
        let parsed: DockerConfig = match serde_json::from_slice(config) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::warn!(%image, %error, "ignoring an image pull secret that is not a docker config");
                continue;
            }
        };
        let Some((key, entry)) = parsed.auths.iter().find(|(key, _)| names(key, registry)) else {
            continue;
        };
        let (mut username, mut password) = (entry.username.clone(), entry.password.clone());
        if let Some(auth) = &entry.auth
            && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(auth)
            && let Ok(text) = String::from_utf8(decoded)
            && let Some((user, pass)) = text.split_once(':')
        {
            username.get_or_insert_with(|| user.to_string());
            password.get_or_insert_with(|| pass.to_string());
        }
        return Some(DockerCredentials {
            username,
            password,
            serveraddress: Some(key.clone()),
            identitytoken: entry.identitytoken.clone(),
            registrytoken: entry.registrytoken.clone(),
            ..DockerCredentials::default()
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_are_read_like_docker() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("library/busybox:1"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("ghcr.io/x/y"), "ghcr.io");
        assert_eq!(registry_of("localhost/x"), "localhost");
    }

    #[test]
    fn credentials_come_from_the_matching_auth_entry() {
        let config =
            br#"{"auths":{"other.io":{"auth":"eDp5"},"127.0.0.1:5000":{"auth":"dXNlcjpwYXNz"}}}"#;
        let creds = credentials_for(
            "127.0.0.1:5000/a:1",
            &[b"not json".to_vec(), config.to_vec()],
        )
        .expect("credentials");
        assert_eq!(creds.username.as_deref(), Some("user"));
        assert_eq!(creds.password.as_deref(), Some("pass"));
        assert_eq!(creds.serveraddress.as_deref(), Some("127.0.0.1:5000"));
        let hub = br#"{"auths":{"https://index.docker.io/v1/":{"username":"u","password":"p"}}}"#;
        assert!(credentials_for("busybox", &[hub.to_vec()]).is_some());
        assert!(credentials_for("ghcr.io/x", &[hub.to_vec()]).is_none());
    }
}
