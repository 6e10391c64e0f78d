//! One pod on this node: its status computation ([`status`]), the stages of its
//! lifecycle ([`stage`]) and the worker task that runs it ([`worker`]).

pub mod stage;
pub mod status;
pub mod worker;
pub mod writer;

use std::fmt;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};

/// Names a pod on this node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodIdentity {
    /// `None` when the pod lacks a name or uid (the API server always sets both).
    pub fn of(pod: &Pod) -> Option<PodIdentity> {
        Some(PodIdentity {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            name: pod.metadata.name.clone()?,
            uid: pod.metadata.uid.clone()?,
        })
    }

    /// `<name>_<namespace>(<uid>)`, as kubelet names pods in messages.
    pub fn label(&self) -> String {
        format!("{}_{}({})", self.name, self.namespace, self.uid)
    }

    pub fn object_reference(&self, resource_version: Option<String>) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Pod".to_string()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            resource_version,
            field_path: None,
        }
    }
}

impl fmt::Display for PodIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
