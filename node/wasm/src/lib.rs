//! skiff-wasm: the node's Wasm driver. It turns an image reference into a compiled
//! [`Program`] and runs it as a pod's container, following spin-core's shape:
//!
//! - one wasmtime [`wasmtime::Engine`] per node ([`WasmRuntime`]), with the pooling
//!   allocator and epoch interruption (a ticker thread advances the epoch; guests
//!   yield to tokio at every tick, so a busy guest never pins a worker and can be
//!   cancelled);
//! - each artifact fetched, compiled once and cached by its sha256 digest, in memory
//!   and on disk under `cache_dir/<engine hash>/<digest>.cwasm`, then linked once
//!   (an `InstancePre` per program);
//! - a fresh `Store` per run, with capabilities granted one by one through
//!   `WasiCtxBuilder`: args, env, stdout and stderr; nothing else yet.
//!
//! Programs are `wasi:cli/command` components (wasm32-wasip2) or WASI preview-1
//! command modules (wasm32-wasip1), run with [`WasmRuntime::run`]; or
//! `wasi:http/proxy` components, served with [`WasmRuntime::serve`] on listeners
//! the caller binds, with a fresh instance per request and no outbound HTTP.
//! Images are registry references (Wasm OCI artifacts, pulled with the pod's pull
//! policy and credentials through [`WasmRuntime::prepare_with`]), `file:///abs/path.wasm`
//! or `https://…` URLs. See `docs/wasm-node.md`.
//!
//! ```no_run
//! use skiff_wasm::{Exit, Process, RuntimeConfig, Sandbox, WasmRuntime};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = WasmRuntime::new(RuntimeConfig {
//!     cache_dir: "/var/lib/skiff/wasm-cache".into(),
//!     ..RuntimeConfig::default()
//! })?;
//! let program = runtime
//!     .prepare("file:///usr/local/share/skiff/examples/hello.wasm")
//!     .await?;
//! let process = Process {
//!     args: vec!["hello".into(), "world".into()],
//!     env: vec![("GREETING".into(), "ahoy".into())],
//!     stdout: Box::new(tokio::io::stdout()),
//!     stderr: Box::new(tokio::io::stderr()),
//!     sandbox: Sandbox::default(),
//! };
//! let cancel = CancellationToken::new();
//! // Elsewhere: `cancel.cancel()` stops the guest and the run returns `Exit::Killed`.
//! match runtime.run(&program, process, cancel).await? {
//!     Exit::Code(code) => println!("exited with {code}"),
//!     Exit::Trap(message) => println!("trapped: {message}"),
//!     Exit::Killed => println!("stopped"),
//!     Exit::OutOfMemory(message) => println!("out of memory: {message}"),
//! }
//! # Ok(())
//! # }
//! ```

mod artifact;
mod config;
mod cpu;
mod egress;
mod epoch;
mod error;
mod fetch;
mod http;
mod http_handler;
mod http_outbound;
mod http_output;
mod meter;
mod oci;
mod program;
mod run;
mod runtime;
mod services;

pub use config::RuntimeConfig;
pub use egress::{ALLOW_OUTBOUND_ANNOTATION, Egress, EgressError};
pub use error::{BoxError, FetchError, PrepareError, RunError, RuntimeError};
pub use http::HttpService;
pub use meter::{Meter, MeterBook, Usage};
pub use oci::{
    Credentials, CredentialsError, Prepared, PullOptions, PullPolicy, RegistryAuth, RegistryError,
};
pub use program::{Program, ProgramKind};
pub use run::{Exit, InputStream, Mount, Process, Sandbox};
pub use runtime::{RunExtras, RuntimeStats, WasmRuntime};
pub use services::{CLUSTER_DOMAIN, PodIdentity, ServiceNames};
