//! The parts of OCI (and Docker v2) manifests a Wasm pull needs: which document
//! an answer is, the `wasi/wasm` entry of an index, and the one Wasm layer.

use serde::Deserialize;

use super::error::RegistryError;
use super::reference::is_sha256_digest;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What the manifest endpoint is asked to return, in order of preference.
pub(crate) const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The layer of the Wasm OCI artifact layout (`wasm-to-oci`, runwasi, Spin).
pub(crate) const WASM_CONTENT_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// The layer of the CNCF TAG Runtime layout (`wkg`, `oras`), whose config is
/// `application/vnd.wasm.config.v0+json`.
pub(crate) const WASM_LAYER: &str = "application/wasm";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    pub(crate) platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Platform {
    pub(crate) architecture: String,
    pub(crate) os: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    media_type: Option<String>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
}

/// A manifest endpoint's answer, told apart by its media type.
pub(crate) enum Parsed {
    /// An image index: the descriptor of its `wasi/wasm` manifest.
    Index(Descriptor),
    /// An image manifest: its one Wasm layer.
    Manifest(Descriptor),
}

/// Parses a manifest or index whose bytes hash to `digest`. The media type comes
/// from the document, else from the response's `Content-Type`.
pub(crate) fn parse(
    bytes: &[u8],
    content_type: Option<&str>,
    digest: &str,
) -> Result<Parsed, RegistryError> {
    let document: Document =
        serde_json::from_slice(bytes).map_err(|source| RegistryError::Manifest {
            digest: digest.to_string(),
            source,
        })?;
    let media_type = document
        .media_type
        .as_deref()
        .or(content_type.map(|t| t.split(';').next().unwrap_or_default().trim()))
        .unwrap_or(if document.manifests.is_some() {
            OCI_INDEX
        } else {
            OCI_MANIFEST
        });
    let checked = |d: Descriptor| {
        if is_sha256_digest(&d.digest) {
            Ok(d)
        } else {
            Err(RegistryError::BadDigest {
                manifest: digest.to_string(),
                digest: d.digest,
            })
        }
    };
    match media_type {
        OCI_INDEX | DOCKER_LIST => {
            let entries = document.manifests.unwrap_or_default();
            let platforms = entries
                .iter()
                .map(|d| match &d.platform {
                    Some(p) => format!("{}/{}", p.os, p.architecture),
                    None => "(no platform)".to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            let wasm = entries.into_iter().find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "wasi" && p.architecture == "wasm")
            });
            match wasm {
                Some(entry) => checked(entry).map(Parsed::Index),
                None => Err(RegistryError::NoWasmPlatform {
                    digest: digest.to_string(),
                    platforms,
                }),
            }
        }
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let layers = document.layers;
            let names = || {
                let names: Vec<_> = layers.iter().map(|l| l.media_type.as_str()).collect();
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            };
            let wasm: Vec<&Descriptor> = layers
                .iter()
                .filter(|l| matches!(l.media_type.as_str(), WASM_CONTENT_LAYER | WASM_LAYER))
                .collect();
            match wasm.as_slice() {
                [layer] => checked((*layer).clone()).map(Parsed::Manifest),
                [] => Err(RegistryError::NoWasmLayer {
                    digest: digest.to_string(),
                    layers: names(),
                }),
                many => Err(RegistryError::ManyWasmLayers {
                    digest: digest.to_string(),
                    count: many.len(),
                }),
            }
        }
        other => Err(RegistryError::MediaType {
            digest: digest.to_string(),
            media_type: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn manifest(layers: &[&str]) -> Vec<u8> {
        let layers: Vec<_> = layers
            .iter()
            .map(|t| serde_json::json!({"mediaType": t, "digest": D, "size": 8}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": D, "size": 2},
            "layers": layers,
        }))
        .unwrap()
    }

    #[test]
    fn finds_the_wasm_layer_of_both_layouts() {
        for media_type in [WASM_CONTENT_LAYER, WASM_LAYER] {
            let Parsed::Manifest(layer) = parse(&manifest(&[media_type]), None, "m").unwrap()
            else {
                panic!("not a manifest");
            };
            assert_eq!(layer.media_type, media_type);
        }
    }

    #[test]
    fn refuses_container_images_and_ambiguous_artifacts() {
        let tar = "application/vnd.oci.image.layer.v1.tar+gzip";
        let err = parse(&manifest(&[tar]), None, "m").err().unwrap();
        assert!(matches!(err, RegistryError::NoWasmLayer { .. }), "{err}");
        assert!(err.to_string().contains(tar));
        let err = parse(&manifest(&[WASM_LAYER, WASM_LAYER]), None, "m")
            .err()
            .unwrap();
        assert!(matches!(
            err,
            RegistryError::ManyWasmLayers { count: 2, .. }
        ));
        let err = parse(b"{}", Some("text/html"), "m").err().unwrap();
        assert!(matches!(err, RegistryError::MediaType { .. }), "{err}");
    }

    #[test]
    fn picks_the_wasi_wasm_entry_of_an_index() {
        let entry = |os: &str, arch: &str| {
            serde_json::json!({"mediaType": OCI_MANIFEST, "digest": D, "size": 1,
                "platform": {"os": os, "architecture": arch}})
        };
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            entry("linux", "amd64"), entry("wasi", "wasm")]});
        let bytes = serde_json::to_vec(&index).unwrap();
        let Parsed::Index(chosen) = parse(&bytes, Some(OCI_INDEX), "i").unwrap() else {
            panic!("not an index");
        };
        assert_eq!(chosen.platform.unwrap().os, "wasi");

        let linux_only =
            serde_json::json!({"mediaType": OCI_INDEX, "manifests": [entry("linux", "amd64")]});
        let err = parse(&serde_json::to_vec(&linux_only).unwrap(), None, "i")
            .err()
            .unwrap();
        assert!(err.to_string().contains("linux/amd64"), "{err}");
    }
}
