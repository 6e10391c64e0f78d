//! The PodDisruptionBudget status controller: how many of the budget's pods
//! are healthy, how many must stay so, and how many may be disrupted now
//! (what `kubectl get pdb` shows and what evictions check).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Backoff, HasBackoff, key_of, run_controller};
use crate::{Error, owned, pods};

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    backoff: Backoff,
}

/// Run the PodDisruptionBudget controller until `cancel` fires.
pub async fn run(client: kube::Client, cancel: CancellationToken) {
    let (pods, pod_events) = owned::watch_pods(&client);
    let controller = Controller::new(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let budgets = controller.store();
    let context = Arc::new(Context {
        client,
        pods,
        backoff: Backoff::default(),
    });
    let controller = controller
        // A pod change matters to the budgets of its namespace.
        .watches_stream(pod_events, move |pod: Pod| {
            let namespace = pod.metadata.namespace.clone();
            budgets
                .state()
                .iter()
                .filter(|b| b.metadata.namespace == namespace)
                .map(|b| ObjectRef::from_obj(b.as_ref()))
                .collect::<Vec<_>>()
        });
    run_controller(
        "disruption",
        "poddisruptionbudget",
        controller,
        Duration::from_millis(100),
        cancel,
        reconcile,
        context,
    )
    .await;
}

impl HasBackoff for Context {
    fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, context: Arc<Context>) -> Result<Action, Error> {
    crate::runtime::cache_ready(&context.pods).await?;
    let namespace = pdb.metadata.namespace.clone();
    let in_namespace: Vec<Arc<Pod>> = context
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace == namespace)
        .collect();
    let refs: Vec<&Pod> = in_namespace.iter().map(|p| p.as_ref()).collect();
    let status = plan(&pdb, &refs, jiff::Timestamp::now());
    owned::patch_status(&context.client, pdb.as_ref(), pdb.status.as_ref(), &status).await?;
    context.backoff.succeeded(&key_of(pdb.as_ref()));
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// The budget's status given the pods of its namespace.
pub fn plan(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    now: jiff::Timestamp,
) -> PodDisruptionBudgetStatus {
    let spec = pdb.spec.clone().unwrap_or_default();
    let selector = spec.selector.clone().unwrap_or_default();
    let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
    // policy/v1: an empty selector selects every pod of the namespace.
    let selected: Vec<&&Pod> = pods
        .iter()
        .filter(|p| empty || pods::selects(&selector, p.metadata.labels.as_ref()))
        .filter(|p| pods::is_active(p))
        .collect();
    let expected = selected.len() as i32;
    let healthy = selected.iter().filter(|p| pods::is_ready(p)).count() as i32;
    let desired = match (&spec.min_available, &spec.max_unavailable) {
        (Some(min), _) => scaled(min, expected),
        (None, Some(max)) => (expected - scaled(max, expected)).max(0),
        (None, None) => 0,
    };
    let allowed = (healthy - desired).max(0);
    let old = pdb.status.clone().unwrap_or_default();
    let (status, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let transition = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed" && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        disruptions_allowed: allowed,
        expected_pods: expected,
        observed_generation: pdb.metadata.generation,
        disrupted_pods: old.disrupted_pods,
        conditions: Some(vec![Condition {
            type_: "DisruptionAllowed".into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: pdb.metadata.generation,
            last_transition_time: transition,
        }]),
    }
}

/// An int, or a percent of `total` rounded up (as the disruption controller does).
fn scaled(value: &IntOrString, total: i32) -> i32 {
    match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            ((percent * i64::from(total) + 99) / 100) as i32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, app: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    fn pdb(spec: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "generation": 2},
            "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn min_available_and_max_unavailable_as_numbers_and_percents() {
        let pods = [
            pod("a", "web", true),
            pod("b", "web", true),
            pod("c", "web", true),
            pod("d", "web", false),
            pod("x", "db", true),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let now = jiff::Timestamp::UNIX_EPOCH;
        let selector = json!({"matchLabels": {"app": "web"}});

        let status = plan(
            &pdb(json!({"selector": selector, "minAvailable": 2})),
            &refs,
            now,
        );
        assert_eq!(
            (
                status.expected_pods,
                status.current_healthy,
                status.desired_healthy,
                status.disruptions_allowed
            ),
            (4, 3, 2, 1)
        );
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.conditions.unwrap()[0].reason, "SufficientPods");

        let status = plan(
            &pdb(json!({"selector": selector, "maxUnavailable": "50%"})),
            &refs,
            now,
        );
        assert_eq!((status.desired_healthy, status.disruptions_allowed), (2, 1));

        let status = plan(
            &pdb(json!({"selector": selector, "minAvailable": "80%"})),
            &refs,
            now,
        );
        assert_eq!((status.desired_healthy, status.disruptions_allowed), (4, 0));
        let condition = &status.conditions.unwrap()[0];
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", "InsufficientPods")
        );

        let everything = plan(
            &pdb(json!({"selector": {}, "maxUnavailable": 1})),
            &refs,
            now,
        );
        assert_eq!(
            everything.expected_pods, 5,
            "an empty selector selects the namespace"
        );
    }
}
