//! The HorizontalPodAutoscaler controller (autoscaling/v2, CPU and memory
//! Resource metrics): every 15 s it reads the target's scale, its pods and
//! their usage, and sets the replica count that brings average utilization
//! to the target, holding scale-downs for a 5-minute stabilization window.
//!
//! Usage comes through [`PodMetrics`]; [`MetricsApi`] reads it from
//! `metrics.k8s.io/v1beta1` as kube-controller-manager does. Tests plug in
//! their own numbers.

mod plan;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use plan::{Decision, TOLERANCE, Usage, evaluate, limited_condition, stabilize};

use crate::runtime::{Backoff, drive, key_of};
use crate::{Error, owned};

/// How often each autoscaler is evaluated (`--horizontal-pod-autoscaler-sync-period`).
pub const SYNC: Duration = Duration::from_secs(15);
/// Scale-down stabilization window (`behavior.scaleDown.stabilizationWindowSeconds` default).
pub const DOWNSCALE_WINDOW: Duration = Duration::from_secs(300);

/// Where pod usage comes from.
pub trait PodMetrics: Send + Sync + 'static {
    /// Usage of the named pods of `namespace` that have a measurement.
    fn usage<'a>(
        &'a self,
        namespace: &'a str,
        pods: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, Usage>, String>>;
}

/// Usage from the resource metrics API (`metrics.k8s.io/v1beta1` PodMetrics),
/// summed over each pod's containers.
pub struct MetricsApi {
    pub client: kube::Client,
}

impl PodMetrics for MetricsApi {
    fn usage<'a>(
        &'a self,
        namespace: &'a str,
        pods: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, Usage>, String>> {
        Box::pin(async move {
            let request = http::Request::get(format!(
                "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"
            ))
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
            let list: serde_json::Value =
                self.client.request(request).await.map_err(|e| {
                    format!("unable to fetch metrics from resource metrics API: {e}")
                })?;
            let mut out = HashMap::new();
            for item in list["items"].as_array().into_iter().flatten() {
                let name = item["metadata"]["name"].as_str().unwrap_or_default();
                if !pods.iter().any(|p| p == name) {
                    continue;
                }
                let mut usage = Usage::default();
                for container in item["containers"].as_array().into_iter().flatten() {
                    let read = |key: &str, exponent: i32| {
                        container["usage"][key]
                            .as_str()
                            .map_or(0, |q| skiff_quantity::scaled_or_zero(q, exponent))
                    };
                    usage.milli_cpu += read("cpu", -3);
                    usage.memory += read("memory", 0);
                }
                out.insert(name.to_string(), usage);
            }
            Ok(out)
        })
    }
}

struct Context {
    client: kube::Client,
    metrics: Arc<dyn PodMetrics>,
    /// Recent recommendations per autoscaler, for the downscale window.
    history: Mutex<HashMap<String, Vec<(jiff::Timestamp, i32)>>>,
    backoff: Backoff,
}

/// Run the HorizontalPodAutoscaler controller until `cancel` fires.
pub async fn run(client: kube::Client, metrics: Arc<dyn PodMetrics>, cancel: CancellationToken) {
    let context = Arc::new(Context {
        client: client.clone(),
        metrics,
        history: Mutex::default(),
        backoff: Backoff::default(),
    });
    let results = Controller::new(
        Api::<HorizontalPodAutoscaler>::all(client),
        watcher::Config::default(),
    )
    .with_config(Config::default().debounce(Duration::from_millis(50)))
    .graceful_shutdown_on(cancel.cancelled_owned())
    .run(reconcile, error_policy, context)
    .boxed();
    drive("horizontalpodautoscaler", results).await;
}

fn error_policy(hpa: Arc<HorizontalPodAutoscaler>, error: &Error, context: Arc<Context>) -> Action {
    crate::runtime::retry_failed(
        "horizontalpodautoscaler",
        hpa.as_ref(),
        error,
        &context.backoff,
    )
}

/// The target's scale: replicas and the pod selector.
struct Scale {
    replicas: i32,
    selector: String,
}

async fn get_scale(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<Scale, Error> {
    let read = |e| Error::write("reading the scale of", namespace, name, e);
    let scale = match kind {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), namespace)
            .get_scale(name)
            .await
            .map_err(read)?,
        "ReplicaSet" => Api::<ReplicaSet>::namespaced(client.clone(), namespace)
            .get_scale(name)
            .await
            .map_err(read)?,
        "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), namespace)
            .get_scale(name)
            .await
            .map_err(read)?,
        other => {
            return Err(Error::Unsupported(format!(
                "scaleTargetRef.kind {other:?} (Deployment, ReplicaSet and StatefulSet are)"
            )));
        }
    };
    let status = scale.status.unwrap_or_default();
    Ok(Scale {
        replicas: scale
            .spec
            .and_then(|s| s.replicas)
            .unwrap_or(status.replicas),
        selector: status.selector.unwrap_or_default(),
    })
}

async fn set_scale(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
    replicas: i32,
) -> Result<(), kube::Error> {
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let params = PatchParams::default();
    match kind {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), namespace)
            .patch_scale(name, &params, &patch)
            .await
            .map(drop),
        "ReplicaSet" => Api::<ReplicaSet>::namespaced(client.clone(), namespace)
            .patch_scale(name, &params, &patch)
            .await
            .map(drop),
        _ => Api::<StatefulSet>::namespaced(client.clone(), namespace)
            .patch_scale(name, &params, &patch)
            .await
            .map(drop),
    }
}

async fn reconcile(
    hpa: Arc<HorizontalPodAutoscaler>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let key = key_of(hpa.as_ref());
    let namespace = hpa.metadata.namespace.clone().unwrap_or_default();
    let target = hpa
        .spec
        .as_ref()
        .map(|s| s.scale_target_ref.clone())
        .unwrap_or_default();
    let scale = get_scale(&context.client, &namespace, &target.kind, &target.name).await?;
    let pods_api: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let pods = pods_api
        .list(&ListParams::default().labels(&scale.selector))
        .await
        .map_err(|source| Error::Read {
            what: "pods",
            namespace: namespace.clone(),
            source,
        })?
        .items;
    let names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let usage = match context.metrics.usage(&namespace, &names).await {
        Ok(usage) => usage,
        Err(err) => {
            tracing::warn!(hpa = %key, %err, "no metrics");
            HashMap::new()
        }
    };
    let now = jiff::Timestamp::now();
    let refs: Vec<&Pod> = pods.iter().collect();
    let mut decision = evaluate(&hpa, scale.replicas, &refs, &usage, now);
    let window = {
        let mut history = context.history.lock().expect("hpa history");
        let entries = history.entry(key.clone()).or_default();
        let since = now - jiff::SignedDuration::try_from(DOWNSCALE_WINDOW).unwrap_or_default();
        entries.retain(|(at, _)| *at >= since);
        let window: Vec<i32> = entries.iter().map(|(_, r)| *r).collect();
        if decision.metrics_error.is_none() {
            entries.push((now, decision.recommendation));
        }
        window
    };
    let old = hpa.status.clone().unwrap_or_default();
    let (desired, limit) = if decision.metrics_error.is_some() {
        (scale.replicas, None)
    } else {
        stabilize(&hpa, scale.replicas, decision.recommendation, &window)
    };
    decision.status.desired_replicas = desired;
    if let Some(conditions) = decision.status.conditions.as_mut() {
        conditions.push(limited_condition(limit, &old, now));
    }
    if desired != scale.replicas {
        tracing::info!(hpa = %key, from = scale.replicas, to = desired, "rescaling");
        set_scale(
            &context.client,
            &namespace,
            &target.kind,
            &target.name,
            desired,
        )
        .await
        .map_err(|e| Error::write("scaling", &namespace, &target.name, e))?;
        decision.status.last_scale_time = Some(Time(now));
        if let Some(able) = decision
            .status
            .conditions
            .as_mut()
            .and_then(|c| c.iter_mut().find(|c| c.type_ == "AbleToScale"))
        {
            able.reason = Some("SucceededRescale".into());
            able.message = Some(format!(
                "the HPA controller was able to update the target scale to {desired}"
            ));
        }
    }
    owned::patch_status(
        &context.client,
        hpa.as_ref(),
        hpa.status.as_ref(),
        &decision.status,
    )
    .await?;
    context.backoff.succeeded(&key);
    Ok(Action::requeue(SYNC))
}
