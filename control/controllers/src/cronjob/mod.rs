//! The CronJob controller: starts a Job from `jobTemplate` at each time the
//! schedule names (in `timeZone`), honouring `concurrencyPolicy`,
//! `suspend` and `startingDeadlineSeconds`, and keeps only the newest
//! finished Jobs (`successfulJobsHistoryLimit` / `failedJobsHistoryLimit`).

mod plan;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

pub use plan::{Plan, SCHEDULED_AT, plan};

use crate::runtime::{Backoff, Expectations, key_of, run_controller};
use crate::{Error, owned};

const RESYNC: Duration = Duration::from_secs(300);
const COMPONENT: &str = "cronjob-controller";

/// The CronJob controller's words about Jobs.
const JOB_WORDS: owned::Words = owned::Words {
    created: |_, job| format!("Created job {job}"),
    create_failed: |_, _, why| format!("Error creating job: {why}"),
    deleted: |_, job| format!("Deleted job {job}"),
    delete_failed: |_, job, why| format!("Error deleting job {job}: {why}"),
};

struct Context {
    client: kube::Client,
    jobs: Store<Job>,
    expectations: Expectations,
    backoff: Backoff,
}

/// Run the CronJob controller until `cancel` fires.
pub async fn run(client: kube::Client, cancel: CancellationToken) {
    let (jobs, job_events) = owned::watch_all::<Job>(&client);
    let context = Arc::new(Context {
        client: client.clone(),
        jobs,
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    let controller = Controller::new(Api::<CronJob>::all(client), watcher::Config::default())
        .owns_stream(job_events);
    run_controller(
        "cronjob",
        "cronjob",
        controller,
        Duration::from_millis(50),
        cancel,
        reconcile,
        context,
    )
    .await;
}

async fn reconcile(cronjob: Arc<CronJob>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(cronjob.as_ref());
    let namespace = cronjob.metadata.namespace.clone().unwrap_or_default();
    let uid = cronjob.metadata.uid.clone().unwrap_or_default();
    let jobs = owned::controlled_by(&context.jobs, &namespace, &uid).await?;
    if !context
        .expectations
        .satisfied(&key, |name| owned::holds_alive(&jobs, name))
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if cronjob.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let plan = plan(&cronjob, &jobs, jiff::Timestamp::now());
    let result = execute(&cronjob, &plan, &context, &key).await;
    if result.is_err() {
        context.expectations.forget(&key);
    }
    result?;
    context.backoff.succeeded(&key);
    Ok(Action::requeue(plan.requeue_after.unwrap_or(RESYNC)))
}

async fn execute(
    cronjob: &CronJob,
    plan: &Plan,
    context: &Context,
    key: &str,
) -> Result<(), Error> {
    for job in &plan.delete {
        owned::delete_recorded::<_, Job>(&context.client, COMPONENT, cronjob, job, &JOB_WORDS)
            .await?;
    }
    context.expectations.expect(
        key,
        plan.create.iter().map(|(name, _)| name.clone()).collect(),
        plan.delete.clone(),
    );
    if let Some((name, scheduled)) = &plan.create {
        tracing::info!(job = %name, %scheduled, "starting scheduled job");
        // A Job of that name means this time already ran.
        let job = job_for(cronjob, name, scheduled);
        owned::create_recorded(&context.client, COMPONENT, cronjob, &job, true, &JOB_WORDS).await?;
    }
    owned::patch_status(
        &context.client,
        cronjob,
        cronjob.status.as_ref(),
        &plan.status,
    )
    .await?;
    // After the status that drops finished Jobs from `active`, so a retried
    // reconcile does not see them again.
    crate::events::notes(&context.client, COMPONENT, cronjob, &plan.events).await;
    Ok(())
}

/// The Job for one scheduled time, from the CronJob's `jobTemplate`.
pub fn job_for(cronjob: &CronJob, name: &str, scheduled: &jiff::Zoned) -> Job {
    let template = cronjob
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let mut annotations = template_meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_AT.into(),
        scheduled
            .timestamp()
            .to_zoned(scheduled.time_zone().clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cronjob.metadata.namespace.clone(),
            labels: template_meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owned::owner_reference(cronjob)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

impl crate::runtime::HasBackoff for Context {
    fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}
