//! The scheduler's writes, each in its own task so decisions never wait on
//! the API: bindings, Events, and preemption (evicting victims, setting the
//! preemptor's `status.nominatedNodeName`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::UnboundedSender;

use crate::events::{PodEvent, Recorder};
use crate::facts::PodInfo;

/// What became of a binding, reported back to the loop.
pub enum Outcome {
    Bound,
    /// The binding failed; `retry` unless the pod is gone or already bound.
    BindFailed {
        pod: Arc<PodInfo>,
        retry: bool,
    },
}

#[derive(Clone)]
pub struct Writer {
    client: kube::Client,
    done: UnboundedSender<Outcome>,
    events: Recorder,
}

impl Writer {
    pub fn new(client: kube::Client, done: UnboundedSender<Outcome>, events: Recorder) -> Writer {
        Writer {
            client,
            done,
            events,
        }
    }

    pub fn bind(&self, pod: Arc<PodInfo>, node: String, permit: OwnedSemaphorePermit) {
        let this = self.clone();
        tokio::spawn(async move {
            let outcome = match this.post_binding(&pod, &node).await {
                Ok(()) => {
                    tracing::debug!(pod = %pod.name, node, "bound");
                    drop(permit);
                    let message = format!(
                        "Successfully assigned {}/{} to {node}",
                        pod.namespace, pod.name
                    );
                    this.event(&pod, "Normal", "Scheduled", "Binding", message);
                    Outcome::Bound
                }
                Err(err) => {
                    let gone =
                        matches!(&err, kube::Error::Api(s) if s.code == 404 || s.code == 409);
                    tracing::warn!(%err, pod = %pod.name, node, "binding failed");
                    Outcome::BindFailed { pod, retry: !gone }
                }
            };
            let _ = this.done.send(outcome);
        });
    }

    pub fn failed(&self, pod: &Arc<PodInfo>, message: String) {
        self.event(pod, "Warning", "FailedScheduling", "Scheduling", message);
    }

    /// Evict the victims (each gets a `Preempted` event), nominate the node
    /// on the preemptor and record why it did not fit.
    pub fn preempt(
        &self,
        pod: Arc<PodInfo>,
        node: String,
        victims: Vec<Arc<PodInfo>>,
        message: String,
        permit: OwnedSemaphorePermit,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            this.event(&pod, "Warning", "FailedScheduling", "Scheduling", message);
            for victim in &victims {
                let why = format!("Preempted by pod {} on node {node}", pod.uid);
                this.event(victim, "Normal", "Preempted", "Preempting", why);
                let api: Api<Pod> = Api::namespaced(this.client.clone(), &victim.namespace);
                match api.delete(&victim.name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(err) => tracing::warn!(%err, victim = %victim.name, "evicting a victim"),
                }
            }
            let api: Api<Pod> = Api::namespaced(this.client.clone(), &pod.namespace);
            let status = serde_json::json!({"status": {"nominatedNodeName": node}});
            if let Err(err) = api
                .patch_status(&pod.name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                tracing::warn!(%err, pod = %pod.name, "setting nominatedNodeName");
            }
            drop(permit);
        });
    }

    async fn post_binding(&self, pod: &PodInfo, node: &str) -> Result<(), kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.into()),
                ..ObjectReference::default()
            },
        };
        let _: serde_json::Value = api
            .create_subresource("binding", &pod.name, &PostParams::default(), &binding)
            .await?;
        Ok(())
    }

    fn event(
        &self,
        pod: &Arc<PodInfo>,
        type_: &'static str,
        reason: &'static str,
        action: &'static str,
        message: String,
    ) {
        self.events.record(PodEvent {
            pod: pod.clone(),
            type_,
            reason,
            action,
            message,
        });
    }
}
