//! One container of a pod: how its process is described (argv, env), its
//! lifecycle state machine ([`machine`]) and the task that drives it ([`runner`]).

pub mod checks;
pub mod env;
pub mod machine;
pub mod probe;
pub mod runner;

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::Container;

use crate::driver::{PortSpec, ProcessLimits};

/// The pod's `restartPolicy`, deciding whether an exited container runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// Kubernetes defaults an absent policy to `Always`; unknown values are
    /// rejected by the API server's validation, so they fall back the same way.
    pub fn from_spec(value: Option<&str>) -> RestartPolicy {
        match value {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// Init containers must finish, so `Always` means "retry until it succeeds" for them.
    pub fn for_init_containers(self) -> RestartPolicy {
        match self {
            RestartPolicy::Always => RestartPolicy::OnFailure,
            other => other,
        }
    }

    pub fn restarts_after(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// The process's argv. With `command` set it replaces the image's entrypoint,
/// so argv is `command ++ args`. Without it a Wasm program has no entrypoint
/// list to fall back on, so argv\[0\] is the container's name, as a shell would
/// pass the program name.
pub fn argv(container: &Container) -> Vec<String> {
    let args = container.args.iter().flatten().cloned();
    match &container.command {
        Some(command) if !command.is_empty() => command.iter().cloned().chain(args).collect(),
        _ => std::iter::once(container.name.clone())
            .chain(args)
            .collect(),
    }
}

/// The container's `resources.limits` that the driver enforces.
pub fn limits(container: &Container) -> ProcessLimits {
    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    let get = |name: &str| limits.and_then(|l| l.get(name)).map(|q| q.0.as_str());
    ProcessLimits {
        // A negative or malformed limit is no limit (validation refuses them).
        memory_bytes: get("memory")
            .and_then(|text| skiff_quantity::parse(text).ok())
            .and_then(|q| u64::try_from(q.value()).ok()),
        cpu_cores: get("cpu")
            .and_then(|text| skiff_quantity::parse(text).ok())
            .map(|q| q.as_f64()),
    }
}

/// The container's TCP ports. A port without `hostIP` is served on loopback:
/// the routing layer on the node forwards to it.
pub fn ports(container: &Container) -> Vec<PortSpec> {
    let valid = |port: i32| u16::try_from(port).ok().filter(|p| *p != 0);
    container
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            Some(PortSpec {
                name: p.name.clone(),
                container_port: valid(p.container_port)?,
                host_ip: p
                    .host_ip
                    .as_deref()
                    .and_then(|ip| ip.parse().ok())
                    .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                host_port: p.host_port.and_then(valid),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Container {
            name: "web".into(),
            command: command.map(strings),
            args: args.map(strings),
            ..Container::default()
        }
    }

    #[test]
    fn argv_uses_command_then_args() {
        let c = container(Some(&["/app.wasm", "--serve"]), Some(&["-v"]));
        assert_eq!(argv(&c), ["/app.wasm", "--serve", "-v"]);
    }

    #[test]
    fn argv_without_command_starts_with_the_container_name() {
        assert_eq!(argv(&container(None, Some(&["a", "b"]))), ["web", "a", "b"]);
        assert_eq!(argv(&container(None, None)), ["web"]);
        assert_eq!(argv(&container(Some(&[]), Some(&["x"]))), ["web", "x"]);
    }

    #[test]
    fn restart_policy_decisions() {
        assert_eq!(RestartPolicy::from_spec(None), RestartPolicy::Always);
        assert_eq!(
            RestartPolicy::from_spec(Some("Never")),
            RestartPolicy::Never
        );
        assert!(RestartPolicy::Always.restarts_after(0));
        assert!(!RestartPolicy::OnFailure.restarts_after(0));
        assert!(RestartPolicy::OnFailure.restarts_after(2));
        assert!(!RestartPolicy::Never.restarts_after(2));
        assert_eq!(
            RestartPolicy::Always.for_init_containers(),
            RestartPolicy::OnFailure
        );
    }
}
