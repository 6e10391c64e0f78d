//! `cold-start`: the first response from a function scaled to zero, through
//! the node gateway, with the artifact already compiled and cached.
//!
//! Ours: the real `skiff up`; a Deployment of `examples/hello-http` annotated
//! for scale to zero (`skiff.dev/scale-to-zero-after`) behind a Service. Each
//! round starts with no pod at all (scaled to zero through the `scale`
//! subresource, the pod seen gone and the Service's EndpointSlice empty), then
//! one request goes to the gateway on a fresh connection; latency = request
//! sent → response body read. In between, the gateway holds the request,
//! scales the Deployment to one, the Deployment and ReplicaSet controllers
//! create the pod, the scheduler binds it, the agent starts it and reports
//! it Ready, the endpoint controller marks it ready, and the gateway forwards.
//! A watch on the namespace's pods times the stages of each round.
//!
//! Peer: `wasmtime serve` on the same component, precompiled with `wasmtime
//! compile` (its cached artifact): process spawn → first 200 response, polled
//! every 0.2 ms, the process stopped before the next round.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::watch;

use crate::pod_start::{SkiffNode, build_skiff};
use crate::process::{Managed, free_port};
use crate::report::{Better, Comparison, Samples};

const NAMESPACE: &str = "cold";
const HOST: &str = "fn.cold";

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Cold starts measured (after the warm-up rounds).
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Rounds run first and not counted (the first compiles the artifact).
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Process starts of the peer measured.
    #[arg(long, default_value_t = 200)]
    pub peer_count: usize,
    /// The `wasi:http` guest.
    #[arg(
        long,
        default_value = "/usr/local/share/skiff/examples/hello-http.wasm"
    )]
    pub guest: PathBuf,
    /// A `skiff` binary to use instead of building `--release --bin skiff`.
    #[arg(long)]
    pub skiff_bin: Option<PathBuf>,
    /// Measure Skiff's side only (its stages), without `wasmtime`: no `RESULT` lines.
    #[arg(long)]
    pub skip_peer: bool,
}

pub async fn run(options: Options) -> Result<Vec<Comparison>> {
    if !options.guest.is_file() {
        bail!(
            "{} is missing: run scripts/build-guests first",
            options.guest.display()
        );
    }
    let wasmtime = match options.skip_peer {
        true => None,
        false => Some(crate::wasmtime::find_wasmtime()?),
    };
    let skiff = match &options.skiff_bin {
        Some(path) => path.clone(),
        None => build_skiff()?,
    };
    let node = SkiffNode::start(&skiff).await?;
    let gateway: SocketAddr = node
        .gateway
        .as_deref()
        .context("skiff up announced no gateway")?
        .parse()?;
    deploy(&node.client, &options.guest).await?;
    let pods = PodTimes::follow(Api::namespaced(node.client.clone(), NAMESPACE)).await?;
    let client = reqwest::Client::builder()
        .resolve(HOST, gateway)
        // A new connection per request: nothing is kept warm for the next round.
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = format!("http://{HOST}:{}/cold", gateway.port());

    let mut latencies = Vec::new();
    let mut stages: [Vec<Duration>; 4] = Default::default();
    for round in 0..options.warmup + options.count {
        to_zero(&node.client, &pods).await?;
        let sent = Instant::now();
        let response = client.get(&url).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        let answered = Instant::now();
        if !status.is_success() {
            bail!(
                "round {round}: {status} {}; see {}",
                String::from_utf8_lossy(&body),
                node.log.display()
            );
        }
        if round < options.warmup {
            continue;
        }
        latencies.push(answered - sent);
        // The stages of this round's pod, as the watch saw them.
        if let Some(times) = pods.newest(sent) {
            let points = [times.seen, times.bound, times.ready, Some(answered)];
            let mut last = sent;
            for (stage, point) in stages.iter_mut().zip(points) {
                if let Some(point) = point {
                    stage.push(point.saturating_duration_since(last));
                    last = point;
                }
            }
        }
        if (round + 1 - options.warmup).is_multiple_of(50) {
            eprintln!(
                "bench: {} cold starts, {}",
                round + 1 - options.warmup,
                Samples::new(latencies.clone()).summary()
            );
        }
    }
    let ours = Samples::new(latencies);
    eprintln!(
        "bench: skiff cold start (request → response): {}",
        ours.summary()
    );
    let names = [
        "request → pod created (gateway wakes the Deployment, controllers create the pod)",
        "pod created → bound (scheduler)",
        "bound → Ready (agent: start the Wasm pod, status write)",
        "Ready → response (endpoint controller, gateway cache, forward, instance)",
    ];
    for (name, stage) in names.iter().zip(stages) {
        eprintln!("bench:   {name}: {}", Samples::new(stage).summary());
    }
    drop(pods);
    drop(node);

    let Some(wasmtime) = wasmtime else {
        eprintln!("bench: --skip-peer: no comparison");
        return Ok(Vec::new());
    };
    let peer = peer_starts(&wasmtime, &options).await?;
    eprintln!(
        "bench: wasmtime serve start → first response: {}",
        peer.summary()
    );
    let peer_name = format!("{}-process-start", crate::wasmtime::peer_name());
    Ok(vec![
        Comparison {
            bench: "cold-start",
            metric: "first_response_p50".into(),
            ours: ours.percentile_ms(50.0),
            peer: peer.percentile_ms(50.0),
            peer_name: peer_name.clone(),
            unit: "ms",
            better: Better::Lower,
        },
        Comparison {
            bench: "cold-start",
            metric: "first_response_p99".into(),
            ours: ours.percentile_ms(99.0),
            peer: peer.percentile_ms(99.0),
            peer_name,
            unit: "ms",
            better: Better::Lower,
        },
    ])
}

async fn deploy(client: &kube::Client, guest: &std::path::Path) -> Result<()> {
    let post = PostParams::default();
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&post, &namespace)
        .await?;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {
            "name": "fn",
            "namespace": NAMESPACE,
            // The bench scales it to zero itself; the gateway only wakes it.
            "annotations": {
                "skiff.dev/scale-to-zero-after": "1h",
                "skiff.dev/scale-to-zero-timeout": "60s",
            },
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "fn"}},
            "template": {
                "metadata": {"labels": {"app": "fn"}},
                "spec": {"containers": [{
                    "name": "fn",
                    "image": format!("file://{}", guest.display()),
                    "ports": [{"containerPort": 8080}]
                }]}
            }
        }
    }))?;
    Api::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .create(&post, &deployment)
        .await?;
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "fn", "namespace": NAMESPACE},
        "spec": {"selector": {"app": "fn"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))?;
    Api::<Service>::namespaced(client.clone(), NAMESPACE)
        .create(&post, &service)
        .await?;
    Ok(())
}

/// Scales the Deployment to zero and waits until no pod is left and the
/// Service's EndpointSlices list no endpoint.
async fn to_zero(client: &kube::Client, pods: &PodTimes) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let replicas = deployments
        .get_scale("fn")
        .await?
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    if replicas != 0 {
        scale_to(&deployments, "fn", 0).await?;
    }
    pods.wait_none(Duration::from_secs(60)).await?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let params = ListParams::default().labels("kubernetes.io/service-name=fn");
    let start = Instant::now();
    loop {
        let endpoints: usize = slices
            .list(&params)
            .await?
            .items
            .iter()
            .map(|s| s.endpoints.len())
            .sum();
        if endpoints == 0 {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the Service still lists {endpoints} endpoint(s) 60 s after its pods went");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sets a Deployment's replicas through its `scale` subresource. Skiff's API
/// server can answer a merge patch of `scale` with 409 Conflict when another
/// write to the Deployment wins the race (Kubernetes retries such patches
/// itself); the patch carries no resourceVersion, so sending it again is safe.
pub(crate) async fn scale_to(api: &Api<Deployment>, name: &str, replicas: i32) -> Result<()> {
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let mut conflicts = 0;
    loop {
        match api.patch_scale(name, &PatchParams::default(), &patch).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 && conflicts < 10 => {
                conflicts += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(err) => {
                return Err(err).with_context(|| format!("scaling {name} to {replicas}"));
            }
        }
    }
}

/// When the watch first saw a pod, saw it bound and saw it Ready.
#[derive(Clone, Copy, Debug)]
struct Times {
    seen: Option<Instant>,
    bound: Option<Instant>,
    ready: Option<Instant>,
}

/// Every pod of the namespace, followed through one watch.
struct PodTimes {
    times: Arc<Mutex<HashMap<String, Times>>>,
    live: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl PodTimes {
    async fn follow(api: Api<Pod>) -> Result<PodTimes> {
        let times: Arc<Mutex<HashMap<String, Times>>> = Arc::default();
        let (live_tx, live) = watch::channel(usize::MAX);
        let recorded = Arc::clone(&times);
        let task = tokio::spawn(async move {
            let mut present: HashMap<String, ()> = HashMap::new();
            let mut initial = Vec::new();
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(event) = events.next().await {
                let now = Instant::now();
                match event {
                    Ok(watcher::Event::Apply(pod)) => {
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        present.insert(name.clone(), ());
                        let mut times = recorded.lock().unwrap();
                        let entry = times.entry(name).or_insert(Times {
                            seen: Some(now),
                            bound: None,
                            ready: None,
                        });
                        if entry.bound.is_none()
                            && pod.spec.as_ref().is_some_and(|s| s.node_name.is_some())
                        {
                            entry.bound = Some(now);
                        }
                        if entry.ready.is_none() && is_ready(&pod) {
                            entry.ready = Some(now);
                        }
                    }
                    Ok(watcher::Event::Delete(pod)) => {
                        present.remove(&pod.metadata.name.unwrap_or_default());
                    }
                    Ok(watcher::Event::Init) => initial.clear(),
                    Ok(watcher::Event::InitApply(pod)) => {
                        initial.push(pod.metadata.name.unwrap_or_default());
                    }
                    Ok(watcher::Event::InitDone) => {
                        present = initial.drain(..).map(|n| (n, ())).collect();
                    }
                    Err(err) => {
                        eprintln!("bench: pod watch error (it retries): {err}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
                let _ = live_tx.send(present.len());
            }
        });
        Ok(PodTimes { times, live, task })
    }

    async fn wait_none(&self, timeout: Duration) -> Result<()> {
        let mut live = self.live.clone();
        tokio::time::timeout(timeout, live.wait_for(|n| *n == 0))
            .await
            .context("pods still present after scaling to zero")?
            .context("the pod watch stopped")?;
        Ok(())
    }

    /// The times of the pod first seen after `since`.
    fn newest(&self, since: Instant) -> Option<Times> {
        let times = self.times.lock().unwrap();
        times
            .values()
            .filter(|t| t.seen.is_some_and(|s| s >= since))
            .min_by_key(|t| t.seen)
            .copied()
    }
}

impl Drop for PodTimes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `wasmtime serve` of the precompiled component: spawn → first 200 response,
/// `peer_count` times, each process stopped before the next.
async fn peer_starts(wasmtime: &std::path::Path, options: &Options) -> Result<Samples> {
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-cold-")
        .tempdir()?;
    let cwasm = crate::wasmtime::precompile(wasmtime, &options.guest, dir.path())?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut starts = Vec::new();
    for round in 0..options.warmup + options.peer_count {
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}/cold");
        let spawned = Instant::now();
        let child = crate::wasmtime::serve_command(wasmtime, &cwasm, port)
            .spawn()
            .context("starting wasmtime serve")?;
        let mut process = Managed::new(child, "wasmtime serve", Duration::from_secs(5));
        let answered = loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
                && response.bytes().await.is_ok()
            {
                break Instant::now();
            }
            process.check_running()?;
            if spawned.elapsed() > Duration::from_secs(30) {
                bail!("wasmtime serve did not answer within 30 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        process.stop();
        if round >= options.warmup {
            starts.push(answered - spawned);
        }
    }
    Ok(Samples::new(starts))
}
