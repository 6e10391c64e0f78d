//! The task that drives one container: it performs what the machine's phase
//! asks for (prepare, run, wait out a back-off), feeds the result back, and
//! reports every new status to the pod worker.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerStatus};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::machine::{ContainerMachine, Input, Moment, Outcome, Phase};
use super::{argv, environment, ports};
use crate::cluster::Cluster;
use crate::driver::{
    ContainerDriver, ImagePullPolicy, PodSandbox, PreparedImage, ProcessContext, ProcessSpec,
    PullRequest, error_chain,
};
use crate::events::{EventRecorder, EventType};
use crate::logs::LogBook;
use crate::pod::PodIdentity;
use crate::ports::PortTable;

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
    /// The pod as the driver sees it (runtime class, grace period).
    pub sandbox: Arc<PodSandbox>,
}

pub struct ContainerRunner {
    slot: Slot,
    spec: Container,
    machine: ContainerMachine,
    context: RunnerContext,
    cancel: CancellationToken,
    prepared: Option<PreparedImage>,
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
        }
    }

    /// Runs the container until it finishes for good or `cancel` stops it.
    pub async fn run(mut self) {
        self.warn_about_unsupported_env().await;
        self.report();
        loop {
            let input = match self.machine.phase() {
                Phase::Creating => self.prepare().await,
                Phase::PrepareBackOff { delay, .. } | Phase::CrashLoopBackOff { delay } => {
                    self.back_off(*delay).await
                }
                Phase::Running { .. } => self.run_process().await,
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

    async fn warn_about_unsupported_env(&self) {
        let unsupported = environment(&self.spec).unsupported;
        if !unsupported.is_empty() {
            let message = format!(
                "env {} uses valueFrom, which this node does not support yet; starting without it",
                unsupported.join(", ")
            );
            self.event(EventType::Warning, "EnvNotSupported", message)
                .await;
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
                let message = format!("Successfully pulled image {image:?} in {took:.2?}");
                self.event(EventType::Normal, "Pulled", message).await;
                let image_id = prepared.image_id().to_string();
                self.prepared = Some(prepared);
                Input::Prepared { image_id }
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
        let Some(prepared) = self.prepared.clone() else {
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
        let process = ProcessSpec {
            args: argv(&self.spec),
            env: environment(&self.spec).vars,
            stdout: Box::new(attempt.stdout),
            stderr: Box::new(attempt.stderr),
            ports: ports(&self.spec),
            ports_report: Some({
                let (table, pod, name) = (self.context.ports.clone(), pod.clone(), name.clone());
                Box::new(move |served| table.serving(&pod, &name, &served))
            }),
            context: Some(ProcessContext {
                pod: Arc::clone(&self.context.sandbox),
                container: Arc::new(self.spec.clone()),
                restart_count: self.machine.restart_count(),
            }),
        };
        self.event(
            EventType::Normal,
            "Created",
            format!("Created container: {name}"),
        )
        .await;
        self.event(
            EventType::Normal,
            "Started",
            format!("Started container {name}"),
        )
        .await;
        let driver = Arc::clone(&self.context.driver);
        let process_cancel = self.cancel.child_token();
        let attempt_done = async {
            let (result, ()) = tokio::join!(
                driver.run(&prepared, process, process_cancel),
                attempt.pump.run()
            );
            result
        };
        tokio::pin!(attempt_done);
        // A stop wins over an exit seen at the same moment: the process's own
        // token is a child of `cancel`, so both fire together.
        let result = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => {
                self.machine.step(Input::Stop, Moment::now());
                self.report();
                self.event(EventType::Normal, "Killing", format!("Stopping container {name}")).await;
                attempt_done.await
            }
            result = &mut attempt_done => result,
        };
        self.context.ports.stopped(&self.context.pod, &name);
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
