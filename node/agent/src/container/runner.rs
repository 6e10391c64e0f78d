//! The task that drives one container: it performs what the machine's phase
//! asks for (prepare, run, wait out a back-off), feeds the result back, and
//! reports every new status to the pod worker.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::checks::{ContainerChecks, ExecTemplate};
use super::env::{Resolved, resolve};
use super::machine::{ContainerMachine, Input, Moment, Outcome, Phase};
use super::probe::{self, Probes, Verdict};
use super::{limits, ports};
use crate::claims::LocalPath;
use crate::cluster::Cluster;
use crate::driver::{
    ContainerDriver, ContainerTemplate, ImagePullPolicy, MountSpec, PodAddress, PodSandbox,
    PreparedImage, ProcessContext, ProcessSpec, PullRequest, error_chain,
};
use crate::events::{EventRecorder, EventType};
use crate::logs::LogBook;
use crate::metrics::NodeMetrics;
use crate::pod::PodIdentity;
use crate::ports::PortTable;
use crate::running::RunningTable;
use crate::sources::{Allocatable, PodFacts, Sources};
use crate::volumes::{self, PodVolumes};

/// Which of the pod's containers a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Init(usize),
    Main(usize),
}

/// A container's new status, sent to its pod worker after every step.
#[derive(Debug, Clone)]
pub struct Report {
    pub slot: Slot,
    pub status: ContainerStatus,
    /// `Some(success)` once the container will never run again.
    pub finished: Option<bool>,
}

/// What a container task needs from its pod and node.
#[derive(Clone)]
pub struct RunnerContext {
    pub pod: PodIdentity,
    pub driver: Arc<dyn ContainerDriver>,
    /// Where the pod's `imagePullSecrets` are read from.
    pub cluster: Arc<dyn Cluster>,
    /// The names in the pod's `imagePullSecrets`.
    pub pull_secrets: Vec<String>,
    pub logs: Arc<LogBook>,
    pub events: EventRecorder,
    pub reports: mpsc::UnboundedSender<Report>,
    /// Where serving containers record their node ports.
    pub ports: Arc<PortTable>,
    /// Where running containers are found for exec and usage.
    pub running: Arc<RunningTable>,
    /// Counts container starts for the node's `/metrics`.
    pub metrics: Arc<NodeMetrics>,
    /// The pod as the worker first saw it (for the downward API and volumes).
    pub pod_object: Arc<Pod>,
    /// The node's address (the downward API's `status.hostIP`, and `status.podIP`
    /// of a pod that shares the node's network).
    pub host_ip: String,
    pub allocatable: Allocatable,
    pub volumes: Arc<PodVolumes>,
    /// The pod as the driver sees it (runtime class, grace period).
    pub sandbox: Arc<PodSandbox>,
    /// The node's name (provisioned volumes are pinned to it).
    pub node_name: String,
    /// The node's data directory (`local-path/` holds provisioned volumes).
    pub data_dir: std::path::PathBuf,
}

/// What a container is started with, put together right before each start.
struct Launch {
    resolved: Resolved,
    mounts: Vec<MountSpec>,
    working_dir: Option<String>,
}

pub struct ContainerRunner {
    slot: Slot,
    spec: Container,
    machine: ContainerMachine,
    context: RunnerContext,
    cancel: CancellationToken,
    prepared: Option<PreparedImage>,
    launch: Option<Launch>,
}

impl ContainerRunner {
    pub fn new(
        slot: Slot,
        spec: Container,
        machine: ContainerMachine,
        context: RunnerContext,
        cancel: CancellationToken,
    ) -> ContainerRunner {
        ContainerRunner {
            slot,
            spec,
            machine,
            context,
            cancel,
            prepared: None,
            launch: None,
        }
    }

    /// Runs the container until it finishes for good or `cancel` stops it.
    pub async fn run(mut self) {
        self.report();
        loop {
            let input = match self.machine.phase() {
                Phase::Creating => self.prepare().await,
                Phase::PrepareBackOff { delay, .. } | Phase::CrashLoopBackOff { delay } => {
                    self.back_off(*delay).await
                }
                Phase::Starting | Phase::Running { .. } => self.run_process().await,
                // run_process always sees a stop through; nothing is left to do.
                Phase::Stopping { .. } | Phase::Finished => break,
            };
            self.machine.step(input, Moment::now());
            self.report();
        }
    }

    fn report(&self) {
        // The worker only stops listening once it no longer cares.
        let _ = self.context.reports.send(Report {
            slot: self.slot,
            status: self.machine.status(),
            finished: self.machine.finished(),
        });
    }

    async fn event(&self, kind: EventType, reason: &str, message: String) {
        let container = Some(self.machine.name());
        self.context
            .events
            .record(kind, reason, container, message)
            .await;
    }

    /// Sets up the pod's volumes and resolves env and argv, as kubelet does right
    /// before each start. A missing ConfigMap or Secret keeps the container
    /// waiting (`ContainerCreating` for a volume, `CreateContainerConfigError`
    /// for env) and is tried again shortly.
    async fn configure(&mut self) -> Result<Launch, Input> {
        let pod = Arc::clone(&self.context.pod_object);
        let cluster = Arc::clone(&self.context.cluster);
        let pod_volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_deref())
            .unwrap_or_default();
        let local_path = LocalPath::new(&self.context.node_name, &self.context.data_dir);
        let claims = match local_path
            .claim_dirs(cluster.as_ref(), &self.context.pod.namespace, pod_volumes)
            .await
        {
            Ok(claims) => claims,
            Err(error) => {
                let message = format!("Unable to attach or mount volumes: {error}");
                self.event(EventType::Warning, "FailedMount", message.clone())
                    .await;
                return Err(Input::ConfigFailed {
                    reason: "ContainerCreating",
                    message,
                });
            }
        };
        // Prepared by now, so an OCI pod's sandbox (and its IP) exists.
        let pod_ip = match self.context.driver.pod_address(&self.context.pod.uid) {
            PodAddress::Own(ip) => ip.to_string(),
            PodAddress::Node | PodAddress::Pending => self.context.host_ip.clone(),
        };
        let root_filesystem = self
            .prepared
            .as_ref()
            .is_some_and(PreparedImage::has_root_filesystem);
        let facts = PodFacts {
            pod: &pod,
            host_ip: &self.context.host_ip,
            pod_ip: &pod_ip,
            allocatable: self.context.allocatable,
            claims: &claims,
        };
        let mut sources = Sources::new(cluster.as_ref(), &self.context.pod.namespace);
        let mounted = match self
            .context
            .volumes
            .set_up(pod_volumes, &facts, &mut sources)
            .await
        {
            Ok(dirs) => volumes::mounts(&self.spec, &dirs, root_filesystem).and_then(|mounts| {
                let working_dir = volumes::working_dir(&self.spec, &mounts, root_filesystem)?;
                Ok((mounts, working_dir))
            }),
            Err(error) => {
                let message = error.to_string();
                self.event(EventType::Warning, "FailedMount", message.clone())
                    .await;
                return Err(Input::ConfigFailed {
                    reason: "ContainerCreating",
                    message,
                });
            }
        };
        let resolved = resolve(&self.spec, &facts, &mut sources).await;
        let (mounts, working_dir, resolved) = match (mounted, resolved) {
            (Ok((mounts, working_dir)), Ok(resolved)) => (mounts, working_dir, resolved),
            (Err(error), _) => return Err(self.config_failed(error.to_string()).await),
            (_, Err(error)) => return Err(self.config_failed(error.to_string()).await),
        };
        if !resolved.invalid_names.is_empty() {
            let message = format!(
                "Keys [{}] from the EnvFrom sources were skipped since they are considered invalid environment variable names.",
                resolved.invalid_names.join(", ")
            );
            self.event(
                EventType::Warning,
                "InvalidEnvironmentVariableNames",
                message,
            )
            .await;
        }
        Ok(Launch {
            resolved,
            mounts,
            working_dir,
        })
    }

    async fn config_failed(&self, message: String) -> Input {
        tracing::warn!(pod = %self.context.pod, container = %self.machine.name(), %message, "container configuration failed");
        self.event(EventType::Warning, "Failed", format!("Error: {message}"))
            .await;
        Input::ConfigFailed {
            reason: "CreateContainerConfigError",
            message,
        }
    }

    async fn prepare(&mut self) -> Input {
        let image = self.machine.image().to_string();
        self.event(
            EventType::Normal,
            "Pulling",
            format!("Pulling image {image:?}"),
        )
        .await;
        let started = tokio::time::Instant::now();
        let pull = PullRequest {
            policy: ImagePullPolicy::of(self.spec.image_pull_policy.as_deref(), &image),
            docker_configs: self.docker_configs().await,
            pod: Some(Arc::clone(&self.context.sandbox)),
        };
        let result = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Input::Stop,
            result = self.context.driver.prepare(&image, &pull) => result,
        };
        match result {
            Ok(prepared) => {
                let took = started.elapsed();
                tracing::debug!(?took, "image prepared");
                let message = format!("Successfully pulled image {image:?} in {took:.2?}");
                self.event(EventType::Normal, "Pulled", message).await;
                let image_id = prepared.image_id().to_string();
                self.prepared = Some(prepared);
                match self.configure().await {
                    Ok(launch) => {
                        tracing::debug!(took = ?started.elapsed(), "container configured");
                        self.launch = Some(launch);
                        Input::Prepared { image_id }
                    }
                    Err(input) => input,
                }
            }
            Err(error) => {
                let message = error_chain(&error);
                let pull = error.is_pull_error();
                tracing::warn!(pod = %self.context.pod, container = %self.machine.name(), %message, "prepare failed");
                let (detail, short) = if pull {
                    (
                        format!("Failed to pull image {image:?}: {message}"),
                        "Error: ErrImagePull".to_string(),
                    )
                } else {
                    (format!("Error: {message}"), String::new())
                };
                self.event(EventType::Warning, "Failed", detail).await;
                if !short.is_empty() {
                    self.event(EventType::Warning, "Failed", short).await;
                }
                Input::PrepareFailed { pull, message }
            }
        }
    }

    /// The docker configs of the pod's pull secrets, read on every pull so an
    /// updated Secret is used. Like kubelet, a missing or unusable Secret is
    /// reported and the pull goes on without it.
    async fn docker_configs(&self) -> Vec<Vec<u8>> {
        let namespace = &self.context.pod.namespace;
        let mut configs = Vec::new();
        for name in &self.context.pull_secrets {
            let problem = match self.context.cluster.get_secret(namespace, name).await {
                Ok(Some(secret)) => {
                    let data = secret.data.unwrap_or_default();
                    match data.get(".dockerconfigjson").or(data.get(".dockercfg")) {
                        Some(config) => {
                            configs.push(config.0.clone());
                            continue;
                        }
                        None => "it has no .dockerconfigjson key".to_string(),
                    }
                }
                Ok(None) => "it does not exist".to_string(),
                Err(error) => error_chain(&error),
            };
            let message = format!(
                "Unable to retrieve some image pull secrets ({name}); attempting to pull the image may not succeed: {problem}"
            );
            self.event(
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                message,
            )
            .await;
        }
        configs
    }

    /// A probe result: readiness and startup go into the status, failures
    /// become `Unhealthy` events, a failed liveness or startup probe kills the
    /// process (the restart policy decides what follows).
    async fn on_verdict(&mut self, verdict: Verdict, kill: &CancellationToken) {
        let name = self.machine.name().to_string();
        match verdict {
            Verdict::Started => self.machine.step(Input::Started, Moment::now()),
            Verdict::Ready(ready) => self.machine.step(Input::Ready(ready), Moment::now()),
            Verdict::Unhealthy { kind, message } => {
                let message = format!("{} probe failed: {message}", kind.label());
                self.event(EventType::Warning, "Unhealthy", message).await;
                return;
            }
            Verdict::Kill { kind } => {
                let message = format!(
                    "Container {name} failed {} probe, will be restarted",
                    kind.label().to_lowercase()
                );
                self.event(EventType::Normal, "Killing", message).await;
                kill.cancel();
                return;
            }
        }
        self.report();
    }

    async fn back_off(&self, delay: Duration) -> Input {
        let message = match self.machine.phase() {
            Phase::CrashLoopBackOff { .. } => format!(
                "Back-off restarting failed container {} in pod {}",
                self.machine.name(),
                self.context.pod.label()
            ),
            _ => format!("Back-off pulling image {:?}", self.machine.image()),
        };
        self.event(EventType::Warning, "BackOff", message).await;
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Input::Stop,
            _ = tokio::time::sleep(delay) => Input::BackOffElapsed,
        }
    }

    /// Starts one attempt and waits for it (and its log) to end. A stop request
    /// is stepped into the machine here, so the next input is always `Exited`.
    async fn run_process(&mut self) -> Input {
        let (Some(prepared), Some(launch)) = (self.prepared.clone(), self.launch.take()) else {
            return Input::Exited(Outcome::start_error("no prepared image".into()));
        };
        let pod = &self.context.pod;
        let name = self.machine.name().to_string();
        let attempt = match self
            .context
            .logs
            .start_attempt(
                &pod.namespace,
                &pod.name,
                &pod.uid,
                &name,
                self.machine.restart_count(),
            )
            .await
        {
            Ok(attempt) => attempt,
            Err(error) => {
                let message = format!("creating the log file: {error}");
                self.event(EventType::Warning, "Failed", format!("Error: {message}"))
                    .await;
                return Input::Exited(Outcome::start_error(message));
            }
        };
        let served = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (runtime_id_tx, mut runtime_ids) = mpsc::unbounded_channel();
        let limits = limits(&self.spec);
        let template = ContainerTemplate {
            image: prepared.clone(),
            env: launch.resolved.env.clone(),
            mounts: launch.mounts.clone(),
            working_dir: launch.working_dir.clone(),
            limits,
            context: Some(ProcessContext {
                pod: Arc::clone(&self.context.sandbox),
                container: Arc::new(self.spec.clone()),
                restart_count: self.machine.restart_count(),
            }),
        };
        let checks = ContainerChecks {
            host_ip: self.context.host_ip.clone(),
            served: Arc::clone(&served),
            exec: ExecTemplate {
                driver: Arc::clone(&self.context.driver),
                container: template.clone(),
            },
        };
        let process = ProcessSpec {
            args: launch.resolved.args,
            env: launch.resolved.env,
            mounts: launch.mounts,
            working_dir: launch.working_dir,
            limits,
            stdout: Box::new(attempt.stdout),
            stderr: Box::new(attempt.stderr),
            ports: ports(&self.spec),
            ports_report: Some({
                let (table, pod, name) = (self.context.ports.clone(), pod.clone(), name.clone());
                Box::new(move |ports| {
                    table.serving(&pod, &name, &ports);
                    *served.lock().expect("lock poisoned") = ports;
                })
            }),
            context: Some(ProcessContext {
                pod: Arc::clone(&self.context.sandbox),
                container: Arc::new(self.spec.clone()),
                restart_count: self.machine.restart_count(),
            }),
            started_report: Some(Box::new(move |id| {
                let _ = runtime_id_tx.send(id);
            })),
        };
        self.event(
            EventType::Normal,
            "Created",
            format!("Created container: {name}"),
        )
        .await;
        let driver = Arc::clone(&self.context.driver);
        let process_cancel = self.cancel.child_token();
        let kill = process_cancel.clone();
        let attempt_done = async {
            let (result, ()) = tokio::join!(
                driver.run(&prepared, process, process_cancel),
                attempt.pump.run()
            );
            result
        };
        tokio::pin!(attempt_done);
        self.context.running.started(pod, &name, template);
        let (verdicts_tx, mut verdicts) = mpsc::unbounded_channel();
        let probes = Probes::of(&self.spec);
        // Probing begins once the process runs (its delays count from then).
        let has_probes = !probes.is_empty();
        let mut probing = false;
        let prober = probe::supervise(probes, &checks, verdicts_tx);
        tokio::pin!(prober);
        // A stop wins over an exit seen at the same moment: the process's own
        // token is a child of `cancel`, so both fire together.
        let result = loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    self.machine.step(Input::Stop, Moment::now());
                    self.report();
                    self.event(EventType::Normal, "Killing", format!("Stopping container {name}")).await;
                    break attempt_done.await;
                }
                // Before the exit: a process that ran, however briefly, was started.
                Some(runtime_id) = runtime_ids.recv() => {
                    self.machine.step(Input::Launched { runtime_id }, Moment::now());
                    self.context.metrics.container_started(self.machine.restart_count() > 0);
                    self.report();
                    probing = has_probes;
                    self.event(EventType::Normal, "Started", format!("Started container {name}")).await;
                }
                result = &mut attempt_done => break result,
                Some(verdict) = verdicts.recv() => self.on_verdict(verdict, &kill).await,
                () = &mut prober, if probing => probing = false,
            }
        };
        self.context.ports.stopped(&self.context.pod, &name);
        self.context.running.stopped(&self.context.pod, &name);
        match result {
            Ok(exit) => Input::Exited(Outcome::from_exit(exit)),
            Err(error) => {
                let message = error_chain(&error);
                self.event(EventType::Warning, "Failed", format!("Error: {message}"))
                    .await;
                Input::Exited(Outcome::start_error(message))
            }
        }
    }
}
