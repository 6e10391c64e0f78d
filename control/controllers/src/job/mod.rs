//! The Job controller: runs pods from the template until `completions`
//! succeed (at most `parallelism` at a time, one per index for Indexed
//! Jobs), gives up after `backoffLimit` failures or `activeDeadlineSeconds`,
//! and deletes the finished Job after `ttlSecondsAfterFinished`.

mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

pub use plan::{COMPLETION_INDEX, Plan, plan};

use crate::runtime::{Backoff, Expectations, key_of, run_controller};
use crate::{Error, names, owned};

const RESYNC: Duration = Duration::from_secs(300);
const COMPONENT: &str = "job-controller";

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    expectations: Expectations,
    backoff: Backoff,
}

/// Run the Job controller until `cancel` fires.
pub async fn run(client: kube::Client, cancel: CancellationToken) {
    let (pods, pod_events) = owned::watch_pods(&client);
    let context = Arc::new(Context {
        client: client.clone(),
        pods,
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    let controller = Controller::new(Api::<Job>::all(client), watcher::Config::default())
        .owns_stream(pod_events);
    run_controller(
        "job",
        "job",
        controller,
        Duration::from_millis(50),
        cancel,
        reconcile,
        context,
    )
    .await;
}

async fn reconcile(job: Arc<Job>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(job.as_ref());
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let pods = owned::controlled_by(&context.pods, &namespace, &uid).await?;
    if !context
        .expectations
        .satisfied(&key, |name| owned::holds_alive(&pods, name))
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let plan = plan(&job, &pods, jiff::Timestamp::now());
    let result = execute(&job, &plan, &context, &key).await;
    if result.is_err() {
        context.expectations.forget(&key);
    }
    result?;
    context.backoff.succeeded(&key);
    Ok(Action::requeue(plan.requeue_after.unwrap_or(RESYNC)))
}

async fn execute(job: &Job, plan: &Plan, context: &Context, key: &str) -> Result<(), Error> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    if plan.delete_job {
        tracing::info!("deleting finished job (ttlSecondsAfterFinished)");
        return owned::delete::<Job>(&context.client, &namespace, &name)
            .await
            .map(drop);
    }
    let pods: Vec<Pod> = plan
        .create
        .iter()
        .map(|index| job_pod(job, *index))
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
            job,
            pod,
            false,
            &owned::POD_WORDS,
        )
        .await?;
    }
    for pod in &plan.delete {
        owned::delete_recorded::<_, Pod>(&context.client, COMPONENT, job, pod, &owned::POD_WORDS)
            .await?;
    }
    owned::patch_status(&context.client, job, job.status.as_ref(), &plan.status).await?;
    // Once the status that says so is written, so a retried reconcile does
    // not record the same end twice.
    crate::events::notes(&context.client, COMPONENT, job, &plan.events).await;
    Ok(())
}

/// A pod for the Job (for the given completion index of an Indexed Job).
fn job_pod(job: &Job, index: Option<i32>) -> Pod {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let base = match index {
        Some(i) => format!("{job_name}-{i}"),
        None => job_name.clone(),
    };
    let mut pod = owned::pod_from_template(
        &template,
        &namespace,
        &names::with_suffix(&base),
        &owned::owner_reference(job),
    );
    if let Some(index) = index {
        let value = index.to_string();
        pod.metadata
            .annotations
            .get_or_insert_default()
            .insert(COMPLETION_INDEX.into(), value.clone());
        pod.metadata
            .labels
            .get_or_insert_default()
            .insert(COMPLETION_INDEX.into(), value.clone());
        if let Some(spec) = pod.spec.as_mut() {
            if spec.hostname.is_none() {
                spec.hostname = Some(base);
            }
            for container in spec
                .containers
                .iter_mut()
                .chain(spec.init_containers.iter_mut().flatten())
            {
                container.env.get_or_insert_default().push(EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value: Some(value.clone()),
                    value_from: None,
                });
            }
        }
    }
    pod
}

impl crate::runtime::HasBackoff for Context {
    fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}
