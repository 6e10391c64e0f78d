//! The ReplicaSet controller: keeps `spec.replicas` pods from `spec.template`
//! running, adopting matching orphans and releasing pods that stop matching.

mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use plan::{Plan, plan};

use crate::pods::{controller_ref, selects};
use crate::runtime::{Backoff, Expectations, key_of, run_controller};
use crate::{Error, names, owned};

/// Why a ReplicaSet is reconciled again while nothing changes: a safety net
/// for a missed watch event.
/// The name events carry, as kube-controller-manager's.
const COMPONENT: &str = "replicaset-controller";
const RESYNC: Duration = Duration::from_secs(300);

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    expectations: Expectations,
    backoff: Backoff,
}

/// Run the ReplicaSet controller until `cancel` fires.
pub async fn run(client: kube::Client, cancel: CancellationToken) {
    let (pods, writer) = reflector::store();
    let pod_events = reflector(
        writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff(),
    )
    .touched_objects();
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let context = Arc::new(Context {
        client,
        pods,
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    let controller = controller.watches_stream(pod_events, move |pod| sets_for_pod(&sets, &pod));
    run_controller(
        "replicaset",
        "replicaset",
        controller,
        Duration::from_millis(50),
        cancel,
        reconcile,
        context,
    )
    .await;
}

/// The sets a pod event concerns: its controller, or, for an orphan, every
/// set in its namespace that could adopt it.
fn sets_for_pod(sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = controller_ref(&pod.metadata) {
        if owner.kind == "ReplicaSet" {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    sets.state()
        .iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|rs| {
            rs.spec
                .as_ref()
                .is_some_and(|s| selects(&s.selector, pod.metadata.labels.as_ref()))
        })
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

async fn reconcile(rs: Arc<ReplicaSet>, context: Arc<Context>) -> Result<Action, Error> {
    crate::runtime::cache_ready(&context.pods).await?;
    let key = key_of(rs.as_ref());
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    let in_namespace: Vec<Arc<Pod>> = context
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .collect();
    let alive = |name: &str| {
        in_namespace.iter().any(|p| {
            p.metadata.name.as_deref() == Some(name) && p.metadata.deletion_timestamp.is_none()
        })
    };
    if !context.expectations.satisfied(&key, alive) {
        tracing::debug!("waiting for the cache to show our last writes");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let plan = plan(&rs, &in_namespace, jiff::Timestamp::now());
    if plan.changes_pods() {
        tracing::info!(
            adopt = plan.adopt.len(),
            release = plan.release.len(),
            create = plan.create,
            delete = plan.delete.len(),
            "syncing pods"
        );
    }
    let result = execute(&rs, &plan, &context).await;
    if result.is_err() {
        context.expectations.forget(&key);
    }
    result?;
    context.backoff.succeeded(&key);
    Ok(Action::requeue(plan.requeue_after.unwrap_or(RESYNC)))
}

async fn execute(rs: &ReplicaSet, plan: &Plan, context: &Context) -> Result<(), Error> {
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    let rs_name = rs.metadata.name.clone().unwrap_or_default();
    let key = format!("{namespace}/{rs_name}");
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let owner = owned::owner_reference(rs);
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    for name in &plan.adopt {
        set_owner(&pods, name, Some(&owner), &context.pods, &namespace).await?;
    }
    for name in &plan.release {
        set_owner(&pods, name, None, &context.pods, &namespace).await?;
    }
    let new_names: Vec<String> = (0..plan.create)
        .map(|_| names::with_suffix(&rs_name))
        .collect();
    context
        .expectations
        .expect(&key, new_names.clone(), plan.delete.clone());
    for name in &new_names {
        let pod = owned::pod_from_template(&template, &namespace, name, &owner);
        pods.create(&PostParams::default(), &pod)
            .await
            .map_err(|source| Error::write("creating pod", &namespace, name, source))?;
        tracing::info!(pod = %name, "created pod");
        let message = format!("Created pod: {name}");
        crate::events::normal(&context.client, COMPONENT, rs, "SuccessfulCreate", &message).await;
    }
    for name in &plan.delete {
        match pods.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(pod = %name, "deleted pod");
                let message = format!("Deleted pod: {name}");
                crate::events::normal(&context.client, COMPONENT, rs, "SuccessfulDelete", &message)
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => return Err(Error::write("deleting pod", &namespace, name, source)),
        }
    }
    if rs.status.as_ref() != Some(&plan.status) {
        let sets: Api<ReplicaSet> = Api::namespaced(context.client.clone(), &namespace);
        sets.patch_status(
            &rs_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": plan.status})),
        )
        .await
        .map_err(|source| {
            Error::write(
                "updating status of replicaset",
                &namespace,
                &rs_name,
                source,
            )
        })?;
    }
    Ok(())
}

/// Give the pod `owner` as its only controller reference, or drop the
/// controller reference (`None`), keeping any other references.
async fn set_owner(
    pods: &Api<Pod>,
    name: &str,
    owner: Option<&OwnerReference>,
    cache: &Store<Pod>,
    namespace: &str,
) -> Result<(), Error> {
    let current = cache.get(&ObjectRef::new(name).within(namespace));
    let mut references: Vec<OwnerReference> = current
        .and_then(|p| p.metadata.owner_references.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.controller != Some(true))
        .collect();
    references.extend(owner.cloned());
    let patch = json!({"metadata": {"ownerReferences": references}});
    pods.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|source| Error::write("setting the owner of pod", namespace, name, source))?;
    tracing::info!(pod = name, adopted = owner.is_some(), "changed pod owner");
    Ok(())
}

impl crate::runtime::HasBackoff for Context {
    fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}
