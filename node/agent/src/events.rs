//! Kubernetes Events about a pod (core/v1, as kubelet writes them), so that
//! `kubectl describe pod` and `kubectl get events` tell the user what happened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;

pub const COMPONENT: &str = "kubelet";

/// Normal events say what happened; warnings say what went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Most Event writes in flight at once, node-wide.
const EVENT_WRITERS: usize = 16;

/// An Event waiting to be written, and who wants to know when it was.
struct Pending {
    event: Event,
    written: Option<oneshot::Sender<()>>,
}

/// The node's one Event writer. Events are written in the background, a few at
/// a time, so a container start never waits for the `Pulled`, `Created` and
/// `Started` it reports (kubelet's event broadcaster is asynchronous too), and
/// Events written together share one store commit. Cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    queue: mpsc::UnboundedSender<Pending>,
}

impl EventSink {
    /// Starts the writer task; it ends when every clone of the sink is gone.
    /// Once `shutdown` fires, queued Events are dropped (the API server may
    /// already be gone).
    pub fn start(cluster: Arc<dyn Cluster>, shutdown: CancellationToken) -> EventSink {
        let (queue, mut pending) = mpsc::unbounded_channel::<Pending>();
        let writes = futures::stream::poll_fn(move |cx| pending.poll_recv(cx))
            .take_until(shutdown.cancelled_owned())
            .map(move |pending| {
                let cluster = Arc::clone(&cluster);
                async move { write(cluster.as_ref(), pending).await }
            })
            .buffer_unordered(EVENT_WRITERS)
            .for_each(|()| std::future::ready(()));
        tokio::spawn(writes);
        EventSink { queue }
    }

    fn send(&self, event: Event, written: Option<oneshot::Sender<()>>) {
        // A send fails only once the writer stopped at shutdown.
        let _ = self.queue.send(Pending { event, written });
    }
}

async fn write(cluster: &dyn Cluster, pending: Pending) {
    let reason = pending.event.reason.clone().unwrap_or_default();
    let began = std::time::Instant::now();
    match cluster.create_event(&pending.event).await {
        Ok(()) => tracing::debug!(reason, took = ?began.elapsed(), "event recorded"),
        Err(error) => {
            tracing::warn!(error = %crate::driver::error_chain(&error), reason, "recording event failed")
        }
    }
    if let Some(written) = pending.written {
        let _ = written.send(());
    }
}

/// Records events about one pod. Cheap to clone; the pod's resourceVersion is
/// kept current by its worker.
#[derive(Clone)]
pub struct EventRecorder {
    sink: EventSink,
    node_name: Arc<str>,
    pod: Arc<Mutex<ObjectReference>>,
    /// Set when the agent shuts down: the API server may be gone, so stay quiet.
    shutdown: CancellationToken,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl EventRecorder {
    pub fn new(
        sink: EventSink,
        node_name: &str,
        pod: ObjectReference,
        shutdown: CancellationToken,
    ) -> EventRecorder {
        EventRecorder {
            sink,
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
    ///
    /// A Normal event is queued and this returns at once. A Warning explains a
    /// waiting reason or a failure the pod's status is about to show, so this
    /// returns once it was written: whoever sees that status finds its Event.
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
        match kind {
            EventType::Normal => self.sink.send(event, None),
            EventType::Warning => {
                let (written, wait) = oneshot::channel();
                self.sink.send(event, Some(written));
                // An error means the writer stopped (shutdown): nothing to wait for.
                let _ = wait.await;
            }
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
