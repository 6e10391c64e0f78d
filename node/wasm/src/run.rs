//! Running a prepared program in a fresh store, with only the capabilities the pod
//! was granted.

use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::cli::AsyncStdoutStream;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use crate::error::RunError;
use crate::http_outbound::OutboundPolicy;
use crate::program::{ComponentState, ModuleState, Pre, Program, ProgramKind, boxed};

/// Most bytes one guest write may hand to the host writer at a time.
pub(crate) const OUTPUT_BUDGET: usize = 64 * 1024;

/// What one run of a program gets from the pod: argv, environment and where its
/// output goes. Nothing else is granted (no files, no network, no stdin).
pub struct Process {
    /// argv, argv[0] first.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Receives the guest's stdout as it is written; each guest flush is awaited.
    pub stdout: Box<dyn AsyncWrite + Send + Sync + Unpin>,
    pub stderr: Box<dyn AsyncWrite + Send + Sync + Unpin>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("args", &self.args)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Exit {
    /// The program exited: 0 when `main` returned, else the code it exited with.
    Code(i32),
    /// The program trapped (unreachable, out-of-bounds access, a Rust panic...).
    Trap(String),
    /// The run was cancelled by the caller.
    Killed,
}

pub(crate) struct RunLimits {
    pub(crate) max_memory_bytes: usize,
}

impl RunLimits {
    pub(crate) fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.max_memory_bytes)
            // Growing past the limit ends the run as a trap (the Wasm analogue of an
            // OOM kill) instead of handing the guest an allocation failure to ignore.
            .trap_on_grow_failure(true)
            .build()
    }
}

pub(crate) async fn run(
    engine: &Engine,
    limits: &RunLimits,
    program: &Program,
    process: Process,
    cancel: CancellationToken,
) -> Result<Exit, RunError> {
    let wasi = wasi_builder(process);
    let store_limits = limits.store_limits();
    let digest = program.digest();
    let run = async {
        match program.pre() {
            Pre::Component(pre) => {
                let mut wasi = wasi;
                let state =
                    ComponentState::new(wasi.build(), store_limits, OutboundPolicy::deny_all(None));
                let mut store = new_store(engine, state);
                let command = match pre.instantiate_async(&mut store).await {
                    Ok(command) => command,
                    Err(error) => return instantiate_failed(digest, error),
                };
                let ended = command.wasi_cli_run().call_run(&mut store).await;
                Ok(match ended {
                    Ok(Ok(())) => Exit::Code(0),
                    Ok(Err(())) => Exit::Code(1),
                    Err(error) => exit_from_error(digest, error),
                })
            }
            Pre::Http(_) => Err(RunError::WrongKind {
                digest: digest.to_owned(),
                kind: ProgramKind::HttpProxy,
                needed: "a wasi:cli/command component or a preview-1 module",
            }),
            Pre::Module(pre) => {
                let mut wasi = wasi;
                let state = ModuleState {
                    wasi: wasi.build_p1(),
                    limits: store_limits,
                };
                let mut store = new_store(engine, state);
                let instance = match pre.instantiate_async(&mut store).await {
                    Ok(instance) => instance,
                    Err(error) => return instantiate_failed(digest, error),
                };
                let start = instance
                    .get_typed_func::<(), ()>(&mut store, "_start")
                    .map_err(|e| RunError::Instantiate {
                        digest: digest.to_owned(),
                        source: boxed(e),
                    })?;
                Ok(match start.call_async(&mut store, ()).await {
                    Ok(()) => Exit::Code(0),
                    Err(error) => exit_from_error(digest, error),
                })
            }
        }
    };
    // The guest yields at every epoch tick, so this select sees cancellation within a
    // tick even when the guest never calls the host; dropping `run` drops the store.
    tokio::select! {
        biased;
        () = cancel.cancelled() => Ok(Exit::Killed),
        ended = run => ended,
    }
}

fn wasi_builder(process: Process) -> WasiCtxBuilder {
    let Process {
        args,
        env,
        stdout,
        stderr,
    } = process;
    let mut builder = base_wasi_builder(&args, &env);
    builder
        .stdout(AsyncStdoutStream::new(OUTPUT_BUDGET, stdout))
        .stderr(AsyncStdoutStream::new(OUTPUT_BUDGET, stderr));
    builder
}

/// Args and env, and no network; stdout and stderr are the caller's to add.
pub(crate) fn base_wasi_builder(args: &[String], env: &[(String, String)]) -> WasiCtxBuilder {
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(args)
        .envs(env)
        // The builder's defaults already deny every socket address; switching the
        // protocols off as well makes "no network" explicit.
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder
}

/// Store data that carries the run's resource limits.
pub(crate) trait Limited: 'static {
    fn limits(&mut self) -> &mut StoreLimits;
}

impl Limited for ComponentState {
    fn limits(&mut self) -> &mut StoreLimits {
        &mut self.limits
    }
}

impl Limited for ModuleState {
    fn limits(&mut self) -> &mut StoreLimits {
        &mut self.limits
    }
}

pub(crate) fn new_store<T: Limited>(engine: &Engine, state: T) -> Store<T> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| -> &mut dyn ResourceLimiter { state.limits() });
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    store
}

/// Instantiation can trap (a start function, a bad data segment): that is the
/// guest's fault and reads as a trap. Anything else (the instance pool is full) is
/// the node's.
fn instantiate_failed(digest: &str, error: wasmtime::Error) -> Result<Exit, RunError> {
    if error.is::<Trap>() {
        return Ok(exit_from_error(digest, error));
    }
    Err(RunError::Instantiate {
        digest: digest.to_owned(),
        source: boxed(error),
    })
}

pub(crate) fn exit_from_error(digest: &str, error: wasmtime::Error) -> Exit {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return Exit::Code(exit.0);
    }
    let message = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    tracing::info!(program = digest, error = %format!("{error:?}"), "guest trapped");
    Exit::Trap(message)
}
