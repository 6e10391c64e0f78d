//! The scheduler's Events (`Scheduled`, `FailedScheduling`, `Preempted`),
//! written in the background as client-go's event broadcaster writes them:
//! the scheduling loop and the bindings only queue an Event and never wait
//! for it, a few writes run at once, and when the queue is full an Event is
//! dropped with a warning (Events are best effort in Kubernetes too).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;

use crate::SCHEDULER_NAME;
use crate::facts::PodInfo;

/// Events waiting to be written before new ones are dropped (client-go's
/// broadcaster queues 1,000; a burst of bindings here can be ten times that).
pub const QUEUE: usize = 16_384;
/// Event writes in flight at once.
const WRITERS: usize = 8;

/// What to record about a pod.
#[derive(Debug, Clone)]
pub struct PodEvent {
    pub pod: Arc<PodInfo>,
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

/// Queues Events for the background writer; clones share the queue.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<PodEvent>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// A recorder and the task that writes what it queues; the task ends
    /// once every clone of the recorder is gone and the queue is empty.
    pub fn new(client: kube::Client) -> (Recorder, impl Future<Output = ()> + Send + 'static) {
        let (queue, events) = mpsc::channel(QUEUE);
        let writer = async move {
            receiver_stream(events)
                .for_each_concurrent(WRITERS, |event| write(&client, event))
                .await;
        };
        let recorder = Recorder {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (recorder, writer)
    }

    /// Queue an Event; never waits.
    pub fn record(&self, event: PodEvent) {
        if let Err(err) = self.queue.try_send(event) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // One line per thousand, not one per Event, in a flood.
            if dropped % 1000 == 1 {
                let event = match &err {
                    mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => e,
                };
                tracing::warn!(
                    dropped,
                    reason = event.reason,
                    pod = %event.pod.name,
                    "the event queue is full; dropping events"
                );
            }
        }
    }
}

fn receiver_stream<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn write(client: &kube::Client, event: PodEvent) {
    let PodEvent {
        pod,
        type_,
        reason,
        action,
        message,
    } = event;
    let now = jiff::Timestamp::now();
    let object = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", pod.name)),
            namespace: Some(pod.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
            ..ObjectReference::default()
        },
        type_: Some(type_.into()),
        reason: Some(reason.into()),
        message: Some(message),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        reporting_component: Some(SCHEDULER_NAME.into()),
        reporting_instance: Some(SCHEDULER_NAME.into()),
        action: Some(action.into()),
        source: Some(EventSource {
            component: Some(SCHEDULER_NAME.into()),
            host: None,
        }),
        ..Event::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &pod.namespace);
    if let Err(err) = api.create(&PostParams::default(), &object).await {
        tracing::warn!(%err, reason, pod = %pod.name, "recording an event");
    }
}
