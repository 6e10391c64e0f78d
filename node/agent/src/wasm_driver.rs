//! [`ContainerDriver`] for the Wasm runtime: the one place the agent touches
//! `skiff-wasm`, translating its types to and from the driver trait's.

use futures::FutureExt;
use futures::future::BoxFuture;
use skiff_wasm::{
    ALLOW_OUTBOUND_ANNOTATION, Credentials, Egress, Exit, Meter, Mount, Process, Program,
    PullOptions, PullPolicy, RunExtras, Sandbox, WasmRuntime,
};
use std::net::SocketAddr;
use std::time::Duration;

use skiff_wasm::{HttpService, ProgramKind};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::driver::{
    ContainerDriver, ContainerTemplate, ContainerUsage, DriverMetric, ExecSpec, ExitStatus,
    ImagePullPolicy, MetricKind, PortSpec, PortsReport, PrepareError, PreparedImage,
    ProcessContext, ProcessSpec, PullRequest, RunError, ServedPort, StartedReport, error_chain,
};

/// The runtime's pull options for a request: the policy, and the credentials of
/// every pull secret that parses (a broken one is logged and skipped, as kubelet does).
fn pull_options(image: &str, pull: &PullRequest) -> PullOptions {
    let mut credentials = Credentials::default();
    for config in &pull.docker_configs {
        match Credentials::from_docker_config_json(config) {
            Ok(found) => credentials.extend(found),
            Err(error) => {
                tracing::warn!(%image, error = %error_chain(&error), "ignoring an unusable image pull secret")
            }
        }
    }
    let policy = match pull.policy {
        ImagePullPolicy::Always => PullPolicy::Always,
        ImagePullPolicy::IfNotPresent => PullPolicy::IfNotPresent,
        ImagePullPolicy::Never => PullPolicy::Never,
    };
    PullOptions {
        policy,
        credentials,
    }
}

/// How long in-flight requests of a stopping HTTP container may run on: the
/// default `terminationGracePeriodSeconds`.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// One listener per declared port, bound before serving so a taken `hostPort`
/// fails the start (and the bound ports can be reported).
async fn bind(ports: &[PortSpec]) -> Result<Vec<TcpListener>, RunError> {
    if ports.is_empty() {
        return Err(RunError {
            source: "an HTTP component needs a TCP containerPort to be served on".into(),
        });
    }
    let mut listeners = Vec::with_capacity(ports.len());
    for port in ports {
        let addr = SocketAddr::new(port.host_ip, port.host_port.unwrap_or(0));
        let listener = TcpListener::bind(addr).await.map_err(|error| RunError {
            source: format!(
                "cannot listen on {addr} for containerPort {}: {error}",
                port.container_port
            )
            .into(),
        })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

fn served(ports: &[PortSpec], listeners: &[TcpListener]) -> Vec<ServedPort> {
    ports
        .iter()
        .zip(listeners)
        .filter_map(|(port, listener)| {
            Some(ServedPort {
                name: port.name.clone(),
                container_port: port.container_port,
                address: listener.local_addr().ok()?,
            })
        })
        .collect()
}

/// The pod's outbound allow-list; a value that does not parse fails the start
/// with a message naming the annotation and the entry.
fn egress_of(context: Option<&ProcessContext>) -> Result<Egress, RunError> {
    let Some(text) = context.and_then(|c| c.pod.allow_outbound.as_deref()) else {
        return Ok(Egress::default());
    };
    Egress::parse(text).map_err(|error| RunError {
        source: format!("metadata.annotations[{ALLOW_OUTBOUND_ANNOTATION}]: {error}").into(),
    })
}

impl ContainerDriver for WasmRuntime {
    fn prepare<'a>(
        &'a self,
        image: &'a str,
        pull: &'a PullRequest,
    ) -> BoxFuture<'a, Result<PreparedImage, PrepareError>> {
        async move {
            let options = pull_options(image, pull);
            match WasmRuntime::prepare_with(self, image, &options).await {
                Ok(prepared) => Ok(PreparedImage::new(prepared.image_id, prepared.program)),
                Err(error) if error.is_container_image() => Err(PrepareError::WrongKind {
                    image: image.to_string(),
                    expected: "a Wasm artifact",
                    source: Box::new(error),
                }),
                Err(error) if error.is_pull_error() => Err(PrepareError::Pull {
                    image: image.to_string(),
                    source: Box::new(error),
                }),
                Err(error) => Err(PrepareError::Create {
                    image: image.to_string(),
                    source: Box::new(error),
                }),
            }
        }
        .boxed()
    }

    fn run<'a>(
        &'a self,
        image: &'a PreparedImage,
        process: ProcessSpec,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, RunError>> {
        async move {
            let program = program_of(image)?;
            let meter = meter_of(self, &process);
            let (process, reports) = wasm_process(process)?;
            let started = |report: Option<StartedReport>| {
                if let Some(report) = report {
                    report(None);
                }
            };
            let exit = if program.kind() == ProgramKind::HttpProxy {
                // Listening sockets accept connections (into their backlog) from
                // here on, so the container counts as running, and ready.
                let listeners = bind(&reports.ports).await?;
                if let Some(report) = reports.ports_report {
                    report(served(&reports.ports, &listeners));
                }
                started(reports.started_report);
                let service = HttpService {
                    process,
                    listeners,
                    drain_timeout: DRAIN_TIMEOUT,
                };
                WasmRuntime::serve_metered(self, program, service, meter, cancel).await
            } else {
                // Instantiating takes microseconds; one that fails ends the
                // attempt as a start error.
                started(reports.started_report);
                let extras = RunExtras { stdin: None, meter };
                WasmRuntime::run_with(self, program, process, extras, cancel).await
            };
            exit_status(exit)
        }
        .boxed()
    }

    /// A new instance of the container's own component with the command as
    /// argv (its `wasi:cli/run`, or a module's `_start`), the container's env,
    /// volumes and working directory, and the client's input as stdin. An HTTP
    /// component has no command to run.
    fn exec<'a>(
        &'a self,
        container: &'a ContainerTemplate,
        exec: ExecSpec,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, RunError>> {
        async move {
            let program = program_of(&container.image)?;
            if program.kind() == ProgramKind::HttpProxy {
                return Err(RunError {
                    source: "the container is a wasi:http/proxy component, which exports no command to exec (only wasi:cli command components and preview-1 modules do)".into(),
                });
            }
            let ExecSpec {
                command: args,
                stdin,
                stdout,
                stderr,
                tty: _,
            } = exec;
            let process = container.process(args, stdout, stderr);
            let meter = meter_of(self, &process);
            let (process, _) = wasm_process(process)?;
            let extras = RunExtras { stdin, meter };
            exit_status(WasmRuntime::run_with(self, program, process, extras, cancel).await)
        }
        .boxed()
    }

    fn metrics(&self) -> Vec<DriverMetric> {
        let stats = self.stats();
        let hits = vec![
            (
                vec![("cache", "memory".to_string())],
                stats.memory_cache_hits as f64,
            ),
            (
                vec![("cache", "disk".to_string())],
                stats.disk_cache_loads as f64,
            ),
        ];
        vec![
            DriverMetric {
                name: "skiff_wasm_compile_cache_hits_total",
                help: "Wasm artifacts prepared without compiling: from memory, or loaded precompiled from the disk cache.",
                kind: MetricKind::Counter,
                samples: hits,
            },
            DriverMetric {
                name: "skiff_wasm_compile_cache_misses_total",
                help: "Wasm artifacts compiled (found in neither cache).",
                kind: MetricKind::Counter,
                samples: vec![(Vec::new(), stats.compiles as f64)],
            },
            DriverMetric {
                name: "skiff_wasm_memory_bytes",
                help: "Linear memory and tables of every live Wasm instance of the node's containers.",
                kind: MetricKind::Gauge,
                samples: vec![(Vec::new(), self.meters().total().memory_bytes as f64)],
            },
        ]
    }

    fn usage<'a>(&'a self, pod_uid: &'a str) -> BoxFuture<'a, Vec<ContainerUsage>> {
        let usage = self
            .meters()
            .pod_usage(pod_uid)
            .into_iter()
            .map(|(container, usage)| ContainerUsage {
                container,
                cpu_nanos: usage.cpu_nanos,
                memory_bytes: usage.memory_bytes,
                in_process: true,
            })
            .collect();
        futures::future::ready(usage).boxed()
    }
}

fn program_of(image: &PreparedImage) -> Result<&Program, RunError> {
    image.program::<Program>().ok_or_else(|| RunError {
        source: format!(
            "image {} was not prepared by the Wasm driver",
            image.image_id()
        )
        .into(),
    })
}

/// The meter of the process's container, when it says which one it is.
fn meter_of(runtime: &WasmRuntime, process: &ProcessSpec) -> Option<Meter> {
    let context = process.context.as_ref()?;
    Some(
        runtime
            .meters()
            .open(&context.pod.uid, &context.container.name),
    )
}

/// What a driver process asks to be told, beside the runtime's process.
struct Reports {
    /// The ports it should serve.
    ports: Vec<PortSpec>,
    ports_report: Option<PortsReport>,
    started_report: Option<StartedReport>,
}

/// The runtime's process for a driver process, and what it wants reported.
fn wasm_process(process: ProcessSpec) -> Result<(Process, Reports), RunError> {
    let ProcessSpec {
        args,
        env,
        stdout,
        stderr,
        ports,
        ports_report,
        mounts,
        working_dir,
        limits,
        context,
        started_report,
    } = process;
    let egress = egress_of(context.as_ref())?;
    let process = Process {
        args,
        env,
        stdout,
        stderr,
        sandbox: Sandbox {
            mounts: mounts
                .into_iter()
                .map(|m| Mount {
                    host_path: m.host_path,
                    guest_path: m.container_path,
                    read_only: m.read_only,
                })
                .collect(),
            working_dir,
            memory_limit: limits.memory_bytes,
            // Rounded up, so a tiny limit still lets the guest run (1m at least).
            cpu_millicores: limits
                .cpu_cores
                .filter(|cores| cores.is_finite() && *cores >= 0.0)
                .map(|cores| (cores * 1000.0).ceil() as u64),
            egress,
        },
    };
    Ok((
        process,
        Reports {
            ports,
            ports_report,
            started_report,
        },
    ))
}

fn exit_status(exit: Result<Exit, skiff_wasm::RunError>) -> Result<ExitStatus, RunError> {
    let exit = exit.map_err(|error| RunError {
        source: Box::new(error),
    })?;
    Ok(match exit {
        Exit::Code(code) => ExitStatus::Code(code),
        Exit::Trap(message) => ExitStatus::Trap(message),
        Exit::Killed => ExitStatus::Killed,
        Exit::OutOfMemory(message) => {
            tracing::info!(%message, "container ran out of memory");
            ExitStatus::OomKilled
        }
    })
}
