use std::time::Duration;

use super::*;

struct Clock {
    wall: Timestamp,
    mono: Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            wall: Timestamp::from_second(1_700_000_000).unwrap(),
            mono: Instant::now(),
        }
    }

    fn advance(&mut self, secs: u64) -> Moment {
        self.wall += Duration::from_secs(secs);
        self.mono += Duration::from_secs(secs);
        self.at()
    }

    fn at(&self) -> Moment {
        Moment {
            wall: self.wall,
            mono: self.mono,
        }
    }
}

fn machine(policy: RestartPolicy) -> ContainerMachine {
    ContainerMachine::new("app", "oci://reg/app:1", ("ns", "pod", "u1"), policy)
}

fn waiting(m: &ContainerMachine) -> (String, Option<String>) {
    let waiting = m.status().state.unwrap().waiting.expect("waiting state");
    (waiting.reason.unwrap(), waiting.message)
}

/// Prepared and launched: the container runs.
fn start(m: &mut ContainerMachine, at: Moment) {
    m.step(prepared(), at);
    m.step(launched(None), at);
}

fn launched(runtime_id: Option<&str>) -> Input {
    Input::Launched {
        runtime_id: runtime_id.map(str::to_string),
    }
}

fn prepared() -> Input {
    Input::Prepared {
        image_id: "sha256:aa".into(),
    }
}

fn exited(code: i32) -> Input {
    Input::Exited(Outcome::from_exit(ExitStatus::Code(code)))
}

#[test]
fn crash_loop_and_back_to_running() {
    let mut clock = Clock::new();
    let mut m = machine(RestartPolicy::Always);
    assert_eq!(waiting(&m).0, "ContainerCreating");

    start(&mut m, clock.at());
    let status = m.status();
    assert!(status.ready);
    assert_eq!(status.image_id, "sha256:aa");
    assert_eq!(status.container_id.as_deref(), Some("wasm://u1/app/0"));
    assert!(status.state.unwrap().running.is_some());

    m.step(exited(3), clock.advance(5));
    assert_eq!(
        m.phase(),
        &Phase::CrashLoopBackOff {
            delay: Duration::from_secs(10)
        }
    );
    let (reason, message) = waiting(&m);
    assert_eq!(reason, "CrashLoopBackOff");
    assert_eq!(
        message.unwrap(),
        "back-off 10s restarting failed container=app pod=pod_ns(u1)"
    );
    let status = m.status();
    assert!(!status.ready);
    assert_eq!(status.restart_count, 0);
    let last = status.last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));

    m.step(Input::BackOffElapsed, clock.advance(10));
    assert_eq!(m.phase(), &Phase::Creating);
    assert_eq!(m.restart_count(), 1);
    start(&mut m, clock.at());
    let status = m.status();
    assert!(status.ready);
    assert_eq!(status.restart_count, 1);
    assert_eq!(status.container_id.as_deref(), Some("wasm://u1/app/1"));
    let last = status.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.container_id.as_deref(), Some("wasm://u1/app/0"));

    m.step(exited(0), clock.advance(1));
    assert_eq!(
        waiting(&m).1.unwrap(),
        "back-off 20s restarting failed container=app pod=pod_ns(u1)"
    );
}

#[test]
fn a_long_run_resets_the_crash_back_off() {
    let mut clock = Clock::new();
    let mut m = machine(RestartPolicy::OnFailure);
    for expected in [10, 20, 40] {
        start(&mut m, clock.at());
        m.step(exited(1), clock.advance(1));
        assert_eq!(
            m.phase(),
            &Phase::CrashLoopBackOff {
                delay: Duration::from_secs(expected)
            }
        );
        m.step(Input::BackOffElapsed, clock.advance(expected));
    }
    start(&mut m, clock.at());
    m.step(exited(1), clock.advance(600));
    assert_eq!(
        m.phase(),
        &Phase::CrashLoopBackOff {
            delay: Duration::from_secs(10)
        }
    );
}

#[test]
fn pull_failures_go_from_err_image_pull_to_back_off() {
    let mut clock = Clock::new();
    let mut m = machine(RestartPolicy::Never);
    let failed = || Input::PrepareFailed {
        pull: true,
        message: "connection refused".into(),
    };
    m.step(failed(), clock.at());
    assert_eq!(
        waiting(&m),
        ("ErrImagePull".into(), Some("connection refused".into()))
    );
    assert!(matches!(m.phase(), Phase::PrepareBackOff { delay, .. } if delay.as_secs() == 10));

    m.step(Input::BackOffElapsed, clock.advance(10));
    assert_eq!(waiting(&m).0, "ContainerCreating");
    m.step(failed(), clock.at());
    let (reason, message) = waiting(&m);
    assert_eq!(reason, "ImagePullBackOff");
    assert_eq!(
        message.unwrap(),
        "Back-off pulling image \"oci://reg/app:1\": connection refused"
    );
    assert!(matches!(m.phase(), Phase::PrepareBackOff { delay, .. } if delay.as_secs() == 20));

    m.step(Input::BackOffElapsed, clock.advance(20));
    start(&mut m, clock.at());
    assert!(m.status().ready);
    assert_eq!(m.restart_count(), 0, "pull retries are not restarts");
}

#[test]
fn an_invalid_image_is_a_create_container_error() {
    let mut m = machine(RestartPolicy::Always);
    m.step(
        Input::PrepareFailed {
            pull: false,
            message: "not a wasm module".into(),
        },
        Clock::new().at(),
    );
    assert_eq!(
        waiting(&m),
        (
            "CreateContainerError".into(),
            Some("not a wasm module".into())
        )
    );
}

#[test]
fn never_finishes_after_one_run() {
    for (code, reason, success) in [(0, "Completed", true), (1, "Error", false)] {
        let mut clock = Clock::new();
        let mut m = machine(RestartPolicy::Never);
        start(&mut m, clock.at());
        m.step(exited(code), clock.advance(2));
        assert_eq!(m.phase(), &Phase::Finished);
        assert_eq!(m.finished(), Some(success));
        let status = m.status();
        let terminated = status.state.unwrap().terminated.unwrap();
        assert_eq!(terminated.exit_code, code);
        assert_eq!(terminated.reason.as_deref(), Some(reason));
        assert_eq!(terminated.container_id.as_deref(), Some("wasm://u1/app/0"));
        assert_eq!(status.last_state, Some(ContainerState::default()));
    }
}

#[test]
fn stop_while_running_finishes_with_the_kill() {
    let mut clock = Clock::new();
    let mut m = machine(RestartPolicy::Always);
    start(&mut m, clock.at());
    m.step(Input::Stop, clock.advance(1));
    assert!(matches!(m.phase(), Phase::Stopping { .. }));
    assert!(!m.status().ready);
    m.step(
        Input::Exited(Outcome::from_exit(ExitStatus::Killed)),
        clock.advance(1),
    );
    assert_eq!(m.phase(), &Phase::Finished);
    let terminated = m.status().state.unwrap().terminated.unwrap();
    assert_eq!(terminated.exit_code, KILLED_EXIT_CODE);
}

#[test]
fn traps_and_start_errors_are_failures() {
    let trap = Outcome::from_exit(ExitStatus::Trap("unreachable".into()));
    assert_eq!(trap.exit_code, TRAP_EXIT_CODE);
    assert_eq!(trap.reason, "Error");
    assert_eq!(trap.message.as_deref(), Some("unreachable"));
    let start = Outcome::start_error("no memory".into());
    assert_eq!((start.exit_code, start.reason), (128, "StartError"));
}

#[test]
fn stray_inputs_are_ignored() {
    let mut m = machine(RestartPolicy::Always);
    m.step(Input::BackOffElapsed, Clock::new().at());
    assert_eq!(m.phase(), &Phase::Creating);
    m.step(Input::Stop, Clock::new().at());
    m.step(prepared(), Clock::new().at());
    assert_eq!(m.phase(), &Phase::Finished);
}

#[test]
fn a_driver_id_replaces_the_agent_id_for_its_attempt_only() {
    let mut clock = Clock::new();
    let mut m = machine(RestartPolicy::Always);
    m.step(prepared(), clock.at());
    m.step(launched(Some("docker://abc")), clock.at());
    assert_eq!(m.status().container_id.as_deref(), Some("docker://abc"));

    m.step(exited(1), clock.advance(1));
    let last = m.status().last_state.unwrap().terminated.unwrap();
    assert_eq!(last.container_id.as_deref(), Some("docker://abc"));

    // The next attempt has no id of the driver's until it reports one.
    m.step(Input::BackOffElapsed, clock.advance(10));
    m.step(prepared(), clock.at());
    m.step(launched(None), clock.at());
    assert_eq!(m.status().container_id.as_deref(), Some("wasm://u1/app/1"));
}

#[test]
fn a_container_runs_once_its_process_was_launched() {
    let mut clock = Clock::new();
    let mut m = machine(RestartPolicy::Always);
    m.step(prepared(), clock.at());
    assert_eq!(m.phase(), &Phase::Starting);
    let status = m.status();
    assert_eq!(waiting(&m).0, "ContainerCreating");
    assert!(!status.ready);
    assert_eq!(status.started, Some(false));
    assert_eq!(status.image_id, "sha256:aa");

    m.step(launched(None), clock.advance(1));
    let status = m.status();
    assert!(status.ready);
    let running = status.state.unwrap().running.unwrap();
    assert_eq!(running.started_at.unwrap().0, clock.wall, "from the launch");
}

#[test]
fn a_process_that_ends_before_its_launch_is_reported_exits_as_usual() {
    let mut clock = Clock::new();
    let mut m = machine(RestartPolicy::Never);
    m.step(prepared(), clock.at());
    m.step(exited(2), clock.advance(1));
    assert_eq!(m.phase(), &Phase::Finished);
    let terminated = m.status().state.unwrap().terminated.unwrap();
    assert_eq!(terminated.exit_code, 2);

    let mut m = machine(RestartPolicy::Always);
    m.step(prepared(), clock.at());
    m.step(Input::Stop, clock.at());
    assert!(matches!(m.phase(), Phase::Stopping { .. }));
    m.step(exited(137), clock.advance(1));
    assert_eq!(m.phase(), &Phase::Finished);
}
