//! What can go wrong, split by the step that failed so the node agent can map each
//! to the right container state.

use std::path::PathBuf;

/// Boxed so the public API does not name wasmtime's error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Creating the runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid wasm runtime config: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("cannot create the wasmtime engine")]
    Engine {
        #[source]
        source: BoxError,
    },
    #[error("cannot add the WASI host functions to the {world} linker")]
    Linker {
        world: &'static str,
        #[source]
        source: BoxError,
    },
    #[error("cannot create the compile cache directory {path}")]
    CacheDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the epoch ticker thread")]
    Ticker {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the https client")]
    HttpClient {
        #[source]
        source: reqwest::Error,
    },
}

/// Turning an image reference into a runnable [`crate::Program`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The artifact could not be fetched: the agent reports `ErrImagePull`.
    #[error("cannot fetch image {image:?}")]
    Fetch {
        image: String,
        #[source]
        source: FetchError,
    },
    /// The bytes are not a program this node can run: `CreateContainerError`.
    #[error("image {image:?} is not a runnable wasm program: {message}")]
    Invalid { image: String, message: String },
    /// The reference names no source this node knows: `ErrImagePull`.
    #[error(
        "image {image:?} is neither a registry reference nor a file:// or https:// URL of a .wasm artifact"
    )]
    UnsupportedReference { image: String },
    /// `imagePullPolicy: Never` and the node has not pulled it: `ErrImageNeverPull`.
    #[error("image {image:?} is not present on the node and the pull policy is Never")]
    NotPresent { image: String },
    /// A failure of the node itself (a panicked compile task), not of the image.
    #[error("internal error preparing image {image:?}: {message}")]
    Internal { image: String, message: String },
}

impl PrepareError {
    /// True when pulling the image failed (Kubernetes' `ErrImagePull`), as opposed to
    /// a pulled image that cannot run.
    pub fn is_pull_error(&self) -> bool {
        matches!(
            self,
            PrepareError::Fetch { .. }
                | PrepareError::UnsupportedReference { .. }
                | PrepareError::NotPresent { .. }
        )
    }

    /// True when the registry answered with an ordinary container image (no
    /// Wasm layer, or an index without a `wasi/wasm` entry): the image is fine,
    /// just not for this runtime.
    pub fn is_container_image(&self) -> bool {
        use crate::oci::RegistryError;
        matches!(
            self,
            PrepareError::Fetch {
                source: FetchError::Registry {
                    source: RegistryError::NoWasmLayer { .. }
                        | RegistryError::NoWasmPlatform { .. }
                },
                ..
            }
        )
    }
}

/// Why fetching an artifact's bytes failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("request failed")]
    Http {
        #[source]
        source: reqwest::Error,
    },
    #[error("server answered {status}")]
    Status { status: reqwest::StatusCode },
    #[error("artifact is larger than the {limit} byte limit")]
    TooLarge { limit: u64 },
    #[error("pulling from the registry failed")]
    Registry {
        #[source]
        source: crate::oci::RegistryError,
    },
    #[error("cannot read the stored layer {digest}")]
    Stored {
        digest: String,
        #[source]
        source: std::io::Error,
    },
}

/// Starting a prepared program failed before any guest code ran to completion.
/// How a started guest ended (including traps) is an [`crate::Exit`], not an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot instantiate program {digest}")]
    Instantiate {
        digest: String,
        #[source]
        source: BoxError,
    },
    /// `run` was asked to run an HTTP handler, or `serve` to serve a command.
    #[error("program {digest} is a {kind:?} program; this needs {needed}")]
    WrongKind {
        digest: String,
        kind: crate::ProgramKind,
        needed: &'static str,
    },
    /// An HTTP program was given nothing to listen on.
    #[error("program {digest} serves HTTP but was given no listener (declare a containerPort)")]
    NoListener { digest: String },
    /// A mount could not be granted (its host directory cannot be opened).
    #[error("cannot set up the files of program {digest}")]
    Sandbox {
        digest: String,
        #[source]
        source: BoxError,
    },
}
