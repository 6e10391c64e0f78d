//! Scaling driven by the requests the gateway sees: Deployments annotated
//! for it (see [`crate::policy`]) are scaled to zero when idle, woken by
//! their first request (which is held until an endpoint is Ready), and
//! scaled on in-flight requests per pod. Every change goes through the
//! Deployment's `scale` subresource, as `kubectl scale` does, and is
//! recorded as an Event on the Deployment.
//!
//! Which Deployment serves a Service: an annotated Deployment in the
//! Service's namespace whose pod template labels the Service's selector
//! matches (the first by name when several do).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cache::Caches;
use crate::policy::ScalePolicy;

/// How often the scaler looks at every annotated Deployment.
const TICK: Duration = Duration::from_secs(1);
/// Ticks of in-flight averages the concurrency scaler scales down on.
const WINDOW: usize = 10;
/// A wake-up (scale to one) is sent again after this long without effect.
const WAKE_AGAIN: Duration = Duration::from_secs(2);
/// Who the API server records as the writer of our scale changes.
const MANAGER: &str = "skiff-gateway";

/// A Deployment the gateway scales, with its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub name: String,
    pub policy: ScalePolicy,
}

impl Target {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What the gateway measured for one Deployment.
#[derive(Debug)]
struct Activity {
    /// Requests inside the gateway now (held or forwarded).
    in_flight: usize,
    /// Of those, the ones held for a ready endpoint.
    held: usize,
    /// The last request's end, or when the Deployment last came up from zero.
    last_request: Instant,
    /// In-flight requests × seconds since the last tick.
    area: f64,
    last_change: Instant,
    tick_start: Instant,
    /// Mean in-flight requests of the last ticks.
    window: VecDeque<f64>,
    /// The replicas seen at the last tick.
    replicas: Option<i32>,
    /// The last wake-up: when, and the Deployment's resourceVersion then.
    woken: Option<(Instant, Option<String>)>,
}

impl Activity {
    fn new(now: Instant) -> Activity {
        Activity {
            in_flight: 0,
            held: 0,
            last_request: now,
            area: 0.0,
            last_change: now,
            tick_start: now,
            window: VecDeque::new(),
            replicas: None,
            woken: None,
        }
    }

    fn account(&mut self, now: Instant) {
        self.area += self.in_flight as f64 * (now - self.last_change).as_secs_f64();
        self.last_change = now;
    }

    /// The mean in flight since the last tick; starts the next.
    fn tick(&mut self, now: Instant) -> f64 {
        self.account(now);
        let elapsed = (now - self.tick_start).as_secs_f64();
        let mean = if elapsed > 0.0 {
            self.area / elapsed
        } else {
            self.in_flight as f64
        };
        self.area = 0.0;
        self.tick_start = now;
        self.window.push_back(mean);
        while self.window.len() > WINDOW {
            self.window.pop_front();
        }
        mean
    }

    fn window_mean(&self) -> f64 {
        if self.window.is_empty() {
            return 0.0;
        }
        self.window.iter().sum::<f64>() / self.window.len() as f64
    }
}

type Labels = BTreeMap<String, String>;

/// Service → Deployment, rebuilt when the caches change.
#[derive(Default)]
struct Index {
    version: Option<u64>,
    by_service: HashMap<(String, String), Arc<Target>>,
    targets: Vec<Arc<Target>>,
}

/// The annotated Deployments of one namespace, in name order, found by any
/// one of their pod template labels: a selector is matched against the
/// Deployments that carry its rarest label only, so building the index costs
/// about one lookup per Service, not one comparison per Service and Deployment.
#[derive(Default)]
struct Candidates {
    deployments: Vec<(Labels, Arc<Target>)>,
    by_label: HashMap<(String, String), Vec<usize>>,
}

impl Candidates {
    fn add(&mut self, labels: Labels, target: Arc<Target>) {
        let at = self.deployments.len();
        for (key, value) in &labels {
            self.by_label
                .entry((key.clone(), value.clone()))
                .or_default()
                .push(at);
        }
        self.deployments.push((labels, target));
    }

    /// The first Deployment (by name) whose labels the non-empty `selector` matches.
    fn first_selected(&self, selector: &Labels) -> Option<&Arc<Target>> {
        let rarest = selector
            .iter()
            .map(|(k, v)| {
                self.by_label
                    .get(&(k.clone(), v.clone()))
                    .map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|found| found.len())?;
        rarest.iter().find_map(|&at| {
            let (labels, target) = &self.deployments[at];
            selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
                .then_some(target)
        })
    }
}

pub struct Scaler {
    client: kube::Client,
    caches: Caches,
    index: Mutex<Index>,
    activity: Mutex<HashMap<String, Activity>>,
    /// Bad annotations already reported: Deployment key → the error text.
    reported: Mutex<HashMap<String, String>>,
}

/// Counts a request as in flight for a Deployment until dropped.
pub struct InFlight<'a> {
    scaler: &'a Scaler,
    key: String,
    held: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut activity = self.scaler.activity.lock().expect("scaler lock");
        if let Some(a) = activity.get_mut(&self.key) {
            a.account(now);
            a.in_flight = a.in_flight.saturating_sub(1);
            if self.held {
                a.held = a.held.saturating_sub(1);
            }
            a.last_request = now;
        }
    }
}

impl<'a> InFlight<'a> {
    /// Mark this request held; `Err` with the reason when the queue is full.
    pub fn hold(&mut self, target: &Target) -> Result<(), String> {
        if self.held {
            return Ok(());
        }
        let mut activity = self.scaler.activity.lock().expect("scaler lock");
        let a = activity
            .entry(self.key.clone())
            .or_insert_with(|| Activity::new(Instant::now()));
        if a.held >= target.policy.queue_limit {
            return Err(format!(
                "Deployment {} has no ready endpoint and already holds {} request(s), its queue limit ({})",
                target.key(),
                a.held,
                crate::policy::SCALE_TO_ZERO_QUEUE
            ));
        }
        a.held += 1;
        self.held = true;
        Ok(())
    }
}

impl Scaler {
    pub fn new(client: kube::Client, caches: Caches) -> Scaler {
        Scaler {
            client,
            caches,
            index: Mutex::default(),
            activity: Mutex::default(),
            reported: Mutex::default(),
        }
    }

    /// The annotated Deployment behind Service `namespace/service`, if any.
    pub fn target(&self, namespace: &str, service: &str) -> Option<Arc<Target>> {
        self.index()
            .by_service
            .get(&(namespace.to_string(), service.to_string()))
            .cloned()
    }

    /// Count a request for `target` as in flight until the guard drops.
    pub fn start(&self, target: &Target) -> InFlight<'_> {
        let key = target.key();
        let now = Instant::now();
        let mut activity = self.activity.lock().expect("scaler lock");
        let a = activity
            .entry(key.clone())
            .or_insert_with(|| Activity::new(now));
        a.account(now);
        a.in_flight += 1;
        InFlight {
            scaler: self,
            key,
            held: false,
        }
    }

    /// Scale `target` to one replica if it is at zero (once per [`WAKE_AGAIN`]).
    pub fn wake(&self, target: &Target) {
        let Some(deployment) = self.caches.deployment(&target.namespace, &target.name) else {
            return;
        };
        if spec_replicas(&deployment) != 0 {
            return;
        }
        let version = deployment.metadata.resource_version.clone();
        let now = Instant::now();
        {
            let mut activity = self.activity.lock().expect("scaler lock");
            let a = activity
                .entry(target.key())
                .or_insert_with(|| Activity::new(now));
            // Our last scale-up is still on its way (the Deployment has not
            // changed since): do not send it again yet. Once the Deployment
            // changed (it came up, and was scaled to zero again), wake at once.
            if a.woken
                .as_ref()
                .is_some_and(|(at, seen)| now - *at < WAKE_AGAIN && *seen == version)
            {
                return;
            }
            a.woken = Some((now, version));
        }
        let client = self.client.clone();
        let target = target.clone();
        tokio::spawn(async move {
            scale(
                &client,
                &target,
                0,
                1,
                "ScaledFromZero",
                "a request arrived",
            )
            .await;
        });
    }

    /// The index, rebuilt first if any cached object changed since.
    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        let version = *self.caches.changes().borrow();
        let mut index = self.index.lock().expect("scaler lock");
        if index.version != Some(version) {
            *index = self.build_index(version);
        }
        index
    }

    fn build_index(&self, version: u64) -> Index {
        let mut targets = Vec::new();
        let mut by_namespace: HashMap<String, Candidates> = HashMap::new();
        let mut deployments = self.caches.deployments.state();
        deployments.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for deployment in deployments {
            let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
            let name = deployment.metadata.name.clone().unwrap_or_default();
            let policy =
                match ScalePolicy::from_annotations(deployment.metadata.annotations.as_ref()) {
                    Ok(Some(policy)) => policy,
                    Ok(None) => continue,
                    Err(bad) => {
                        self.report_bad(&deployment, &bad.to_string());
                        continue;
                    }
                };
            let labels = deployment
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            let target = Arc::new(Target {
                namespace: namespace.clone(),
                name,
                policy,
            });
            targets.push(Arc::clone(&target));
            by_namespace
                .entry(namespace)
                .or_default()
                .add(labels, target);
        }
        let mut by_service = HashMap::new();
        if !by_namespace.is_empty() {
            for service in self.caches.services.state() {
                let namespace = service.metadata.namespace.clone().unwrap_or_default();
                let Some(candidates) = by_namespace.get(&namespace) else {
                    continue;
                };
                let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                    continue;
                };
                if let Some(target) = candidates.first_selected(selector) {
                    let name = service.metadata.name.clone().unwrap_or_default();
                    by_service.insert((namespace, name), Arc::clone(target));
                }
            }
        }
        Index {
            version: Some(version),
            by_service,
            targets,
        }
    }

    /// A Warning Event on a Deployment whose annotations cannot be read, once per text.
    fn report_bad(&self, deployment: &Deployment, message: &str) {
        let key = format!(
            "{}/{}",
            deployment.metadata.namespace.as_deref().unwrap_or_default(),
            deployment.metadata.name.as_deref().unwrap_or_default()
        );
        let mut reported = self.reported.lock().expect("scaler lock");
        if reported.get(&key).map(String::as_str) == Some(message) {
            return;
        }
        reported.insert(key.clone(), message.to_string());
        tracing::warn!(deployment = %key, message, "scaling annotations ignored");
        let client = self.client.clone();
        let deployment = deployment.clone();
        let message = format!("scaling annotations ignored: {message}");
        tokio::spawn(async move {
            event(
                &client,
                &deployment,
                "Warning",
                "BadScaleAnnotation",
                &message,
            )
            .await;
        });
    }

    /// Look at every annotated Deployment once per [`TICK`] until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        if !self.caches.ready().await {
            return;
        }
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let targets = self.index().targets.clone();
            for target in targets {
                self.step(&target);
            }
        }
    }

    /// One tick for one Deployment: scale to zero when idle, or to the
    /// replicas its in-flight requests need.
    fn step(&self, target: &Arc<Target>) {
        let Some(deployment) = self.caches.deployment(&target.namespace, &target.name) else {
            return;
        };
        if deployment.metadata.deletion_timestamp.is_some() {
            return;
        }
        let current = spec_replicas(&deployment);
        let now = Instant::now();
        let decision = {
            let mut activity = self.activity.lock().expect("scaler lock");
            let a = activity
                .entry(target.key())
                .or_insert_with(|| Activity::new(now));
            // Coming up from zero (woken, or scaled by hand) starts the idle clock.
            if a.replicas == Some(0) && current > 0 {
                a.last_request = now;
            }
            a.replicas = Some(current);
            let recent = a.tick(now);
            let idle = now - a.last_request;
            match target.policy.idle_after {
                Some(after) if current > 0 && a.in_flight == 0 && idle >= after => Some((
                    0,
                    "ScaledToZero",
                    format!("no request for {}s", idle.as_secs()),
                )),
                _ => target
                    .policy
                    .desired_replicas(current, recent, a.window_mean())
                    .map(|n| {
                        (
                            n,
                            "ScaledForConcurrency",
                            format!(
                                "{recent:.1} requests in flight (mean {:.1} over {}s), target {} per pod",
                                a.window_mean(),
                                a.window.len(),
                                target.policy.target_concurrency.unwrap_or_default()
                            ),
                        )
                    }),
            }
        };
        if let Some((replicas, reason, why)) = decision {
            let client = self.client.clone();
            let target = Arc::clone(target);
            tokio::spawn(async move {
                scale(&client, &target, current, replicas, reason, &why).await;
            });
        }
    }
}

fn spec_replicas(deployment: &Deployment) -> i32 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

/// Set the replicas through the scale subresource and record an Event.
async fn scale(
    client: &kube::Client,
    target: &Target,
    from: i32,
    to: i32,
    reason: &str,
    why: &str,
) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), &target.namespace);
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    let patch = Patch::Merge(json!({"spec": {"replicas": to}}));
    match api.patch_scale(&target.name, &params, &patch).await {
        Ok(_) => {
            tracing::info!(deployment = %target.key(), from, to, reason, why, "scaled");
            if let Ok(deployment) = api.get(&target.name).await {
                let message = format!("scaled from {from} to {to} replicas: {why}");
                event(client, &deployment, "Normal", reason, &message).await;
            }
        }
        Err(err) => {
            tracing::warn!(deployment = %target.key(), to, %err, "scaling failed");
        }
    }
}

async fn event(
    client: &kube::Client,
    deployment: &Deployment,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
            name: Some(name),
            namespace: Some(namespace.clone()),
            uid: deployment.metadata.uid.clone(),
            resource_version: deployment.metadata.resource_version.clone(),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some(MANAGER.into()),
            host: None,
        }),
        reporting_component: Some(MANAGER.into()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Event::default()
    };
    if let Err(err) = Api::<Event>::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &event)
        .await
    {
        tracing::debug!(%err, "recording a scaling event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn target(name: &str) -> Arc<Target> {
        Arc::new(Target {
            namespace: "ns".into(),
            name: name.into(),
            policy: ScalePolicy::from_annotations(Some(&labels(&[(
                crate::policy::SCALE_TO_ZERO_AFTER,
                "30s",
            )])))
            .unwrap()
            .unwrap(),
        })
    }

    #[test]
    fn a_selector_finds_the_first_deployment_carrying_all_its_labels() {
        let mut candidates = Candidates::default();
        candidates.add(labels(&[("app", "web"), ("tier", "a")]), target("a"));
        candidates.add(labels(&[("app", "web"), ("tier", "b")]), target("b"));
        candidates.add(labels(&[("app", "api")]), target("c"));
        let found = |pairs: &[(&str, &str)]| {
            candidates
                .first_selected(&labels(pairs))
                .map(|t| t.name.clone())
        };
        assert_eq!(found(&[("app", "web")]).as_deref(), Some("a"));
        assert_eq!(
            found(&[("app", "web"), ("tier", "b")]).as_deref(),
            Some("b")
        );
        assert_eq!(found(&[("tier", "b")]).as_deref(), Some("b"));
        assert_eq!(found(&[("app", "api")]).as_deref(), Some("c"));
        assert_eq!(found(&[("app", "api"), ("tier", "a")]), None);
        assert_eq!(found(&[("app", "db")]), None);
        assert_eq!(found(&[]), None);
    }

    #[test]
    fn in_flight_mean_over_a_tick() {
        let start = Instant::now();
        let mut a = Activity::new(start);
        a.tick_start = start;
        a.last_change = start;
        // Two requests for the whole second, a third for half of it.
        a.in_flight = 2;
        a.account(start + Duration::from_millis(500));
        a.in_flight = 3;
        let mean = a.tick(start + Duration::from_secs(1));
        assert!((mean - 2.5).abs() < 1e-9, "{mean}");
        // The next tick starts from zero area and keeps the window.
        a.in_flight = 0;
        let mean = a.tick(start + Duration::from_secs(2));
        assert_eq!(mean, 0.0);
        assert!((a.window_mean() - 1.25).abs() < 1e-9);
        for i in 0..20 {
            a.tick(start + Duration::from_secs(3 + i));
        }
        assert_eq!(a.window.len(), WINDOW);
        assert_eq!(a.window_mean(), 0.0);
    }
}
