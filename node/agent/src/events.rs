//! Kubernetes Events about a pod (core/v1, as kubelet writes them), so that
//! `kubectl describe pod` and `kubectl get events` tell the user what happened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;

pub const COMPONENT: &str = "kubelet";

/// Normal events say what happened; warnings say what went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Records events about one pod. Cheap to clone; the pod's resourceVersion is
/// kept current by its worker.
#[derive(Clone)]
pub struct EventRecorder {
    cluster: Arc<dyn Cluster>,
    node_name: Arc<str>,
    pod: Arc<Mutex<ObjectReference>>,
    /// Set when the agent shuts down: the API server may be gone, so stay quiet.
    shutdown: CancellationToken,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl EventRecorder {
    pub fn new(
        cluster: Arc<dyn Cluster>,
        node_name: &str,
        pod: ObjectReference,
        shutdown: CancellationToken,
    ) -> EventRecorder {
        EventRecorder {
            cluster,
            node_name: node_name.into(),
            pod: Arc::new(Mutex::new(pod)),
            shutdown,
        }
    }

    pub fn set_resource_version(&self, resource_version: Option<String>) {
        self.pod_ref().resource_version = resource_version;
    }

    /// Records an event; failures are logged, never fatal (events are best effort).
    /// `container` names the container the event is about, if any.
    pub async fn record(
        &self,
        kind: EventType,
        reason: &str,
        container: Option<&str>,
        message: String,
    ) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let mut involved = self.pod_ref().clone();
        involved.field_path = container.map(|name| format!("spec.containers{{{name}}}"));
        let event = build_event(
            &self.node_name,
            involved,
            kind,
            reason,
            message,
            Timestamp::now(),
        );
        if let Err(error) = self.cluster.create_event(&event).await {
            tracing::warn!(error = %crate::driver::error_chain(&error), reason, "recording event failed");
        }
    }

    fn pod_ref(&self) -> std::sync::MutexGuard<'_, ObjectReference> {
        self.pod
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The Event object itself, named `<object>.<unique hex>` as kubelet names them.
pub fn build_event(
    node_name: &str,
    involved: ObjectReference,
    kind: EventType,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Event {
    let object = involved.name.clone().unwrap_or_default();
    let unique =
        (now.as_nanosecond() as u64).wrapping_add(SEQUENCE.fetch_add(1, Ordering::Relaxed));
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{object}.{unique:x}")),
            namespace: involved.namespace.clone(),
            ..ObjectMeta::default()
        },
        involved_object: involved,
        reason: Some(reason.to_string()),
        message: Some(message),
        type_: Some(
            match kind {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_string(),
        ),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        source: Some(EventSource {
            component: Some(COMPONENT.to_string()),
            host: Some(node_name.to_string()),
        }),
        reporting_component: Some(COMPONENT.to_string()),
        reporting_instance: Some(node_name.to_string()),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_pod_and_the_node() {
        let pod = ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some("ns".into()),
            name: Some("web".into()),
            uid: Some("u1".into()),
            ..ObjectReference::default()
        };
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let a = build_event(
            "n1",
            pod.clone(),
            EventType::Warning,
            "Failed",
            "boom".into(),
            now,
        );
        let b = build_event("n1", pod, EventType::Warning, "Failed", "boom".into(), now);
        assert_ne!(a.metadata.name, b.metadata.name, "names are unique");
        assert!(a.metadata.name.unwrap().starts_with("web."));
        assert_eq!(a.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(a.type_.as_deref(), Some("Warning"));
        assert_eq!(a.involved_object.uid.as_deref(), Some("u1"));
        let source = a.source.unwrap();
        assert_eq!(source.component.as_deref(), Some("kubelet"));
        assert_eq!(source.host.as_deref(), Some("n1"));
        assert_eq!(a.reporting_instance.as_deref(), Some("n1"));
    }
}
