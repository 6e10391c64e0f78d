//! OCI image references (`registry/repository:tag`, `…@sha256:…`), normalised the
//! way Docker and containerd do it: a first path component that looks like a host
//! (has a `.` or `:`, or is `localhost`) names the registry; anything else is on
//! Docker Hub, where one-component names live under `library/`.

use std::fmt;

/// Docker Hub's name in references and image IDs, and the host its API is served from.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// `host[:port]`, `docker.io` for Docker Hub.
    pub(crate) registry: String,
    pub(crate) repository: String,
    pub(crate) tag: Option<String>,
    /// `sha256:<hex>` when pinned by digest.
    pub(crate) digest: Option<String>,
}

impl Reference {
    /// Parses a reference without a scheme; `None` when it is not one.
    pub(crate) fn parse(image: &str) -> Option<Reference> {
        let (name, digest) = match image.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (image, None),
        };
        if let Some(digest) = digest
            && !is_sha256_digest(digest)
        {
            return None;
        }
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
            None => (name, None),
        };
        if let Some(tag) = tag
            && !is_tag(tag)
        {
            return None;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            Some(_) => (DOCKER_HUB.to_string(), name.to_string()),
            None => (DOCKER_HUB.to_string(), format!("library/{name}")),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        if !is_host(&registry) || !repository.split('/').all(is_path_component) {
            return None;
        }
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Some(Reference {
            registry,
            repository,
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// What to ask the registry's manifest endpoint for: the digest when pinned.
    pub(crate) fn target(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// `http://` for registries on loopback (containerd's insecure-localhost
    /// default), `https://` for all others.
    pub(crate) fn api_base(&self) -> String {
        let host = match self.registry.as_str() {
            DOCKER_HUB => DOCKER_HUB_API,
            other => other,
        };
        let scheme = if is_loopback(host) { "http" } else { "https" };
        format!("{scheme}://{host}")
    }

    /// `registry/repository@<manifest digest>`, what the pod status shows as `imageID`.
    pub(crate) fn pinned(&self, manifest_digest: &str) -> String {
        format!("{}/{}@{manifest_digest}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

pub(crate) fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1")
}

fn is_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    tag.len() <= 128
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

fn is_path_component(part: &str) -> bool {
    let bytes = part.as_bytes();
    !part.is_empty()
        && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
        && bytes[bytes.len() - 1].is_ascii_lowercase() | bytes[bytes.len() - 1].is_ascii_digit()
        && bytes.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(image: &str) -> Reference {
        Reference::parse(image).unwrap_or_else(|| panic!("{image} should parse"))
    }

    #[test]
    fn short_names_resolve_to_docker_hub() {
        let r = parse("nginx");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/nginx");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.api_base(), "https://registry-1.docker.io");
        assert_eq!(parse("bitnami/nginx:1.27").repository, "bitnami/nginx");
        assert_eq!(
            parse("index.docker.io/library/nginx:1").to_string(),
            "docker.io/library/nginx:1"
        );
    }

    #[test]
    fn registries_tags_and_digests() {
        let r = parse("127.0.0.1:5000/examples/hello:v1");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "examples/hello");
        assert_eq!(r.target(), "v1");
        assert_eq!(r.api_base(), "http://127.0.0.1:5000");

        let r = parse(&format!("localhost:5000/hello@{DIGEST}"));
        assert_eq!(r.tag, None);
        assert_eq!(r.target(), DIGEST);
        assert_eq!(r.api_base(), "http://localhost:5000");
        assert_eq!(r.pinned(DIGEST), format!("localhost:5000/hello@{DIGEST}"));

        let r = parse(&format!("ghcr.io/o/app:v2@{DIGEST}"));
        assert_eq!(r.target(), DIGEST, "the digest wins over the tag");
        assert_eq!(r.api_base(), "https://ghcr.io");
        assert_eq!(parse("localhost/app").registry, "localhost");
    }

    #[test]
    fn rejects_malformed_references() {
        for image in [
            "",
            "Upper/case",
            "a//b",
            "host.io/repo:bad tag",
            "repo@sha256:short",
            &format!("repo@md5:{}", &DIGEST[7..]),
            "repo:",
            "-lead",
        ] {
            assert_eq!(Reference::parse(image), None, "{image:?}");
        }
    }
}
