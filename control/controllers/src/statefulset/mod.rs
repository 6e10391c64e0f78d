//! The StatefulSet controller: pods `<set>-0` … `<set>-N-1` with stable
//! names and hostnames under the governing Service (`serviceName`),
//! created in order each after the previous is Ready and removed in
//! reverse (OrderedReady) or all at once (Parallel), a PersistentVolumeClaim
//! per `volumeClaimTemplates` entry and ordinal (kept when scaling down),
//! and rolling updates from the highest ordinal down to `partition`, with
//! the template history in ControllerRevisions.

mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

pub use plan::{Plan, ordinal_of, plan};

use crate::runtime::{Backoff, Expectations, key_of, run_controller};
use crate::{Error, daemonset, events, history, owned};

const RESYNC: Duration = Duration::from_secs(300);
pub const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
    backoff: Backoff,
}

/// Run the StatefulSet controller until `cancel` fires.
pub async fn run(client: kube::Client, cancel: CancellationToken) {
    let (pods, pod_events) = owned::watch_pods(&client);
    let (revisions, revision_events) = owned::watch_all::<ControllerRevision>(&client);
    let context = Arc::new(Context {
        client: client.clone(),
        pods,
        revisions,
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    let controller = Controller::new(Api::<StatefulSet>::all(client), watcher::Config::default())
        .owns_stream(pod_events)
        .owns_stream(revision_events);
    run_controller(
        "statefulset",
        "statefulset",
        controller,
        Duration::from_millis(50),
        cancel,
        reconcile,
        context,
    )
    .await;
}

async fn reconcile(sts: Arc<StatefulSet>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(sts.as_ref());
    let namespace = sts.metadata.namespace.clone().unwrap_or_default();
    let uid = sts.metadata.uid.clone().unwrap_or_default();
    let pods = owned::controlled_by(&context.pods, &namespace, &uid).await?;
    let revisions = owned::controlled_by(&context.revisions, &namespace, &uid).await?;
    if !context
        .expectations
        .satisfied(&key, |name| owned::holds_alive(&pods, name))
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if sts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = sts.spec.clone().unwrap_or_default();
    let revision = history::plan(
        &namespace,
        &owned::owner_reference(sts.as_ref()),
        &spec.template,
        &spec.selector.match_labels.clone().unwrap_or_default(),
        &revisions,
        spec.revision_history_limit.unwrap_or(10),
        &history::hashes_in_use(&pods),
    );
    let plan = plan(&sts, &pods, &revision.hash, jiff::Timestamp::now());
    let result = execute(&sts, &plan, &revision, &context, &key).await;
    if result.is_err() {
        context.expectations.forget(&key);
    }
    result?;
    context.backoff.succeeded(&key);
    Ok(Action::requeue(plan.requeue_after.unwrap_or(RESYNC)))
}

const COMPONENT: &str = "statefulset-controller";

/// The StatefulSet controller's words about its pods.
const POD_WORDS: owned::Words = owned::Words {
    created: |set, pod| format!("create Pod {pod} in StatefulSet {set} successful"),
    create_failed: |set, pod, why| {
        format!("create Pod {pod} in StatefulSet {set} failed error: {why}")
    },
    deleted: |set, pod| format!("delete Pod {pod} in StatefulSet {set} successful"),
    delete_failed: |set, pod, why| {
        format!("delete Pod {pod} in StatefulSet {set} failed error: {why}")
    },
};

async fn execute(
    sts: &StatefulSet,
    plan: &Plan,
    revision: &history::RevisionPlan,
    context: &Context,
    key: &str,
) -> Result<(), Error> {
    let namespace = sts.metadata.namespace.clone().unwrap_or_default();
    daemonset::write_revisions(&context.client, &namespace, revision).await?;
    let pods: Vec<Pod> = plan
        .create
        .iter()
        .map(|o| stateful_pod(sts, *o, &revision.hash))
        .collect();
    let created: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    context
        .expectations
        .expect(key, created, plan.delete.clone());
    let set = sts.metadata.name.clone().unwrap_or_default();
    for (ordinal, pod) in plan.create.iter().zip(&pods) {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        for claim in claims(sts, *ordinal) {
            let claim_name = claim.metadata.name.clone().unwrap_or_default();
            match owned::create(&context.client, &claim, true).await {
                Ok(true) => {
                    let message = format!(
                        "create Claim {claim_name} Pod {pod_name} in StatefulSet {set} success"
                    );
                    events::normal(
                        &context.client,
                        COMPONENT,
                        sts,
                        "SuccessfulCreate",
                        &message,
                    )
                    .await;
                }
                Ok(false) => {}
                Err(error) => {
                    let message = format!(
                        "create Claim {claim_name} for Pod {pod_name} in StatefulSet {set} failed error: {}",
                        events::failure_text(&error)
                    );
                    events::warning(&context.client, COMPONENT, sts, "FailedCreate", &message)
                        .await;
                    return Err(error);
                }
            }
        }
        owned::create_recorded(&context.client, COMPONENT, sts, pod, true, &POD_WORDS).await?;
    }
    for pod in &plan.delete {
        owned::delete_recorded::<_, Pod>(&context.client, COMPONENT, sts, pod, &POD_WORDS).await?;
    }
    owned::patch_status(&context.client, sts, sts.status.as_ref(), &plan.status).await
}

/// The claims of one ordinal: `<template>-<set>-<ordinal>`. They carry no
/// owner reference, so they outlive scale-downs and the set (Retain).
pub fn claims(sts: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let set = sts.metadata.name.clone().unwrap_or_default();
    let spec = sts.spec.clone().unwrap_or_default();
    let labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .unwrap_or_default()
        .into_iter()
        .map(|template| {
            let template_name = template.metadata.name.clone().unwrap_or_default();
            let mut claim_labels = labels.clone();
            claim_labels.extend(template.metadata.labels.clone().unwrap_or_default());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(format!("{template_name}-{set}-{ordinal}")),
                    namespace: sts.metadata.namespace.clone(),
                    labels: Some(claim_labels),
                    annotations: template.metadata.annotations.clone(),
                    ..ObjectMeta::default()
                },
                spec: template.spec,
                status: None,
            }
        })
        .collect()
}

/// The pod of one ordinal: stable name, hostname and subdomain, and its
/// claims mounted in place of the template's volumes of the same name.
pub fn stateful_pod(sts: &StatefulSet, ordinal: i32, hash: &str) -> Pod {
    let set = sts.metadata.name.clone().unwrap_or_default();
    let namespace = sts.metadata.namespace.clone().unwrap_or_default();
    let spec = sts.spec.clone().unwrap_or_default();
    let name = format!("{set}-{ordinal}");
    let mut pod = owned::pod_from_template(
        &spec.template,
        &namespace,
        &name,
        &owned::owner_reference(sts),
    );
    let labels = pod.metadata.labels.get_or_insert_default();
    labels.insert(history::REVISION_HASH.into(), hash.into());
    labels.insert(POD_NAME.into(), name.clone());
    labels.insert(POD_INDEX.into(), ordinal.to_string());
    let pod_spec = pod.spec.get_or_insert_default();
    pod_spec.hostname = Some(name);
    pod_spec.subdomain = spec.service_name.clone().filter(|s| !s.is_empty());
    for claim in claims(sts, ordinal) {
        let template_name = claim.metadata.name.clone().unwrap_or_default();
        let volume_name = template_name
            .strip_suffix(&format!("-{set}-{ordinal}"))
            .unwrap_or(&template_name)
            .to_string();
        let volumes = pod_spec.volumes.get_or_insert_default();
        volumes.retain(|v| v.name != volume_name);
        volumes.push(Volume {
            name: volume_name,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: template_name,
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    pod
}

impl crate::runtime::HasBackoff for Context {
    fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}
