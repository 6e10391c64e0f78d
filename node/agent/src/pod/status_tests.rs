use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
};

use super::*;
use RestartPolicy::{Always, Never, OnFailure};

fn with_state(name: &str, state: ContainerState, last_exit: Option<i32>) -> ContainerStatus {
    let last_state = last_exit.map(|code| ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    });
    ContainerStatus {
        name: name.into(),
        ready: state.running.is_some(),
        state: Some(state),
        last_state,
        ..ContainerStatus::default()
    }
}

fn waiting(name: &str, last_exit: Option<i32>) -> ContainerStatus {
    let state = ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some("ContainerCreating".into()),
            message: None,
        }),
        ..ContainerState::default()
    };
    with_state(name, state, last_exit)
}

fn running(name: &str) -> ContainerStatus {
    let state = ContainerState {
        running: Some(ContainerStateRunning { started_at: None }),
        ..ContainerState::default()
    };
    with_state(name, state, None)
}

fn exited(name: &str, code: i32) -> ContainerStatus {
    let state = ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    };
    with_state(name, state, None)
}

#[test]
fn phase_follows_the_containers() {
    assert_eq!(phase(Always, &[], &[waiting("a", None)], false), "Pending");
    assert_eq!(
        phase(Always, &[], &[running("a"), waiting("b", None)], false),
        "Pending"
    );
    assert_eq!(phase(Always, &[], &[running("a")], false), "Running");
    assert_eq!(
        phase(Never, &[], &[running("a"), exited("b", 1)], false),
        "Running"
    );
}

#[test]
fn phase_for_each_restart_policy() {
    // Always: exits always restart.
    assert_eq!(phase(Always, &[], &[exited("a", 0)], false), "Running");
    assert_eq!(
        phase(Always, &[], &[waiting("a", Some(1))], false),
        "Running"
    );
    // OnFailure: success is final, failure restarts.
    assert_eq!(phase(OnFailure, &[], &[exited("a", 0)], false), "Succeeded");
    assert_eq!(
        phase(
            OnFailure,
            &[],
            &[exited("a", 0), waiting("b", Some(2))],
            false
        ),
        "Running"
    );
    // Never: the first exit is final.
    assert_eq!(
        phase(Never, &[], &[exited("a", 0), exited("b", 0)], false),
        "Succeeded"
    );
    assert_eq!(
        phase(Never, &[], &[exited("a", 0), exited("b", 1)], false),
        "Failed"
    );
}

#[test]
fn a_terminal_pod_is_judged_as_if_nothing_restarts() {
    assert_eq!(phase(Always, &[], &[exited("a", 137)], true), "Failed");
    assert_eq!(phase(Always, &[], &[exited("a", 0)], true), "Succeeded");
}

#[test]
fn init_containers_gate_the_phase() {
    let main = [waiting("a", None)];
    assert_eq!(phase(Always, &[running("init")], &main, false), "Pending");
    assert_eq!(
        phase(OnFailure, &[waiting("init", Some(1))], &main, false),
        "Pending"
    );
    assert_eq!(phase(Never, &[exited("init", 1)], &main, false), "Failed");
    assert_eq!(
        phase(Never, &[exited("init", 0)], &[running("a")], false),
        "Running"
    );
}

fn inputs<'a>(
    main: &'a [ContainerStatus],
    previous: Option<&'a PodStatus>,
    now: i64,
) -> StatusInputs<'a> {
    StatusInputs {
        policy: Always,
        init: &[],
        main,
        terminal: false,
        host_ip: "127.0.0.1",
        start_time: Timestamp::from_second(1_000).unwrap(),
        previous,
        now: Timestamp::from_second(now).unwrap(),
    }
}

fn find<'a>(status: &'a PodStatus, type_: &str) -> &'a PodCondition {
    let conditions = status.conditions.as_ref().unwrap();
    conditions.iter().find(|c| c.type_ == type_).unwrap()
}

#[test]
fn conditions_report_readiness_and_keep_transition_times() {
    let pending = [waiting("a", None), running("b")];
    let first = pod_status(&inputs(&pending, None, 2_000));
    assert_eq!(first.phase.as_deref(), Some("Pending"));
    assert_eq!(first.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(first.pod_ip.as_deref(), Some("127.0.0.1"));
    let ready = find(&first, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [a]")
    );
    assert_eq!(find(&first, "PodScheduled").status, "True");
    assert_eq!(find(&first, "Initialized").status, "True");

    let same = pod_status(&inputs(&pending, Some(&first), 3_000));
    assert_eq!(same, first, "nothing changed, so nothing to patch");

    let all_running = [running("a"), running("b")];
    let later = pod_status(&inputs(&all_running, Some(&first), 4_000));
    assert_eq!(later.phase.as_deref(), Some("Running"));
    let ready = find(&later, "Ready");
    assert_eq!(ready.status, "True");
    assert_eq!(
        ready.last_transition_time,
        Some(Time(Timestamp::from_second(4_000).unwrap()))
    );
    assert_eq!(
        find(&later, "PodScheduled").last_transition_time,
        Some(Time(Timestamp::from_second(2_000).unwrap()))
    );
}
