//! Why a pull from an OCI registry failed.

/// One failed step of talking to a registry. Every variant is an `ErrImagePull`.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("request to {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("manifest {reference:?} not found in {repository}")]
    ManifestNotFound {
        repository: String,
        reference: String,
    },
    #[error("{registry} requires authentication and {reason}")]
    Unauthorized { registry: String, reason: String },
    #[error("cannot get a token from {realm}")]
    Token {
        realm: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("token endpoint {realm} sent no usable token")]
    TokenBody { realm: String },
    #[error("{what} should have digest {expected} but has {actual}")]
    DigestMismatch {
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{what} should be {expected} bytes but is {actual}")]
    SizeMismatch {
        what: &'static str,
        expected: u64,
        actual: u64,
    },
    #[error("{what} is larger than the {limit} byte limit")]
    TooLarge { what: &'static str, limit: u64 },
    #[error("manifest {digest} is not valid JSON of a manifest or image index")]
    Manifest {
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "manifest {digest} has media type {media_type:?}, not an OCI/Docker image manifest or index"
    )]
    MediaType { digest: String, media_type: String },
    #[error("image index {digest} has no wasi/wasm entry (it lists: {platforms})")]
    NoWasmPlatform { digest: String, platforms: String },
    #[error("manifest {digest} has no wasm layer (its layers: {layers})")]
    NoWasmLayer { digest: String, layers: String },
    #[error("manifest {digest} has {count} wasm layers; only single-component artifacts run")]
    ManyWasmLayers { digest: String, count: usize },
    #[error("invalid digest {digest:?} in manifest {manifest}")]
    BadDigest { manifest: String, digest: String },
}
