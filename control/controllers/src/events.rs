//! Events the controllers record, as `kubectl describe` shows them
//! (`SuccessfulCreate`, `ScalingReplicaSet`, …). Recording is best effort: a
//! failed Event write is logged and never fails a reconcile.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Resource;
use kube::api::{Api, PostParams};

/// An Event a plan asks for, recorded about the object it plans for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Note {
        Note {
            type_: "Normal",
            reason,
            message: message.into(),
        }
    }

    pub fn warning(reason: &'static str, message: impl Into<String>) -> Note {
        Note {
            type_: "Warning",
            reason,
            message: message.into(),
        }
    }
}

/// Record every note about `object`, in order.
pub async fn notes<K>(client: &kube::Client, component: &str, object: &K, notes: &[Note])
where
    K: Resource<DynamicType = ()>,
{
    for note in notes {
        record(
            client,
            component,
            object,
            note.type_,
            note.reason,
            &note.message,
        )
        .await;
    }
}

/// What a failed write says, as Kubernetes quotes it in `FailedCreate`
/// and `FailedDelete` Events: the API's message, else the error.
pub fn failure_text(error: &crate::Error) -> String {
    match error {
        crate::Error::Write {
            source: kube::Error::Api(status),
            ..
        } if !status.message.is_empty() => status.message.clone(),
        crate::Error::Write { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// Record a `Warning` event about `object` from `component`.
pub async fn warning<K>(
    client: &kube::Client,
    component: &str,
    object: &K,
    reason: &str,
    message: &str,
) where
    K: Resource<DynamicType = ()>,
{
    record(client, component, object, "Warning", reason, message).await;
}

/// Record a `Normal` event about `object` from `component`
/// (e.g. `replicaset-controller`).
pub async fn normal<K>(
    client: &kube::Client,
    component: &str,
    object: &K,
    reason: &str,
    message: &str,
) where
    K: Resource<DynamicType = ()>,
{
    record(client, component, object, "Normal", reason, message).await;
}

pub async fn record<K>(
    client: &kube::Client,
    component: &str,
    object: &K,
    type_: &str,
    reason: &str,
    message: &str,
) where
    K: Resource<DynamicType = ()>,
{
    let meta = object.meta();
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let name = meta.name.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(name),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            ..ObjectReference::default()
        },
        type_: Some(type_.into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        reporting_component: Some(component.into()),
        reporting_instance: Some(component.into()),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        ..Event::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    if let Err(err) = api.create(&PostParams::default(), &event).await {
        tracing::warn!(%err, reason, "recording an event");
    }
}
