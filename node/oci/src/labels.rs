//! The labels on every container the driver makes: which node made it and
//! which pod and container it belongs to, so an agent that restarts finds its
//! containers again (adopting or removing them) and never duplicates them.

use std::collections::HashMap;

use skiff_agent::driver::PodSandbox;

pub const NODE: &str = "io.skiff.node";
pub const POD_UID: &str = "io.skiff.pod.uid";
pub const POD_NAMESPACE: &str = "io.skiff.pod.namespace";
pub const POD_NAME: &str = "io.skiff.pod.name";
pub const CONTAINER: &str = "io.skiff.container";
pub const ATTEMPT: &str = "io.skiff.attempt";
/// The container name the pod's sandbox (pause) container carries.
pub const SANDBOX: &str = "POD";

pub fn of(node: &str, pod: &PodSandbox, container: &str, attempt: u32) -> HashMap<String, String> {
    HashMap::from([
        (NODE.to_string(), node.to_string()),
        (POD_UID.to_string(), pod.uid.clone()),
        (POD_NAMESPACE.to_string(), pod.namespace.clone()),
        (POD_NAME.to_string(), pod.name.clone()),
        (CONTAINER.to_string(), container.to_string()),
        (ATTEMPT.to_string(), attempt.to_string()),
    ])
}
