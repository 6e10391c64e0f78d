//! The DaemonSet controller: one pod per eligible node (node selector,
//! taints against tolerations), bound to its node the way Kubernetes 1.32
//! does it (a required node affinity on `metadata.name`) and directly
//! (`spec.nodeName`, as Skiff's scheduler does not read affinities yet),
//! rolled to a new template within `maxUnavailable` or left for the user
//! to delete (`OnDelete`), with the template history in ControllerRevisions.

mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{
    Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use plan::{Plan, default_tolerations, plan, should_run};

use crate::runtime::{Backoff, Expectations, key_of, run_controller};
use crate::{Error, events, history, names, owned};

const RESYNC: Duration = Duration::from_secs(300);

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
    backoff: Backoff,
}

/// Run the DaemonSet controller until `cancel` fires.
pub async fn run(client: kube::Client, cancel: CancellationToken) {
    let (pods, pod_events) = owned::watch_pods(&client);
    let (nodes, node_events) = owned::watch_all::<Node>(&client);
    let (revisions, revision_events) = owned::watch_all::<ControllerRevision>(&client);
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let context = Arc::new(Context {
        client,
        pods,
        nodes,
        revisions,
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    let controller = controller
        .owns_stream(pod_events)
        .owns_stream(revision_events)
        // Any node change may change where daemons belong.
        .watches_stream(node_events, move |_: Node| {
            sets.state()
                .iter()
                .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                .collect::<Vec<_>>()
        });
    run_controller(
        "daemonset",
        "daemonset",
        controller,
        Duration::from_millis(50),
        cancel,
        reconcile,
        context,
    )
    .await;
}

async fn reconcile(ds: Arc<DaemonSet>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(ds.as_ref());
    let namespace = ds.metadata.namespace.clone().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let pods = owned::controlled_by(&context.pods, &namespace, &uid).await?;
    let revisions = owned::controlled_by(&context.revisions, &namespace, &uid).await?;
    crate::runtime::cache_ready(&context.nodes).await?;
    if !context
        .expectations
        .satisfied(&key, |name| owned::holds_alive(&pods, name))
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = ds.spec.clone().unwrap_or_default();
    let revision = history::plan(
        &namespace,
        &owned::owner_reference(ds.as_ref()),
        &spec.template,
        &spec.selector.match_labels.clone().unwrap_or_default(),
        &revisions,
        spec.revision_history_limit.unwrap_or(10),
        &history::hashes_in_use(&pods),
    );
    let plan = plan(
        &ds,
        &context.nodes.state(),
        &pods,
        &revision.hash,
        jiff::Timestamp::now(),
    );
    let result = execute(&ds, &plan, &revision, &context, &key).await;
    if result.is_err() {
        context.expectations.forget(&key);
    }
    result?;
    context.backoff.succeeded(&key);
    Ok(Action::requeue(plan.requeue_after.unwrap_or(RESYNC)))
}

const COMPONENT: &str = "daemonset-controller";

async fn execute(
    ds: &DaemonSet,
    plan: &Plan,
    revision: &history::RevisionPlan,
    context: &Context,
    key: &str,
) -> Result<(), Error> {
    let namespace = ds.metadata.namespace.clone().unwrap_or_default();
    write_revisions(&context.client, &namespace, revision).await?;
    let pods: Vec<Pod> = plan
        .create
        .iter()
        .map(|node| daemon_pod(ds, node, &revision.hash))
        .collect();
    let created: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    context
        .expectations
        .expect(key, created, plan.delete.clone());
    for pod in &pods {
        owned::create_recorded(
            &context.client,
            COMPONENT,
            ds,
            pod,
            false,
            &owned::POD_WORDS,
        )
        .await?;
    }
    events::notes(&context.client, COMPONENT, ds, &plan.events).await;
    for pod in &plan.delete {
        owned::delete_recorded::<_, Pod>(&context.client, COMPONENT, ds, pod, &owned::POD_WORDS)
            .await?;
    }
    owned::patch_status(&context.client, ds, ds.status.as_ref(), &plan.status).await
}

/// Create, renumber and trim ControllerRevisions as `revision` says (shared
/// with the StatefulSet controller).
pub(crate) async fn write_revisions(
    client: &kube::Client,
    namespace: &str,
    revision: &history::RevisionPlan,
) -> Result<(), Error> {
    if let Some(created) = &revision.create {
        owned::create(client, created, true).await?;
    }
    if let Some((name, number)) = &revision.bump {
        let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"revision": number})),
        )
        .await
        .map_err(|source| Error::write("renumbering revision", namespace, name, source))?;
    }
    for name in &revision.delete {
        owned::delete::<ControllerRevision>(client, namespace, name).await?;
    }
    Ok(())
}

/// A daemon pod for `node`.
fn daemon_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let namespace = ds.metadata.namespace.clone().unwrap_or_default();
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = owned::pod_from_template(
        &template,
        &namespace,
        &names::with_suffix(&ds.metadata.name.clone().unwrap_or_default()),
        &owned::owner_reference(ds),
    );
    pod.metadata
        .labels
        .get_or_insert_default()
        .insert(history::REVISION_HASH.into(), hash.into());
    let spec = pod.spec.get_or_insert_default();
    spec.node_name = Some(node.into());
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        match_expressions: None,
    };
    spec.affinity.get_or_insert_default().node_affinity = Some(NodeAffinity {
        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
            node_selector_terms: vec![term],
        }),
        ..NodeAffinity::default()
    });
    let tolerations = spec.tolerations.get_or_insert_default();
    for toleration in default_tolerations() {
        if !tolerations.contains(&toleration) {
            tolerations.push(toleration);
        }
    }
    pod
}

impl crate::runtime::HasBackoff for Context {
    fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}
