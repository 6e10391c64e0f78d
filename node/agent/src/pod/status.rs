//! The pod's `status` from its containers' statuses, following kubelet's rules
//! for the phase and the standard conditions.

use k8s_openapi::api::core::v1::{ContainerStatus, HostIP, PodCondition, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::container::RestartPolicy;

/// What the pod's status is computed from.
pub struct StatusInputs<'a> {
    pub policy: RestartPolicy,
    pub init: &'a [ContainerStatus],
    pub main: &'a [ContainerStatus],
    /// The pod is being torn down and nothing of it will run again.
    pub terminal: bool,
    pub host_ip: &'a str,
    pub start_time: Timestamp,
    /// The last status written, so unchanged conditions keep their transition time.
    pub previous: Option<&'a PodStatus>,
    pub now: Timestamp,
}

fn exited_with(status: &ContainerStatus) -> Option<i32> {
    let state = status.state.as_ref()?;
    state.terminated.as_ref().map(|t| t.exit_code)
}

fn has_run_before(status: &ContainerStatus) -> bool {
    let last = status.last_state.as_ref();
    last.is_some_and(|last| last.terminated.is_some())
}

/// The pod phase, as kubelet's `getPhase` decides it. A terminal pod is judged
/// as if nothing restarts.
pub fn phase(
    policy: RestartPolicy,
    init: &[ContainerStatus],
    main: &[ContainerStatus],
    terminal: bool,
) -> &'static str {
    let policy = if terminal {
        RestartPolicy::Never
    } else {
        policy
    };
    let init_failed = init
        .iter()
        .any(|s| exited_with(s).is_some_and(|code| code != 0));
    if init_failed && policy == RestartPolicy::Never {
        return "Failed";
    }
    if !init.iter().all(|s| exited_with(s) == Some(0)) {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for status in main {
        let state = status.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(terminated) = state.terminated {
            stopped += 1;
            if terminated.exit_code == 0 {
                succeeded += 1;
            }
        } else if has_run_before(status) {
            // Waiting to restart after an exit.
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    match () {
        _ if waiting > 0 => "Pending",
        _ if running > 0 => "Running",
        _ if stopped == 0 => "Pending",
        _ if policy == RestartPolicy::Always => "Running",
        _ if stopped == succeeded => "Succeeded",
        _ if policy == RestartPolicy::Never => "Failed",
        _ => "Running",
    }
}

fn condition(
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    inputs: &StatusInputs<'_>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let previous = inputs
        .previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status);
    let since = previous
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(inputs.now));
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: if ok { None } else { reason.map(str::to_string) },
        message: if ok { None } else { message },
        last_transition_time: Some(since),
        last_probe_time: None,
    }
}

fn names(statuses: &[ContainerStatus], pick: impl Fn(&ContainerStatus) -> bool) -> Vec<&str> {
    statuses
        .iter()
        .filter(|s| pick(s))
        .map(|s| s.name.as_str())
        .collect()
}

/// The full `status` the agent writes for the pod.
pub fn pod_status(inputs: &StatusInputs<'_>) -> PodStatus {
    let phase = phase(inputs.policy, inputs.init, inputs.main, inputs.terminal);
    let completed = matches!(phase, "Succeeded" | "Failed");
    let not_initialized = names(inputs.init, |s| exited_with(s) != Some(0));
    let unready = names(inputs.main, |s| !s.ready);
    let ready = unready.is_empty() && !inputs.main.is_empty();
    let (unready_reason, unready_message) = if completed {
        ("PodCompleted", None)
    } else {
        (
            "ContainersNotReady",
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let conditions = vec![
        condition("PodReadyToStartContainers", !completed, None, None, inputs),
        condition(
            "Initialized",
            not_initialized.is_empty(),
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                not_initialized.join(" ")
            )),
            inputs,
        ),
        condition(
            "Ready",
            ready,
            Some(unready_reason),
            unready_message.clone(),
            inputs,
        ),
        condition(
            "ContainersReady",
            ready,
            Some(unready_reason),
            unready_message,
            inputs,
        ),
        condition("PodScheduled", true, None, None, inputs),
    ];
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(inputs.host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: inputs.host_ip.to_string(),
        }]),
        // Wasm pods share the node's network for now.
        pod_ip: Some(inputs.host_ip.to_string()),
        pod_ips: Some(vec![PodIP {
            ip: inputs.host_ip.to_string(),
        }]),
        start_time: Some(Time(inputs.start_time)),
        init_container_statuses: (!inputs.init.is_empty()).then(|| inputs.init.to_vec()),
        container_statuses: Some(inputs.main.to_vec()),
        ..PodStatus::default()
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
