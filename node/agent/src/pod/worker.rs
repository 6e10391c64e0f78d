//! The pod worker: one task per pod (by uid) that starts its containers in the
//! order the stage machine says, collects their statuses, writes the pod's
//! status when it changes, and carries out deletion.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodSpec, PodStatus,
};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::PodIdentity;
use super::stage::{PodShape, Stage, StageEvent, StopReason, advance, initial};
use super::status::{StatusInputs, pod_status};
use super::writer::StatusWriter;
use crate::cluster::Cluster;
use crate::container::RestartPolicy;
use crate::container::machine::ContainerMachine;
use crate::container::runner::{ContainerRunner, Report, RunnerContext, Slot};
use crate::driver::{ContainerDriver, DEFAULT_GRACE_PERIOD, PodAddress, PodSandbox, error_chain};
use crate::events::{EventRecorder, EventSink};
use crate::logs::LogBook;
use crate::metrics::NodeMetrics;
use crate::ports::PortTable;
use crate::running::RunningTable;
use crate::sources::Allocatable;
use crate::volumes::PodVolumes;

/// How often a running pod's emptyDirs with a `sizeLimit` are measured (kubelet's
/// eviction manager checks every 10 s; a guest writes a lot in 10 s).
const DISK_CHECK: Duration = Duration::from_secs(1);

/// What every pod worker on the node shares.
pub struct NodeContext {
    pub node_name: String,
    /// The node's address, also used as every pod's IP for now.
    pub host_ip: String,
    pub cluster: Arc<dyn Cluster>,
    /// Where the pods' Events are written.
    pub events: EventSink,
    pub driver: Arc<dyn ContainerDriver>,
    pub logs: Arc<LogBook>,
    /// The node ports of serving containers.
    pub ports: Arc<PortTable>,
    /// The containers running now (for exec and usage).
    pub running: Arc<RunningTable>,
    /// What the node's `/metrics` reports.
    pub metrics: Arc<NodeMetrics>,
    /// Where pod volumes live (`<data_dir>/volumes/<uid>`).
    pub data_dir: PathBuf,
    /// What the node offers containers without limits (the downward API's fallback).
    pub allocatable: Allocatable,
    /// Cancelled when the agent shuts down.
    pub shutdown: CancellationToken,
}

/// What the agent's pod watch tells a worker.
#[derive(Debug)]
pub enum WorkerCommand {
    /// A newer version of the pod (maybe with a deletionTimestamp).
    Update(Box<Pod>),
    /// The pod is gone from the store or from this node.
    Vanished,
}

pub struct PodWorker {
    pod: PodIdentity,
    spec: PodSpec,
    object: Arc<Pod>,
    volumes: Arc<PodVolumes>,
    policy: RestartPolicy,
    node: Arc<NodeContext>,
    events: EventRecorder,
    stage: Stage,
    init: Vec<ContainerStatus>,
    main: Vec<ContainerStatus>,
    main_finished: Vec<bool>,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
    commands: mpsc::UnboundedReceiver<WorkerCommand>,
    commands_open: bool,
    /// The container tasks, and the token that stops them.
    runners: TaskTracker,
    stop_runners: CancellationToken,
    /// Cancelled with the agent.
    cancel: CancellationToken,
    /// The last status handed to the writer.
    written: Option<PodStatus>,
    writer: StatusWriter,
    start_time: Timestamp,
    /// When the worker first saw the pod; `None` once its start was counted.
    seen_at: Option<Instant>,
    /// When the emptyDirs are measured next; `None` when none has a `sizeLimit`.
    disk_check_at: Option<Instant>,
    /// Why the pod was evicted, once it was.
    evicted: Option<String>,
}

fn placeholder(container: &Container, reason: &str) -> ContainerStatus {
    ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_string()),
                message: None,
            }),
            ..ContainerState::default()
        }),
        started: Some(false),
        ..ContainerStatus::default()
    }
}

impl PodWorker {
    /// Builds the worker for `pod`; `None` if the pod lacks a name, uid or spec.
    /// Send it commands through the returned sender, then run it.
    pub fn new(
        pod: &Pod,
        node: Arc<NodeContext>,
    ) -> Option<(PodWorker, mpsc::UnboundedSender<WorkerCommand>)> {
        let identity = PodIdentity::of(pod)?;
        let identity_uid = identity.uid.clone();
        let spec = pod.spec.clone()?;
        let policy = RestartPolicy::from_spec(spec.restart_policy.as_deref());
        let init_specs = spec.init_containers.clone().unwrap_or_default();
        let main_reason = if init_specs.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let init = init_specs
            .iter()
            .map(|c| placeholder(c, "PodInitializing"))
            .collect();
        let main: Vec<_> = spec
            .containers
            .iter()
            .map(|c| placeholder(c, main_reason))
            .collect();
        let names: Vec<String> = init_specs
            .iter()
            .chain(&spec.containers)
            .map(|c| c.name.clone())
            .collect();
        node.logs
            .register_pod(&identity.namespace, &identity.name, &identity.uid, &names);
        let events = EventRecorder::new(
            node.events.clone(),
            &node.node_name,
            identity.object_reference(pod.metadata.resource_version.clone()),
            node.shutdown.clone(),
        );
        let cancel = node.shutdown.child_token();
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let shape = PodShape {
            init_containers: init_specs.len(),
            all_main_finished: false,
        };
        // A pod already being deleted is not started, only finished off.
        let stage = match pod.metadata.deletion_timestamp {
            Some(_) => Stage::Stopping(StopReason::Deleted),
            None => initial(shape),
        };
        let writer = StatusWriter::start(
            Arc::clone(&node.cluster),
            identity.clone(),
            node.shutdown.clone(),
        );
        let worker = PodWorker {
            pod: identity,
            policy,
            events,
            stage,
            main_finished: vec![false; main.len()],
            init,
            main,
            reports_tx,
            reports,
            commands,
            commands_open: true,
            runners: TaskTracker::new(),
            stop_runners: cancel.child_token(),
            cancel,
            written: None,
            writer,
            start_time: Timestamp::now(),
            seen_at: Some(Instant::now()),
            disk_check_at: has_size_limit(&spec).then(|| Instant::now() + DISK_CHECK),
            evicted: None,
            spec,
            object: Arc::new(pod.clone()),
            volumes: Arc::new(PodVolumes::new(&node.data_dir, &identity_uid)),
            node,
        };
        Some((worker, commands_tx))
    }

    pub fn identity(&self) -> &PodIdentity {
        &self.pod
    }

    fn shape(&self) -> PodShape {
        PodShape {
            init_containers: self.init.len(),
            all_main_finished: self.main_finished.iter().all(|f| *f),
        }
    }

    /// Runs the pod until it is stopped (deleted, gone, or the agent shuts down)
    /// and says why it stopped.
    pub async fn run(mut self) -> StopReason {
        let span = tracing::info_span!("pod", pod = %self.pod, uid = %self.pod.uid);
        async move {
            tracing::info!("pod worker started");
            self.enter(self.stage);
            self.write_status();
            let reason = loop {
                let event = self.next_event().await;
                if let Some(event) = event {
                    let next = advance(self.stage, event, self.shape());
                    if next != self.stage {
                        tracing::debug!(from = ?self.stage, to = ?next, "pod stage changes");
                        self.stage = next;
                        self.enter(next);
                    }
                }
                if let Stage::Stopped(reason) = self.stage {
                    break reason;
                }
                self.write_status();
            };
            self.finish(reason).await;
            reason
        }
        .instrument(span)
        .await
    }

    async fn next_event(&mut self) -> Option<StageEvent> {
        let stopping = matches!(self.stage, Stage::Stopping(_));
        let listening = self.commands_open;
        let measuring = matches!(self.stage, Stage::Initializing(_) | Stage::Running);
        let disk_check = self.disk_check_at.filter(|_| measuring);
        tokio::select! {
            biased;
            _ = self.cancel.cancelled(), if !stopping => Some(StageEvent::StopRequested(StopReason::Shutdown)),
            Some(report) = self.reports.recv() => self.apply(report),
            command = self.commands.recv(), if listening => match command {
                Some(WorkerCommand::Update(pod)) => {
                    self.events.set_resource_version(pod.metadata.resource_version.clone());
                    pod.metadata.deletion_timestamp.is_some().then_some(StageEvent::StopRequested(StopReason::Deleted))
                }
                Some(WorkerCommand::Vanished) => Some(StageEvent::StopRequested(StopReason::Vanished)),
                // The agent dropped the worker's handle: treat the pod as gone.
                None => {
                    self.commands_open = false;
                    Some(StageEvent::StopRequested(StopReason::Vanished))
                }
            },
            _ = self.runners.wait(), if stopping => Some(StageEvent::ContainersStopped),
            _ = tokio::time::sleep_until(disk_check.unwrap_or_else(Instant::now)), if disk_check.is_some() => {
                self.disk_check_at = Some(Instant::now() + DISK_CHECK);
                self.check_disk_usage().await
            }
        }
    }

    /// Evicts the pod when an emptyDir holds more than its `sizeLimit`, with
    /// kubelet's reason and message.
    async fn check_disk_usage(&mut self) -> Option<StageEvent> {
        let volumes = self.spec.volumes.as_deref().unwrap_or_default();
        let (volume, used, limit) = self.volumes.over_limit(volumes).await.into_iter().next()?;
        let message = format!(
            "Usage of EmptyDir volume {volume:?} exceeds the limit \"{}\". (used {used} bytes, limit {limit} bytes)",
            size_limit_text(volumes, &volume)
        );
        tracing::info!(%message, "evicting the pod");
        self.events
            .record(
                crate::events::EventType::Warning,
                "Evicted",
                None,
                message.clone(),
            )
            .await;
        self.evicted = Some(message);
        self.disk_check_at = None;
        Some(StageEvent::StopRequested(StopReason::Evicted))
    }

    fn apply(&mut self, report: Report) -> Option<StageEvent> {
        match report.slot {
            Slot::Init(i) => self.init[i] = report.status,
            Slot::Main(i) => {
                self.main[i] = report.status;
                self.main_finished[i] = report.finished.is_some();
            }
        }
        let success = report.finished?;
        Some(StageEvent::ContainerFinished {
            slot: report.slot,
            success,
        })
    }

    /// The entry action of a stage.
    fn enter(&mut self, stage: Stage) {
        match stage {
            Stage::Initializing(i) => self.spawn_runner(Slot::Init(i)),
            Stage::Running => (0..self.main.len()).for_each(|i| self.spawn_runner(Slot::Main(i))),
            Stage::Completed => tracing::info!("pod completed; nothing more will run"),
            Stage::Stopping(reason) => {
                tracing::info!(?reason, "stopping the pod's containers");
                self.stop_runners.cancel();
                self.runners.close();
            }
            Stage::Stopped(_) => {}
        }
    }

    fn spawn_runner(&self, slot: Slot) {
        let (spec, policy) = match slot {
            Slot::Init(i) => {
                let init = self.spec.init_containers.as_deref().unwrap_or_default();
                (init[i].clone(), self.policy.for_init_containers())
            }
            Slot::Main(i) => (self.spec.containers[i].clone(), self.policy),
        };
        let pod = &self.pod;
        let image = spec.image.clone().unwrap_or_default();
        let machine = ContainerMachine::new(
            &spec.name,
            &image,
            (&pod.namespace, &pod.name, &pod.uid),
            policy,
        )
        .with_probes(spec.startup_probe.is_some(), spec.readiness_probe.is_some());
        let context = RunnerContext {
            pod: pod.clone(),
            driver: Arc::clone(&self.node.driver),
            cluster: Arc::clone(&self.node.cluster),
            pull_secrets: self
                .spec
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|s| s.name.clone())
                .filter(|name| !name.is_empty())
                .collect(),
            logs: Arc::clone(&self.node.logs),
            events: self.events.clone(),
            reports: self.reports_tx.clone(),
            ports: Arc::clone(&self.node.ports),
            running: Arc::clone(&self.node.running),
            metrics: Arc::clone(&self.node.metrics),
            pod_object: Arc::clone(&self.object),
            host_ip: self.node.host_ip.clone(),
            allocatable: self.node.allocatable,
            volumes: Arc::clone(&self.volumes),
            sandbox: Arc::new(PodSandbox {
                uid: pod.uid.clone(),
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                runtime_class: self.spec.runtime_class_name.clone(),
                grace_period: self
                    .spec
                    .termination_grace_period_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(DEFAULT_GRACE_PERIOD, Duration::from_secs),
                run_as_user: self
                    .spec
                    .security_context
                    .as_ref()
                    .and_then(|s| s.run_as_user),
                run_as_group: self
                    .spec
                    .security_context
                    .as_ref()
                    .and_then(|s| s.run_as_group),
                supplemental_groups: self
                    .spec
                    .security_context
                    .as_ref()
                    .and_then(|s| s.supplemental_groups.clone())
                    .unwrap_or_default(),
                allow_outbound: self
                    .object
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(crate::driver::ALLOW_OUTBOUND_ANNOTATION))
                    .cloned(),
            }),
            node_name: self.node.node_name.clone(),
            data_dir: self.node.data_dir.clone(),
        };
        let span = tracing::info_span!("container", container = %spec.name);
        let runner = ContainerRunner::new(slot, spec, machine, context, self.stop_runners.clone());
        self.runners.spawn(runner.run().instrument(span));
    }

    fn compute_status(&self) -> PodStatus {
        let mut status = pod_status(&StatusInputs {
            policy: self.policy,
            init: &self.init,
            main: &self.main,
            terminal: matches!(self.stage, Stage::Stopped(_)),
            host_ip: &self.node.host_ip,
            start_time: self.start_time,
            previous: self.written.as_ref(),
            now: Timestamp::now(),
        });
        if let Some(message) = &self.evicted {
            status.phase = Some("Failed".to_string());
            status.reason = Some("Evicted".to_string());
            status.message = Some(message.clone());
        }
        // A driver with pod sandboxes gives the pod an IP of its own; until the
        // pod's driver and sandbox are known it shows none (as kubelet shows
        // none before the sandbox exists), never one it would not keep. The
        // status is merged, so an IP written earlier stays.
        match self.node.driver.pod_address(&self.pod.uid) {
            PodAddress::Node => {}
            PodAddress::Own(ip) => {
                status.pod_ip = Some(ip.to_string());
                status.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
                    ip: ip.to_string(),
                }]);
            }
            PodAddress::Pending => {
                status.pod_ip = None;
                status.pod_ips = None;
            }
        }
        status
    }

    /// Hands the pod's status to the writer if it differs from the last one.
    fn write_status(&mut self) {
        let status = self.compute_status();
        if self.written.as_ref() == Some(&status) || self.node.shutdown.is_cancelled() {
            return;
        }
        let metrics = &self.node.metrics;
        if let Some(phase) = &status.phase {
            metrics.pod_phase(&self.pod.uid, phase);
        }
        let all_running = self.main.iter().all(|c| {
            c.state
                .as_ref()
                .is_some_and(|state| state.running.is_some())
        });
        if all_running && let Some(seen_at) = self.seen_at.take() {
            metrics.pod_started(seen_at.elapsed());
        }
        self.writer.set(status.clone());
        self.written = Some(status);
    }

    async fn finish(mut self, reason: StopReason) {
        if reason == StopReason::Evicted {
            // The final status (Failed, Evicted) stays in the store; the pod is
            // not run again, its owner replaces it.
            self.write_status();
            self.writer.flush().await;
        }
        if reason == StopReason::Deleted {
            self.write_status();
            self.writer.flush().await;
            let pod = &self.pod;
            match self
                .node
                .cluster
                .delete_pod(&pod.namespace, &pod.name, &pod.uid)
                .await
            {
                Ok(()) => tracing::info!("pod deleted"),
                Err(error) => tracing::warn!(error = %error_chain(&error), "deleting pod failed"),
            }
        }
        if reason != StopReason::Shutdown {
            self.node.driver.pod_finished(&self.pod.uid).await;
            let pod = &self.pod;
            if let Some(dir) = self
                .node
                .logs
                .forget_pod(&pod.namespace, &pod.name, &pod.uid)
            {
                let _ = tokio::fs::remove_dir_all(dir).await;
            }
            self.volumes.remove().await;
        }
        self.node.metrics.pod_gone(&self.pod.uid);
        tracing::info!(?reason, "pod worker stopped");
    }
}

fn has_size_limit(spec: &PodSpec) -> bool {
    spec.volumes
        .iter()
        .flatten()
        .any(|v| v.empty_dir.as_ref().is_some_and(|e| e.size_limit.is_some()))
}

/// The `sizeLimit` of the named emptyDir as the pod spells it.
fn size_limit_text(volumes: &[k8s_openapi::api::core::v1::Volume], name: &str) -> String {
    volumes
        .iter()
        .find(|v| v.name == name)
        .and_then(|v| v.empty_dir.as_ref()?.size_limit.as_ref())
        .map(|q| q.0.clone())
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
