//! The lifecycle of one container as an explicit state machine: a [`Phase`]
//! enum and one transition function, [`ContainerMachine::step`]. It does no I/O;
//! the runner performs what each phase asks for and feeds back the result.
//!
//! ```text
//!  Creating ──Prepared──▶ Starting ──Launched──▶ Running ──Exited(restart)──▶ CrashLoopBackOff
//!     │  ▲                                        │  └──Exited(no restart)─▶ Finished
//!     │  └──BackOffElapsed── PrepareBackOff       CrashLoopBackOff ──BackOffElapsed──▶ Creating
//!     └──PrepareFailed──────▶┘                    Running ──Stop──▶ Stopping ──Exited──▶ Finished
//! ```
//! `Starting` ends like `Running` when the process exits or is stopped before
//! it reported its launch. `Stop` in any waiting phase goes straight to `Finished`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::RestartPolicy;
use crate::backoff::{Backoff, format_delay};
use crate::driver::ExitStatus;

/// Exit code reported for a Wasm trap: 128 + SIGABRT, because a trap is the
/// sandbox aborting the program, which native programs report the same way.
pub const TRAP_EXIT_CODE: i32 = 134;
/// Exit code for a process the agent stopped (128 + SIGKILL, as kubelet reports).
pub const KILLED_EXIT_CODE: i32 = 137;
/// Exit code for a process that could not be started (kubelet's `StartError`).
pub const START_ERROR_EXIT_CODE: i32 = 128;

/// How soon a start that failed on its configuration is tried again. Fixed, not
/// a back-off: kubelet retries at every pod sync, so a ConfigMap created later
/// is picked up within seconds.
pub const CONFIG_RETRY: Duration = Duration::from_secs(5);

/// Where the container is in its lifecycle; each phase tells the runner what to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Fetch and compile the image, then start the process.
    Creating,
    /// Preparing failed; try again after `delay`.
    PrepareBackOff {
        reason: &'static str,
        message: String,
        delay: Duration,
    },
    /// The image is ready and the process is being started; it counts as
    /// running once the driver says it runs (for a served Wasm component: its
    /// node ports accept connections).
    Starting,
    /// The process runs; wait for it to exit.
    Running {
        started_at: Timestamp,
        since: Instant,
    },
    /// The process was asked to stop; wait for it to exit.
    Stopping {
        started_at: Timestamp,
        since: Instant,
    },
    /// It exited and will start again after `delay`.
    CrashLoopBackOff { delay: Duration },
    /// Nothing more will happen.
    Finished,
}

/// What happened, fed into [`ContainerMachine::step`].
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Prepared {
        image_id: String,
    },
    PrepareFailed {
        pull: bool,
        message: String,
    },
    /// The image is ready but the container's configuration is not (a missing
    /// ConfigMap, Secret or volume): wait with `reason` and try again.
    ConfigFailed {
        reason: &'static str,
        message: String,
    },
    Exited(Outcome),
    BackOffElapsed,
    Stop,
    /// The startup probe succeeded.
    Started,
    /// The readiness probe says the container is (not) ready.
    Ready(bool),
    /// The driver started the process, with its own id of the attempt
    /// (`docker://…`) if it has one.
    Launched {
        runtime_id: Option<String>,
    },
}

/// The result of one attempt, as it will appear in `state.terminated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub exit_code: i32,
    pub reason: &'static str,
    pub message: Option<String>,
}

impl Outcome {
    pub fn from_exit(exit: ExitStatus) -> Outcome {
        match exit {
            ExitStatus::Code(0) => Outcome {
                exit_code: 0,
                reason: "Completed",
                message: None,
            },
            ExitStatus::Code(code) => Outcome {
                exit_code: code,
                reason: "Error",
                message: None,
            },
            ExitStatus::Trap(text) => Outcome {
                exit_code: TRAP_EXIT_CODE,
                reason: "Error",
                message: Some(text),
            },
            ExitStatus::Killed => Outcome {
                exit_code: KILLED_EXIT_CODE,
                reason: "Error",
                message: None,
            },
            ExitStatus::OomKilled => Outcome {
                exit_code: KILLED_EXIT_CODE,
                reason: "OOMKilled",
                message: None,
            },
        }
    }

    pub fn start_error(message: String) -> Outcome {
        Outcome {
            exit_code: START_ERROR_EXIT_CODE,
            reason: "StartError",
            message: Some(message),
        }
    }
}

/// When a step happens: wall time for the status, monotonic time for durations.
#[derive(Debug, Clone, Copy)]
pub struct Moment {
    pub wall: Timestamp,
    pub mono: Instant,
}

impl Moment {
    pub fn now() -> Moment {
        Moment {
            wall: Timestamp::now(),
            mono: Instant::now(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Termination {
    outcome: Outcome,
    started_at: Timestamp,
    finished_at: Timestamp,
    container_id: String,
}

impl Termination {
    fn to_state(&self) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(self.container_id.clone()),
                exit_code: self.outcome.exit_code,
                reason: Some(self.outcome.reason.to_string()),
                message: self.outcome.message.clone(),
                started_at: Some(Time(self.started_at)),
                finished_at: Some(Time(self.finished_at)),
                signal: None,
            }),
            ..ContainerState::default()
        }
    }
}

/// Everything the agent knows about one container of one pod.
#[derive(Debug)]
pub struct ContainerMachine {
    name: String,
    image: String,
    pod_uid: String,
    /// `<pod>_<namespace>(<uid>)`, as kubelet names the pod in messages.
    pod_label: String,
    policy: RestartPolicy,
    phase: Phase,
    restart_count: u32,
    image_id: Option<String>,
    latest: Option<Termination>,
    before_latest: Option<Termination>,
    crash_backoff: Backoff,
    prepare_backoff: Backoff,
    prepare_failures: u32,
    /// Which probes gate `started` and `ready`.
    has_startup_probe: bool,
    has_readiness_probe: bool,
    /// While running: the startup probe passed (or there is none).
    started: bool,
    /// While running: readiness passed (or there is no readiness probe).
    ready: bool,
    /// The driver's id of the current attempt, when it has one of its own.
    runtime_id: Option<String>,
}

impl ContainerMachine {
    pub fn new(
        name: &str,
        image: &str,
        pod: (&str, &str, &str),
        policy: RestartPolicy,
    ) -> ContainerMachine {
        let (namespace, pod_name, uid) = pod;
        ContainerMachine {
            name: name.to_string(),
            image: image.to_string(),
            pod_uid: uid.to_string(),
            pod_label: format!("{pod_name}_{namespace}({uid})"),
            policy,
            phase: Phase::Creating,
            restart_count: 0,
            image_id: None,
            latest: None,
            before_latest: None,
            crash_backoff: Backoff::default(),
            prepare_backoff: Backoff::default(),
            prepare_failures: 0,
            has_startup_probe: false,
            has_readiness_probe: false,
            started: false,
            ready: false,
            runtime_id: None,
        }
    }

    /// Declares the container's probes: with a startup probe it is not
    /// `started` until that passes; with a readiness probe it is not `ready`
    /// until that passes.
    pub fn with_probes(mut self, startup: bool, readiness: bool) -> ContainerMachine {
        self.has_startup_probe = startup;
        self.has_readiness_probe = readiness;
        self
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn image(&self) -> &str {
        &self.image
    }

    pub fn restart_count(&self) -> u32 {
        self.restart_count
    }

    /// The id of the current (or next) attempt: the driver's own
    /// (`docker://<id>`) once it reported one, else
    /// `wasm://<pod uid>/<container>/<restart>`.
    pub fn container_id(&self) -> String {
        if let Some(id) = &self.runtime_id {
            return id.clone();
        }
        format!(
            "wasm://{}/{}/{}",
            self.pod_uid, self.name, self.restart_count
        )
    }

    /// `Some(true)` once finished with exit code 0, `Some(false)` once finished otherwise.
    pub fn finished(&self) -> Option<bool> {
        match self.phase {
            Phase::Finished => Some(
                self.latest
                    .as_ref()
                    .is_some_and(|t| t.outcome.exit_code == 0),
            ),
            _ => None,
        }
    }

    /// The one transition function. Inputs that make no sense in the current
    /// phase (a late result after a stop, say) leave the machine unchanged.
    pub fn step(&mut self, input: Input, at: Moment) {
        let phase = std::mem::replace(&mut self.phase, Phase::Finished);
        self.phase = match (phase, input) {
            (Phase::Creating, Input::Prepared { image_id }) => {
                self.image_id = Some(image_id);
                self.runtime_id = None;
                self.prepare_failures = 0;
                self.prepare_backoff.reset();
                self.started = false;
                self.ready = false;
                Phase::Starting
            }
            (Phase::Starting, Input::Launched { runtime_id }) => {
                self.runtime_id = runtime_id;
                self.started = !self.has_startup_probe;
                self.ready = self.started && !self.has_readiness_probe;
                Phase::Running {
                    started_at: at.wall,
                    since: at.mono,
                }
            }
            // The process ended, or was stopped, before it said it runs.
            (Phase::Starting, input @ (Input::Exited(_) | Input::Stop)) => {
                let running = Phase::Running {
                    started_at: at.wall,
                    since: at.mono,
                };
                self.phase = running;
                self.step(input, at);
                return;
            }
            (Phase::Creating, Input::PrepareFailed { pull, message }) => {
                self.prepare_failures += 1;
                let delay = self.prepare_backoff.next_delay(Duration::ZERO);
                let (reason, message) = match (pull, self.prepare_failures) {
                    (true, 1) => ("ErrImagePull", message),
                    (true, _) => (
                        "ImagePullBackOff",
                        format!("Back-off pulling image {:?}: {message}", self.image),
                    ),
                    (false, _) => ("CreateContainerError", message),
                };
                Phase::PrepareBackOff {
                    reason,
                    message,
                    delay,
                }
            }
            (Phase::Creating, Input::ConfigFailed { reason, message }) => Phase::PrepareBackOff {
                reason,
                message,
                delay: CONFIG_RETRY,
            },
            (Phase::PrepareBackOff { .. }, Input::BackOffElapsed) => Phase::Creating,
            (Phase::Running { started_at, since }, Input::Exited(outcome)) => {
                let restart = self.policy.restarts_after(outcome.exit_code);
                self.record(outcome, started_at, at);
                if restart {
                    let delay = self.crash_backoff.next_delay(at.mono - since);
                    Phase::CrashLoopBackOff { delay }
                } else {
                    Phase::Finished
                }
            }
            (phase @ Phase::Running { .. }, Input::Started) => {
                self.started = true;
                self.ready = !self.has_readiness_probe;
                phase
            }
            (phase @ Phase::Running { .. }, Input::Ready(ready)) => {
                self.ready = ready && self.started;
                phase
            }
            (Phase::Running { started_at, since }, Input::Stop) => {
                Phase::Stopping { started_at, since }
            }
            (Phase::Stopping { started_at, .. }, Input::Exited(outcome)) => {
                self.record(outcome, started_at, at);
                Phase::Finished
            }
            (Phase::CrashLoopBackOff { .. }, Input::BackOffElapsed) => {
                self.restart_count += 1;
                Phase::Creating
            }
            (
                Phase::Creating | Phase::PrepareBackOff { .. } | Phase::CrashLoopBackOff { .. },
                Input::Stop,
            ) => Phase::Finished,
            (phase, input) => {
                tracing::debug!(container = %self.name, ?phase, ?input, "input ignored in this phase");
                phase
            }
        };
    }

    fn record(&mut self, outcome: Outcome, started_at: Timestamp, at: Moment) {
        let termination = Termination {
            outcome,
            started_at,
            finished_at: at.wall,
            container_id: self.container_id(),
        };
        self.before_latest = self.latest.replace(termination);
    }

    /// The container's entry in the pod's `containerStatuses`.
    pub fn status(&self) -> ContainerStatus {
        let waiting = |reason: &str, message: Option<String>| ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_string()),
                message,
            }),
            ..ContainerState::default()
        };
        let running = |started_at: &Timestamp| ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..ContainerState::default()
        };
        let (state, last) = match &self.phase {
            Phase::Creating | Phase::Starting => (waiting("ContainerCreating", None), &self.latest),
            Phase::PrepareBackOff {
                reason, message, ..
            } => (waiting(reason, Some(message.clone())), &self.latest),
            Phase::Running { started_at, .. } | Phase::Stopping { started_at, .. } => {
                (running(started_at), &self.latest)
            }
            Phase::CrashLoopBackOff { delay } => {
                let message = format!(
                    "back-off {} restarting failed container={} pod={}",
                    format_delay(*delay),
                    self.name,
                    self.pod_label
                );
                (waiting("CrashLoopBackOff", Some(message)), &self.latest)
            }
            Phase::Finished => match &self.latest {
                Some(latest) => (latest.to_state(), &self.before_latest),
                None => (waiting("ContainerCreating", None), &None),
            },
        };
        let running_now = matches!(self.phase, Phase::Running { .. } | Phase::Stopping { .. });
        let container_id = if running_now {
            Some(self.container_id())
        } else {
            self.latest.as_ref().map(|t| t.container_id.clone())
        };
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone().unwrap_or_default(),
            container_id,
            ready: matches!(self.phase, Phase::Running { .. }) && self.ready,
            started: Some(running_now && self.started),
            restart_count: i32::try_from(self.restart_count).unwrap_or(i32::MAX),
            state: Some(state),
            last_state: Some(last.as_ref().map(Termination::to_state).unwrap_or_default()),
            ..ContainerStatus::default()
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
