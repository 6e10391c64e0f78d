//! Pulling Wasm from OCI registries, and the pull options every image source
//! honours.
//!
//! A reference without a scheme (`registry/repo:tag`, `registry/repo@sha256:…`,
//! `name` for Docker Hub) is pulled over the distribution API: the manifest (an
//! image index is narrowed to its `wasi/wasm` entry), then its one Wasm layer —
//! `application/vnd.wasm.content.layer.v1+wasm`, or the CNCF layout's
//! `application/wasm` under an `application/vnd.wasm.config.v0+json` config.
//! Every document and blob is checked against its digest. The manifest digest
//! becomes the image ID; the layer digest names the compiled program, so two tags
//! of one component share a compile.

mod client;
mod credentials;
mod error;
mod manifest;
mod reference;
mod store;

use std::path::Path;

pub use credentials::{Credentials, CredentialsError, RegistryAuth};
pub use error::RegistryError;
pub(crate) use reference::Reference;

use crate::error::{FetchError, PrepareError};
use crate::program::Program;
use client::Session;
use manifest::Parsed;
use store::{Entry, ImageStore};

/// Kubernetes' `imagePullPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Ask the registry on every prepare; a digest already compiled is not
    /// downloaded or compiled again.
    Always,
    /// Use what the node pulled before (also after a restart); pull otherwise.
    #[default]
    IfNotPresent,
    /// Use only what the node pulled before; fail with [`PrepareError::NotPresent`].
    Never,
}

impl PullPolicy {
    /// Parses the Kubernetes spelling (`Always`, `IfNotPresent`, `Never`).
    pub fn parse(text: &str) -> Option<PullPolicy> {
        match text {
            "Always" => Some(PullPolicy::Always),
            "IfNotPresent" => Some(PullPolicy::IfNotPresent),
            "Never" => Some(PullPolicy::Never),
            _ => None,
        }
    }

    /// The API server's default when a container names none: `Always` for a
    /// registry reference tagged `latest` (or untagged), else `IfNotPresent`.
    pub fn default_for(image: &str) -> PullPolicy {
        let latest = !image.contains("://")
            && Reference::parse(image)
                .is_some_and(|r| r.digest.is_none() && r.tag.as_deref() == Some("latest"));
        if latest {
            PullPolicy::Always
        } else {
            PullPolicy::IfNotPresent
        }
    }
}

/// How to pull: the policy and the credentials from the pod's `imagePullSecrets`.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    pub policy: PullPolicy,
    pub credentials: Credentials,
}

/// A program ready to run, and the ID of the image it came from: the manifest as
/// `registry/repo@sha256:…` for registry images, the artifact's `sha256:` digest
/// for `file://` and `https://` ones. This is what a pod status shows as `imageID`.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub program: Program,
    pub image_id: String,
}

/// The outcome of a registry pull: what to compile, and the bytes when they were
/// downloaded now (else they are in the image store).
pub(crate) struct Pulled {
    pub(crate) image_id: String,
    pub(crate) digest: String,
    pub(crate) bytes: Option<Vec<u8>>,
}

/// Registry pulls with the node's image store.
pub(crate) struct Registry {
    store: ImageStore,
}

impl Registry {
    pub(crate) fn open(cache_dir: &Path) -> std::io::Result<Registry> {
        Ok(Registry {
            store: ImageStore::open(cache_dir)?,
        })
    }

    /// Resolves `reference` as `options.policy` says, downloading the layer only
    /// when the node does not have it.
    pub(crate) async fn pull(
        &self,
        http: &reqwest::Client,
        image: &str,
        reference: &Reference,
        options: &PullOptions,
        limit: u64,
    ) -> Result<Pulled, PrepareError> {
        let cached = || {
            self.store.lookup(reference).map(|entry| Pulled {
                image_id: reference.pinned(&entry.manifest),
                digest: entry.content,
                bytes: None,
            })
        };
        match options.policy {
            PullPolicy::Never => {
                return cached().ok_or_else(|| PrepareError::NotPresent {
                    image: image.to_string(),
                });
            }
            PullPolicy::IfNotPresent => {
                if let Some(pulled) = cached() {
                    return Ok(pulled);
                }
            }
            PullPolicy::Always => {}
        }
        let credentials = options.credentials.for_registry(&reference.registry);
        let mut session = Session::new(http, reference, credentials);
        self.download(&mut session, reference, limit)
            .await
            .map_err(|source| PrepareError::Fetch {
                image: image.to_string(),
                source: FetchError::Registry { source },
            })
    }

    async fn download(
        &self,
        session: &mut Session<'_>,
        reference: &Reference,
        limit: u64,
    ) -> Result<Pulled, RegistryError> {
        let top = session.manifest(reference.target()).await?;
        let layer = match manifest::parse(&top.bytes, top.content_type.as_deref(), &top.digest)? {
            Parsed::Manifest(layer) => layer,
            Parsed::Index(entry) => {
                let chosen = session.manifest(&entry.digest).await?;
                match manifest::parse(
                    &chosen.bytes,
                    chosen.content_type.as_deref(),
                    &chosen.digest,
                )? {
                    Parsed::Manifest(layer) => layer,
                    Parsed::Index(_) => {
                        return Err(RegistryError::MediaType {
                            digest: chosen.digest,
                            media_type: "an image index inside an image index".to_string(),
                        });
                    }
                }
            }
        };
        let entry = Entry {
            manifest: top.digest,
            content: layer.digest.clone(),
        };
        let bytes = if self.store.has_blob(&layer.digest) {
            None
        } else {
            Some(session.blob(&layer.digest, layer.size, limit).await?)
        };
        if let Err(error) = self.store.record(reference, &entry, bytes.as_deref()) {
            // The pull still worked; only a later IfNotPresent without the registry suffers.
            tracing::warn!(%error, %reference, "cannot remember pulled image");
        }
        tracing::info!(%reference, manifest = %entry.manifest, layer = %entry.content, downloaded = bytes.is_some(), "pulled image");
        Ok(Pulled {
            image_id: reference.pinned(&entry.manifest),
            digest: entry.content,
            bytes,
        })
    }

    /// The bytes of a layer pulled earlier.
    pub(crate) fn read_layer(&self, image: &str, digest: &str) -> Result<Vec<u8>, PrepareError> {
        self.store
            .read_blob(digest)
            .map_err(|source| PrepareError::Fetch {
                image: image.to_string(),
                source: FetchError::Stored {
                    digest: digest.to_string(),
                    source,
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_follows_kubernetes() {
        assert_eq!(PullPolicy::default_for("nginx"), PullPolicy::Always);
        assert_eq!(
            PullPolicy::default_for("reg.io/a:latest"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::default_for("reg.io/a:v1"),
            PullPolicy::IfNotPresent
        );
        let pinned =
            "reg.io/a@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(PullPolicy::default_for(pinned), PullPolicy::IfNotPresent);
        assert_eq!(
            PullPolicy::default_for("file:///a.wasm"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(PullPolicy::parse("Never"), Some(PullPolicy::Never));
        assert_eq!(PullPolicy::parse("never"), None);
    }
}
