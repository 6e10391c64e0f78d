//! Startup, liveness and readiness probes of one running container, with
//! kubelet's timing (`initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`,
//! `successThreshold`, `failureThreshold`) and actions (`httpGet`, `tcpSocket`,
//! `exec`). The prober only reports [`Verdict`]s; the runner turns them into the
//! container's `started`/`ready`, `Unhealthy` events and restarts.
//!
//! A startup probe, if any, runs first; liveness and readiness start once it
//! succeeds. Readiness starts out false when there is a readiness probe.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// As kubelet capitalises it in events: "Liveness probe failed: ...".
    pub fn label(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// What the prober tells the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The startup probe succeeded.
    Started,
    /// The readiness probe crossed a threshold.
    Ready(bool),
    /// One check failed (an `Unhealthy` event).
    Unhealthy { kind: ProbeKind, message: String },
    /// Liveness or startup failed `failureThreshold` times in a row: restart.
    Kill { kind: ProbeKind },
}

/// What a check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Http {
        host: Option<String>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: Option<String>,
        port: u16,
    },
    Exec {
        command: Vec<String>,
    },
    /// gRPC probes, or a port name the container does not declare.
    Unsupported(String),
}

pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Performs checks; the runner's implementation knows where the container serves.
pub trait Checker: Send + Sync {
    fn check<'a>(&'a self, action: &'a Action, timeout: Duration) -> CheckFuture<'a>;
}

/// One probe of the container's spec, with kubelet's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl ProbeSpec {
    fn of(kind: ProbeKind, probe: &Probe, container: &Container) -> ProbeSpec {
        let seconds = |value: Option<i32>, default: u64| {
            Duration::from_secs(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
        };
        let count = |value: Option<i32>, default: u32| {
            value
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        ProbeSpec {
            kind,
            action: action(probe, container),
            initial_delay: seconds(probe.initial_delay_seconds, 0),
            period: seconds(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// The container's probes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probes {
    pub startup: Option<ProbeSpec>,
    pub liveness: Option<ProbeSpec>,
    pub readiness: Option<ProbeSpec>,
}

impl Probes {
    pub fn of(container: &Container) -> Probes {
        let spec = |kind, probe: &Option<Probe>| {
            probe
                .as_ref()
                .map(|probe| ProbeSpec::of(kind, probe, container))
        };
        Probes {
            startup: spec(ProbeKind::Startup, &container.startup_probe),
            liveness: spec(ProbeKind::Liveness, &container.liveness_probe),
            readiness: spec(ProbeKind::Readiness, &container.readiness_probe),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.startup.is_none() && self.liveness.is_none() && self.readiness.is_none()
    }
}

fn action(probe: &Probe, container: &Container) -> Action {
    let port = |port: &IntOrString| match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    };
    if let Some(http) = &probe.http_get {
        let Some(number) = port(&http.port) else {
            return Action::Unsupported(format!("unknown port {:?}", http.port));
        };
        return Action::Http {
            host: http.host.clone().filter(|h| !h.is_empty()),
            port: number,
            path: http
                .path
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into()),
            headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(number) = port(&tcp.port) else {
            return Action::Unsupported(format!("unknown port {:?}", tcp.port));
        };
        return Action::Tcp {
            host: tcp.host.clone().filter(|h| !h.is_empty()),
            port: number,
        };
    }
    if let Some(exec) = &probe.exec {
        return Action::Exec {
            command: exec.command.clone().unwrap_or_default(),
        };
    }
    Action::Unsupported("this node runs httpGet, tcpSocket and exec probes only".into())
}

/// Runs the probes until the container ends (the caller drops this future) or
/// a liveness/startup failure asks for a restart.
pub async fn supervise(
    probes: Probes,
    checker: &dyn Checker,
    verdicts: mpsc::UnboundedSender<Verdict>,
) {
    if let Some(startup) = &probes.startup
        && !watch(startup, checker, &verdicts).await
    {
        return;
    }
    let liveness = async {
        if let Some(spec) = &probes.liveness {
            watch(spec, checker, &verdicts).await;
        }
    };
    let readiness = async {
        if let Some(spec) = &probes.readiness {
            watch(spec, checker, &verdicts).await;
        }
    };
    // Liveness ending means a restart was asked for; readiness never ends.
    tokio::select! {
        () = liveness, if probes.liveness.is_some() => {}
        () = readiness, if probes.readiness.is_some() => {}
        else => {}
    }
}

/// One probe's loop. Returns true when a startup probe succeeded, false when
/// it asked for the container to be killed.
async fn watch(
    spec: &ProbeSpec,
    checker: &dyn Checker,
    verdicts: &mpsc::UnboundedSender<Verdict>,
) -> bool {
    let send = |verdict| {
        let _ = verdicts.send(verdict);
    };
    tokio::time::sleep(spec.initial_delay).await;
    let (mut successes, mut failures) = (0u32, 0u32);
    let mut ready = false;
    loop {
        match checker.check(&spec.action, spec.timeout).await {
            Ok(()) => {
                successes += 1;
                failures = 0;
            }
            Err(message) => {
                failures += 1;
                successes = 0;
                send(Verdict::Unhealthy {
                    kind: spec.kind,
                    message,
                });
            }
        }
        match spec.kind {
            ProbeKind::Startup if successes >= 1 => {
                send(Verdict::Started);
                return true;
            }
            ProbeKind::Startup | ProbeKind::Liveness if failures >= spec.failure_threshold => {
                send(Verdict::Kill { kind: spec.kind });
                return false;
            }
            ProbeKind::Readiness if !ready && successes >= spec.success_threshold => {
                ready = true;
                send(Verdict::Ready(true));
            }
            ProbeKind::Readiness if ready && failures >= spec.failure_threshold => {
                ready = false;
                send(Verdict::Ready(false));
            }
            _ => {}
        }
        tokio::time::sleep(spec.period).await;
    }
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
