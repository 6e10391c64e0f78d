//! Running a prepared program in a fresh store, with only the capabilities the pod
//! was granted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::cli::{AsyncStdinStream, AsyncStdoutStream};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::cpu::CpuShare;
use crate::egress::Egress;
use crate::error::RunError;
use crate::http_outbound::{OutboundPolicy, ServiceScope};
use crate::meter::Meter;
use crate::program::{ComponentState, ModuleState, Pre, Program, ProgramKind, boxed};
use crate::services::{PodIdentity, ServiceNames};

/// Most bytes one guest write may hand to the host writer at a time.
pub(crate) const OUTPUT_BUDGET: usize = 64 * 1024;

/// What one run of a program gets from the pod: argv, environment, where its
/// output goes, the directories it may see and how much memory it may use.
/// Nothing else is granted (no network; stdin only through
/// [`WasmRuntime::run_with`](crate::WasmRuntime::run_with)).
pub struct Process {
    /// argv, argv[0] first.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Receives the guest's stdout as it is written; each guest flush is awaited.
    pub stdout: Box<dyn AsyncWrite + Send + Sync + Unpin>,
    pub stderr: Box<dyn AsyncWrite + Send + Sync + Unpin>,
    pub sandbox: Sandbox,
}

/// The files and limits of one run; the default grants no files and only the
/// node-wide memory limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sandbox {
    /// Host directories preopened for the guest, each at its guest path.
    pub mounts: Vec<Mount>,
    /// The guest's current directory (`wasi:cli/environment.initial-cwd`, and
    /// `PWD`); `None` is `/`.
    pub working_dir: Option<String>,
    /// Most bytes of linear memory the guest may grow to (below the node-wide
    /// `RuntimeConfig::max_memory_bytes`). Growing past it ends the run with
    /// [`Exit::OutOfMemory`].
    pub memory_limit: Option<u64>,
    /// Share of one core's time the guest may use, in millicores
    /// (`resources.limits.cpu`); `None` or 1000 and more do not limit. Every
    /// instance of one run or one served container draws on the same share.
    pub cpu_millicores: Option<u64>,
    /// The hosts the guest may reach over wasi-http and wasi-sockets (TCP);
    /// the default reaches nothing. Service names of the cluster are reached
    /// through the node gateway besides (see [`crate::ServiceNames`]).
    pub egress: Egress,
    /// The pod the guest runs for: bare Service names are looked up in its
    /// namespace, and the gateway judges NetworkPolicy by it.
    pub pod: Option<PodIdentity>,
}

/// One host directory the guest sees at `guest_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host_path: PathBuf,
    /// Absolute path inside the guest, e.g. `/data`.
    pub guest_path: String,
    pub read_only: bool,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("args", &self.args)
            .field("env", &self.env)
            .field("sandbox", &self.sandbox)
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
    /// The guest tried to grow its memory past its limit and was stopped (the
    /// Wasm analogue of an OOM kill); the text says how far it tried to grow.
    OutOfMemory(String),
}

#[derive(Clone)]
pub(crate) struct RunLimits {
    pub(crate) max_memory_bytes: usize,
    /// Where the instances' memory is counted, when the caller meters the run.
    pub(crate) meter: Option<Meter>,
    /// How often the epoch advances: the longest a guest runs between two CPU charges.
    pub(crate) epoch_tick: Duration,
    pub(crate) cpu: Option<CpuShare>,
    /// Not a limit but the node's Services, which every run may reach by name.
    pub(crate) services: Option<Arc<dyn ServiceNames>>,
}

impl RunLimits {
    /// What the guest's outgoing HTTP requests may reach by Service name.
    pub(crate) fn service_scope(&self, sandbox: &Sandbox) -> Option<ServiceScope> {
        Some(ServiceScope {
            names: Arc::clone(self.services.as_ref()?),
            pod: sandbox.pod.clone().unwrap_or_default(),
        })
    }
}

impl RunLimits {
    /// The node's limits, tightened by the process's own memory and CPU limits.
    pub(crate) fn for_sandbox(&self, sandbox: &Sandbox) -> RunLimits {
        let own = sandbox
            .memory_limit
            .and_then(|limit| usize::try_from(limit).ok())
            .unwrap_or(usize::MAX);
        RunLimits {
            max_memory_bytes: self.max_memory_bytes.min(own),
            meter: self.meter.clone(),
            epoch_tick: self.epoch_tick,
            cpu: CpuShare::new(sandbox.cpu_millicores, self.epoch_tick),
            services: self.services.clone(),
        }
    }

    pub(crate) fn store_limits(&self) -> GuestLimits {
        GuestLimits {
            inner: StoreLimitsBuilder::new()
                .memory_size(self.max_memory_bytes)
                // Growing past the limit ends the run as a trap (the Wasm analogue of an
                // OOM kill) instead of handing the guest an allocation failure to ignore.
                .trap_on_grow_failure(true)
                .build(),
            max_memory_bytes: self.max_memory_bytes,
            refused_growth: None,
            meter: self.meter.clone(),
            counted: 0,
        }
    }
}

/// wasmtime's [`StoreLimits`], remembering a refused memory growth so the end of
/// the run can be told apart from any other trap.
pub(crate) struct GuestLimits {
    inner: StoreLimits,
    max_memory_bytes: usize,
    refused_growth: Option<usize>,
    meter: Option<Meter>,
    /// Bytes this store added to `meter`, given back when it is dropped.
    counted: u64,
}

impl GuestLimits {
    fn count(&mut self, bytes: u64) {
        if let Some(meter) = &self.meter {
            meter.add_memory(bytes);
            self.counted = self.counted.saturating_add(bytes);
        }
    }
}

impl Drop for GuestLimits {
    fn drop(&mut self) {
        if let Some(meter) = &self.meter {
            meter.release_memory(self.counted);
        }
    }
}

impl GuestLimits {
    /// `Some(message)` when the guest tried to grow past its memory limit.
    pub(crate) fn out_of_memory(&self) -> Option<String> {
        self.refused_growth.map(|desired| {
            format!(
                "the guest tried to grow its memory to {desired} bytes, past its limit of {} bytes",
                self.max_memory_bytes
            )
        })
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum);
        if matches!(allowed, Ok(true)) {
            self.count(desired.saturating_sub(current) as u64);
        } else if desired > self.max_memory_bytes {
            self.refused_growth = Some(desired);
        }
        allowed
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.table_growing(current, desired, maximum);
        if matches!(allowed, Ok(true)) {
            self.count(Meter::table_bytes(desired.saturating_sub(current) as u64));
        }
        allowed
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// What a guest reads on stdin (an exec'd command's input); none means an
/// empty stdin.
pub type InputStream = Box<dyn AsyncRead + Send + Sync + Unpin>;

pub(crate) async fn run(
    engine: &Engine,
    limits: &RunLimits,
    program: &Program,
    process: Process,
    stdin: Option<InputStream>,
    cancel: CancellationToken,
) -> Result<Exit, RunError> {
    let limits = limits.for_sandbox(&process.sandbox);
    let egress = process.sandbox.egress.clone();
    let services = limits.service_scope(&process.sandbox);
    let wasi = wasi_builder(process, stdin).map_err(|source| RunError::Sandbox {
        digest: program.digest().to_owned(),
        source: boxed(source),
    })?;
    let store_limits = limits.store_limits();
    let digest = program.digest();
    let run = async {
        match program.pre() {
            Pre::Component(pre) => {
                let mut wasi = wasi;
                let state = ComponentState::new(
                    wasi.build(),
                    store_limits,
                    OutboundPolicy::new(None, egress, services),
                );
                let mut store = new_store(engine, state, limits.cpu.as_ref());
                let command = match pre.instantiate_async(&mut store).await {
                    Ok(command) => command,
                    Err(error) => {
                        let oom = store.data().limits.out_of_memory();
                        return instantiate_failed(digest, oom, error);
                    }
                };
                let ended = command.wasi_cli_run().call_run(&mut store).await;
                Ok(match ended {
                    Ok(Ok(())) => Exit::Code(0),
                    Ok(Err(())) => Exit::Code(1),
                    Err(error) => exit_of(digest, store.data().limits.out_of_memory(), error),
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
                let mut store = new_store(engine, state, limits.cpu.as_ref());
                let instance = match pre.instantiate_async(&mut store).await {
                    Ok(instance) => instance,
                    Err(error) => {
                        let oom = store.data().limits.out_of_memory();
                        return instantiate_failed(digest, oom, error);
                    }
                };
                let start = instance
                    .get_typed_func::<(), ()>(&mut store, "_start")
                    .map_err(|e| RunError::Instantiate {
                        digest: digest.to_owned(),
                        source: boxed(e),
                    })?;
                Ok(match start.call_async(&mut store, ()).await {
                    Ok(()) => Exit::Code(0),
                    Err(error) => exit_of(digest, store.data().limits.out_of_memory(), error),
                })
            }
        }
    };
    let meter = limits.meter.clone();
    let run = async move {
        match &meter {
            Some(meter) => meter.timed(run).await,
            None => run.await,
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

fn wasi_builder(process: Process, stdin: Option<InputStream>) -> wasmtime::Result<WasiCtxBuilder> {
    let Process {
        args,
        env,
        stdout,
        stderr,
        sandbox,
    } = process;
    let mut builder = base_wasi_builder(&args, &env, &sandbox)?;
    builder
        .stdout(AsyncStdoutStream::new(OUTPUT_BUDGET, stdout))
        .stderr(AsyncStdoutStream::new(OUTPUT_BUDGET, stderr));
    if let Some(stdin) = stdin {
        builder.stdin(AsyncStdinStream::new(stdin));
    }
    Ok(builder)
}

/// Args, env, the sandbox's directories, and no network; stdout and stderr are
/// the caller's to add. Fails when a mount's host directory cannot be opened.
pub(crate) fn base_wasi_builder(
    args: &[String],
    env: &[(String, String)],
    sandbox: &Sandbox,
) -> wasmtime::Result<WasiCtxBuilder> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(args)
        .envs(env)
        // The builder's defaults already deny every socket address; switching the
        // protocols off as well makes "no network" explicit.
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    // TCP to the pod's declared hosts only.
    sandbox.egress.grant_sockets(&mut builder);
    for mount in &sandbox.mounts {
        let perms = if mount.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(&mount.host_path, &mount.guest_path, perms)
            .map_err(|error| {
                error.context(format!(
                    "opening {} for {}",
                    mount.host_path.display(),
                    mount.guest_path
                ))
            })?;
    }
    if let Some(dir) = &sandbox.working_dir {
        builder.initial_cwd(dir);
        if !env.iter().any(|(name, _)| name == "PWD") {
            builder.env("PWD", dir);
        }
    }
    Ok(builder)
}

/// Store data that carries the run's resource limits.
pub(crate) trait Limited: 'static {
    fn limits(&mut self) -> &mut GuestLimits;
}

impl Limited for ComponentState {
    fn limits(&mut self) -> &mut GuestLimits {
        &mut self.limits
    }
}

impl Limited for ModuleState {
    fn limits(&mut self) -> &mut GuestLimits {
        &mut self.limits
    }
}

/// A store that yields at every epoch tick and, under a CPU limit, pauses as long
/// as its container's share says.
pub(crate) fn new_store<T: Limited>(engine: &Engine, state: T, cpu: Option<&CpuShare>) -> Store<T> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| -> &mut dyn ResourceLimiter { state.limits() });
    store.set_epoch_deadline(1);
    match cpu {
        Some(share) => share.install(&mut store),
        None => store.epoch_deadline_async_yield_and_update(1),
    }
    store
}

/// Instantiation can trap (a start function, a bad data segment): that is the
/// guest's fault and reads as a trap. Anything else (the instance pool is full) is
/// the node's.
/// A memory the guest declares larger than its limit reads as running out of memory.
fn instantiate_failed(
    digest: &str,
    out_of_memory: Option<String>,
    error: wasmtime::Error,
) -> Result<Exit, RunError> {
    if out_of_memory.is_some() || error.is::<Trap>() {
        return Ok(exit_of(digest, out_of_memory, error));
    }
    Err(RunError::Instantiate {
        digest: digest.to_owned(),
        source: boxed(error),
    })
}

/// How a run that ended in `error` ended, given what the limiter saw.
pub(crate) fn exit_of(digest: &str, out_of_memory: Option<String>, error: wasmtime::Error) -> Exit {
    match out_of_memory {
        Some(message) if error.downcast_ref::<I32Exit>().is_none() => {
            tracing::info!(program = digest, %message, "guest ran out of memory");
            Exit::OutOfMemory(message)
        }
        _ => exit_from_error(digest, error),
    }
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
