use std::collections::VecDeque;
use std::sync::Mutex;

use super::*;

/// Answers checks from a script; once it runs out, repeats the last answer.
struct Scripted {
    answers: Mutex<VecDeque<bool>>,
    last: Mutex<bool>,
}

impl Scripted {
    fn new(answers: &[bool]) -> Scripted {
        Scripted {
            answers: Mutex::new(answers.iter().copied().collect()),
            last: Mutex::new(*answers.last().unwrap()),
        }
    }
}

impl Checker for Scripted {
    fn check<'a>(&'a self, _action: &'a Action, _timeout: Duration) -> CheckFuture<'a> {
        let answer = self.answers.lock().unwrap().pop_front();
        let answer = answer.unwrap_or(*self.last.lock().unwrap());
        Box::pin(async move { if answer { Ok(()) } else { Err("boom".into()) } })
    }
}

fn spec(kind: ProbeKind, failure_threshold: u32) -> ProbeSpec {
    ProbeSpec {
        kind,
        action: Action::Exec { command: vec![] },
        initial_delay: Duration::from_secs(5),
        period: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        success_threshold: 1,
        failure_threshold,
    }
}

async fn collect(probes: Probes, checker: Scripted, for_how_long: Duration) -> Vec<Verdict> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _ = tokio::time::timeout(for_how_long, supervise(probes, &checker, tx)).await;
    let mut verdicts = Vec::new();
    while let Ok(v) = rx.try_recv() {
        verdicts.push(v);
    }
    verdicts
}

fn unhealthy(kind: ProbeKind) -> Verdict {
    Verdict::Unhealthy {
        kind,
        message: "boom".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn liveness_kills_after_the_failure_threshold() {
    let probes = Probes {
        liveness: Some(spec(ProbeKind::Liveness, 3)),
        ..Probes::default()
    };
    let verdicts = collect(
        probes,
        Scripted::new(&[true, false, true, false, false, false]),
        Duration::from_secs(60),
    )
    .await;
    use ProbeKind::Liveness;
    assert_eq!(
        verdicts,
        [
            unhealthy(Liveness),
            unhealthy(Liveness),
            unhealthy(Liveness),
            unhealthy(Liveness),
            Verdict::Kill { kind: Liveness }
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_flips_at_thresholds() {
    let probes = Probes {
        readiness: Some(spec(ProbeKind::Readiness, 2)),
        ..Probes::default()
    };
    let verdicts = collect(
        probes,
        Scripted::new(&[false, true, false, false, true]),
        Duration::from_secs(30),
    )
    .await;
    use ProbeKind::Readiness;
    assert_eq!(
        verdicts,
        [
            unhealthy(Readiness),
            Verdict::Ready(true),
            unhealthy(Readiness),
            unhealthy(Readiness),
            Verdict::Ready(false),
            Verdict::Ready(true),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn startup_gates_the_other_probes() {
    let probes = Probes {
        startup: Some(spec(ProbeKind::Startup, 10)),
        readiness: Some(spec(ProbeKind::Readiness, 1)),
        ..Probes::default()
    };
    let verdicts = collect(
        probes,
        Scripted::new(&[false, true]),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        verdicts,
        [
            unhealthy(ProbeKind::Startup),
            Verdict::Started,
            Verdict::Ready(true)
        ]
    );
}

#[test]
fn probes_take_kubelets_defaults_and_named_ports() {
    use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction};
    let container = Container {
        name: "web".into(),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http".into()),
                ..HTTPGetAction::default()
            }),
            ..Probe::default()
        }),
        ..Container::default()
    };
    let probes = Probes::of(&container);
    let readiness = probes.readiness.unwrap();
    assert_eq!(
        readiness.action,
        Action::Http {
            host: None,
            port: 8080,
            path: "/".into(),
            headers: vec![]
        }
    );
    assert_eq!(readiness.period, Duration::from_secs(10));
    assert_eq!(readiness.failure_threshold, 3);
    assert!(probes.liveness.is_none());
}
