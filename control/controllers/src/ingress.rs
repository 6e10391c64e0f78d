//! Ingress checks: an Ingress served by the node gateway (class `skiff` or
//! none) whose backends name a Service that does not exist gets a Warning
//! Event `ServiceNotFound`, once per generation and set of missing Services
//! (and again after the controller restarts).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::runtime::{Backoff, cache_ready, drive, key_of};

/// The IngressClass the node gateway serves.
pub const INGRESS_CLASS: &str = "skiff";

struct Context {
    client: kube::Client,
    services: Store<Service>,
    /// What was last reported per Ingress: (generation, missing Services).
    reported: Mutex<HashMap<String, (i64, BTreeSet<String>)>>,
    backoff: Backoff,
}

pub async fn run(client: kube::Client, cancel: CancellationToken) {
    let (services, writer) = reflector::store();
    let service_events = reflector(
        writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .touched_objects();
    let controller = Controller::new(
        Api::<Ingress>::all(client.clone()),
        watcher::Config::default(),
    );
    let ingresses = controller.store();
    let context = Arc::new(Context {
        client,
        services,
        reported: Mutex::default(),
        backoff: Backoff::default(),
    });
    let results = controller
        .watches_stream(service_events, move |service| {
            ingresses
                .state()
                .iter()
                .filter(|i| i.metadata.namespace == service.metadata.namespace)
                .map(|i| ObjectRef::from_obj(i.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(cancel.cancelled_owned())
        .run(reconcile, error_policy, context)
        .boxed();
    drive("ingress", results).await;
}

fn error_policy(ingress: Arc<Ingress>, error: &Error, context: Arc<Context>) -> Action {
    crate::runtime::retry_failed("ingress", ingress.as_ref(), error, &context.backoff)
}

/// Whether the node gateway serves this Ingress.
pub fn served(ingress: &Ingress) -> bool {
    let class = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.clone());
    class.is_none_or(|c| c == INGRESS_CLASS)
}

/// Every Service name the Ingress's backends refer to.
pub fn backend_services(ingress: &Ingress) -> BTreeSet<String> {
    let Some(spec) = ingress.spec.as_ref() else {
        return BTreeSet::new();
    };
    let rules = spec.rules.iter().flatten();
    let paths = rules
        .filter_map(|r| r.http.as_ref())
        .flat_map(|h| h.paths.iter().map(|p| &p.backend));
    spec.default_backend
        .iter()
        .chain(paths)
        .filter_map(|b| b.service.as_ref().map(|s| s.name.clone()))
        .collect()
}

async fn reconcile(ingress: Arc<Ingress>, context: Arc<Context>) -> Result<Action, Error> {
    if !served(&ingress) || ingress.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    cache_ready(&context.services).await?;
    let key = key_of(ingress.as_ref());
    let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
    let missing: BTreeSet<String> = backend_services(&ingress)
        .into_iter()
        .filter(|name| {
            context
                .services
                .get(&ObjectRef::new(name).within(&namespace))
                .is_none()
        })
        .collect();
    let generation = ingress.metadata.generation.unwrap_or(0);
    let seen = (generation, missing.clone());
    let already = context.reported.lock().expect("ingress lock").get(&key) == Some(&seen);
    if !missing.is_empty() && !already {
        let names: Vec<String> = missing.iter().cloned().collect();
        let message = format!(
            "backend Service(s) not found in namespace {namespace}: {}",
            names.join(", ")
        );
        warn(&context.client, &ingress, &message).await?;
        tracing::info!(ingress = %key, message, "reported missing backend");
    }
    context
        .reported
        .lock()
        .expect("ingress lock")
        .insert(key.clone(), seen);
    context.backoff.succeeded(&key);
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn warn(client: &kube::Client, ingress: &Ingress, message: &str) -> Result<(), Error> {
    let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
    let name = ingress.metadata.name.clone().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("networking.k8s.io/v1".into()),
            kind: Some("Ingress".into()),
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            uid: ingress.metadata.uid.clone(),
            resource_version: ingress.metadata.resource_version.clone(),
            ..ObjectReference::default()
        },
        reason: Some("ServiceNotFound".into()),
        message: Some(message.to_string()),
        type_: Some("Warning".into()),
        source: Some(EventSource {
            component: Some("skiff-gateway".into()),
            host: None,
        }),
        reporting_component: Some("skiff-gateway".into()),
        reporting_instance: Some("skiff-controllers".into()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Event::default()
    };
    Api::<Event>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &event)
        .await
        .map_err(|source| {
            Error::write("recording an event for ingress", &namespace, &name, source)
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backends_and_class() {
        let ingress: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "i", "namespace": "ns"},
            "spec": {"defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
                "rules": [{"host": "a.org", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}]}
        }))
        .unwrap();
        assert_eq!(
            backend_services(&ingress).into_iter().collect::<Vec<_>>(),
            vec!["fallback", "web"]
        );
        assert!(served(&ingress));
        let mut other = ingress.clone();
        other.spec.as_mut().unwrap().ingress_class_name = Some("nginx".into());
        assert!(!served(&other));
    }
}
