//! The Deployment controller: one ReplicaSet per pod template, rolled from
//! old to new within `maxSurge` / `maxUnavailable` (or all at once with
//! Recreate), with revisions, history cleanup and the status conditions
//! `kubectl rollout` reads.

mod plan;
pub mod revision;
mod status;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use plan::{Plan, Step, plan, surge_and_unavailable};

use crate::Error;
use crate::pods::controller_ref;
use crate::runtime::{Backoff, Expectations, key_of, run_controller};

/// The name events carry, as kube-controller-manager's.
const COMPONENT: &str = "deployment-controller";
const RESYNC: Duration = Duration::from_secs(300);

struct Context {
    client: kube::Client,
    sets: Store<ReplicaSet>,
    expectations: Expectations,
    backoff: Backoff,
}

/// Run the Deployment controller until `cancel` fires.
pub async fn run(client: kube::Client, cancel: CancellationToken) {
    let (sets, writer) = reflector::store();
    let set_events = reflector(
        writer,
        watcher(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .touched_objects();
    let context = Arc::new(Context {
        client: client.clone(),
        sets,
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    let controller = Controller::new(Api::<Deployment>::all(client), watcher::Config::default())
        .owns_stream(set_events);
    run_controller(
        "deployment",
        "deployment",
        controller,
        Duration::from_millis(50),
        cancel,
        reconcile,
        context,
    )
    .await;
}

/// Whether the cache shows `token`: `name` (exists) or `name@revision`
/// (exists at that resourceVersion or later).
fn cache_shows(sets: &[Arc<ReplicaSet>], token: &str) -> bool {
    let (name, revision) = match token.split_once('@') {
        Some((name, rv)) => (name, rv.parse::<u64>().ok()),
        None => (token, None),
    };
    sets.iter().any(|rs| {
        rs.metadata.name.as_deref() == Some(name)
            && match revision {
                Some(wanted) => rs
                    .metadata
                    .resource_version
                    .as_deref()
                    .and_then(|rv| rv.parse::<u64>().ok())
                    .is_some_and(|rv| rv >= wanted),
                None => true,
            }
    })
}

async fn reconcile(deployment: Arc<Deployment>, context: Arc<Context>) -> Result<Action, Error> {
    crate::runtime::cache_ready(&context.sets).await?;
    let key = key_of(deployment.as_ref());
    let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
    let uid = deployment.metadata.uid.clone().unwrap_or_default();
    let in_namespace: Vec<Arc<ReplicaSet>> = context
        .sets
        .state()
        .into_iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .collect();
    if !context
        .expectations
        .satisfied(&key, |token| cache_shows(&in_namespace, token))
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let owned: Vec<ReplicaSet> = in_namespace
        .iter()
        .filter(|rs| controller_ref(&rs.metadata).is_some_and(|r| r.uid == uid))
        .map(|rs| rs.as_ref().clone())
        .collect();
    let plan = plan(&deployment, &owned, jiff::Timestamp::now());
    let result = execute(&deployment, &plan, &context, &key).await;
    if result.is_err() {
        context.expectations.forget(&key);
    }
    result?;
    context.backoff.succeeded(&key);
    Ok(Action::requeue(plan.requeue_after.unwrap_or(RESYNC)))
}

async fn execute(
    deployment: &Deployment,
    plan: &Plan,
    context: &Context,
    key: &str,
) -> Result<(), Error> {
    let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let sets: Api<ReplicaSet> = Api::namespaced(context.client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(context.client.clone(), &namespace);
    for step in &plan.steps {
        match step {
            Step::Create(rs) => {
                let rs_name = rs.metadata.name.clone().unwrap_or_default();
                match sets.create(&PostParams::default(), rs).await {
                    Ok(_) => {
                        let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                        tracing::info!(replicaset = %rs_name, replicas, "created replicaset");
                        if replicas > 0 {
                            let message =
                                format!("Scaled up replica set {rs_name} from 0 to {replicas}");
                            crate::events::normal(
                                &context.client,
                                COMPONENT,
                                deployment,
                                "ScalingReplicaSet",
                                &message,
                            )
                            .await;
                        }
                        context.expectations.expect(key, vec![rs_name], vec![]);
                    }
                    // The cache is behind; the next reconcile sees it.
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        context.expectations.expect(key, vec![rs_name], vec![]);
                        return Ok(());
                    }
                    Err(source) => {
                        return Err(Error::write(
                            "creating replicaset",
                            &namespace,
                            &rs_name,
                            source,
                        ));
                    }
                }
            }
            Step::Update {
                name: rs_name,
                replicas,
                annotations,
            } => {
                let before = context
                    .sets
                    .get(&ObjectRef::new(rs_name).within(&namespace))
                    .and_then(|rs| rs.spec.as_ref().and_then(|s| s.replicas));
                let mut patch = json!({"metadata": {"annotations": annotations}});
                if let Some(replicas) = replicas {
                    patch["spec"] = json!({"replicas": replicas});
                }
                let updated = sets
                    .patch(rs_name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(|source| {
                        Error::write("updating replicaset", &namespace, rs_name, source)
                    })?;
                tracing::info!(replicaset = %rs_name, ?replicas, "updated replicaset");
                if let (Some(from), Some(to)) = (before, *replicas)
                    && from != to
                {
                    let direction = if to > from { "up" } else { "down" };
                    let message =
                        format!("Scaled {direction} replica set {rs_name} from {from} to {to}");
                    crate::events::normal(
                        &context.client,
                        COMPONENT,
                        deployment,
                        "ScalingReplicaSet",
                        &message,
                    )
                    .await;
                }
                if let Some(rv) = updated.metadata.resource_version {
                    context
                        .expectations
                        .expect(key, vec![format!("{rs_name}@{rv}")], vec![]);
                }
            }
            Step::Delete(rs_name) => {
                match sets.delete(rs_name, &DeleteParams::background()).await {
                    Ok(_) => {
                        tracing::info!(replicaset = %rs_name, "deleted old replicaset (history limit)")
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(source) => {
                        return Err(Error::write(
                            "deleting replicaset",
                            &namespace,
                            rs_name,
                            source,
                        ));
                    }
                }
                context
                    .expectations
                    .expect(key, vec![], vec![rs_name.clone()]);
            }
            Step::Revision(revision) => {
                let patch = json!({"metadata": {"annotations": {revision::REVISION: revision}}});
                deployments
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(|source| {
                        Error::write(
                            "setting the revision of deployment",
                            &namespace,
                            &name,
                            source,
                        )
                    })?;
            }
            Step::Status(status) => {
                deployments
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await
                    .map_err(|source| {
                        Error::write("updating status of deployment", &namespace, &name, source)
                    })?;
            }
        }
    }
    Ok(())
}

impl crate::runtime::HasBackoff for Context {
    fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}
