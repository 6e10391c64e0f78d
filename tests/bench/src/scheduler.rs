//! `scheduler`: how fast Skiff's scheduler binds pods on big simulated
//! clusters, next to kube-scheduler's published throughput.
//!
//! Each run starts a fresh store and API server in this process on loopback,
//! creates the fake nodes (Ready, with capacity) and the pending pods with no
//! scheduler running, then starts `skiff_scheduler::Scheduler` and times
//! until every pod is bound. A fake kubelet marks each bound pod Running, so
//! the API server carries the status writes a real cluster would. Bind
//! latency is measured afterwards on the 1,000-node cluster: pods created one
//! at a time (a few in flight), from just before the create request to the
//! watch event that shows the pod bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::report::{Better, Comparison, Samples};

/// kube-scheduler's throughput floor for `SchedulingBasic/5000Nodes_10000Pods`
/// in Kubernetes' scheduler_perf CI (test/integration/scheduler_perf/README.md,
/// "Scheduling throughput thresholds"), set just below the lowest figure seen
/// in its history.
const PEER_PODS_PER_S: f64 = 270.0;
const PEER_NAME: &str =
    "kube-scheduler(scheduler_perf-SchedulingBasic-5000Nodes_10000Pods-threshold)";

#[derive(clap::Args)]
pub struct Options {
    /// Nodes and pods of the small run.
    #[arg(long, default_value_t = 1000)]
    small_nodes: usize,
    #[arg(long, default_value_t = 10_000)]
    small_pods: usize,
    /// Nodes and pods of the large run.
    #[arg(long, default_value_t = 5000)]
    large_nodes: usize,
    #[arg(long, default_value_t = 50_000)]
    large_pods: usize,
    /// Pods created one by one for the bind latency (on the small cluster).
    #[arg(long, default_value_t = 1000)]
    latency_pods: usize,
    /// Creates in flight while measuring latency.
    #[arg(long, default_value_t = 4)]
    latency_concurrency: usize,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_s: u64,
}

pub async fn run(options: Options) -> Result<Vec<Comparison>> {
    let small = one_cluster(
        options.small_nodes,
        options.small_pods,
        options.latency_pods,
        &options,
    )
    .await
    .context("the small run")?;
    let large = one_cluster(options.large_nodes, options.large_pods, 0, &options)
        .await
        .context("the large run")?;
    let latency = small.latency.context("no latency samples")?;
    eprintln!(
        "bind latency on {} nodes, {} pods: {}",
        options.small_nodes,
        latency.len(),
        latency.summary()
    );
    let throughput = |metric: &str, ours: f64| Comparison {
        bench: "scheduler",
        metric: metric.into(),
        ours,
        peer: PEER_PODS_PER_S,
        peer_name: PEER_NAME.into(),
        unit: "pods/s",
        better: Better::Higher,
    };
    Ok(vec![
        throughput("pods_per_s_1000n", small.pods_per_s),
        throughput("pods_per_s_5000n", large.pods_per_s),
        Comparison {
            bench: "scheduler",
            metric: "bind_p99_ms_1000n".into(),
            ours: latency.percentile_ms(99.0),
            // No published kube-scheduler bind latency to set beside it: the
            // nearest published figure is Kubernetes' pod startup SLO
            // (sig-scalability, p99 ≤ 5 s from creation to running, which
            // includes scheduling and binding), a loose upper bound.
            peer: 5000.0,
            peer_name: "kubernetes-pod-startup-SLO-p99(sig-scalability)".into(),
            unit: "ms",
            better: Better::Lower,
        },
    ])
}

struct RunResult {
    pods_per_s: f64,
    latency: Option<Samples>,
}

async fn one_cluster(
    nodes: usize,
    pods: usize,
    latency_pods: usize,
    options: &Options,
) -> Result<RunResult> {
    eprintln!("== {nodes} nodes, {pods} pending pods");
    let dir = tempfile::tempdir()?;
    let cancel = CancellationToken::new();
    let store = skiff_store::Store::open(skiff_store::StoreConfig::new(dir.path().join("store")))
        .await
        .context("opening the store")?;
    let api = skiff_apiserver::ApiServer::new(store.clone(), cancel.child_token());
    api.bootstrap().await.context("bootstrapping the API")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { api.serve(listener).await });
    let client = kube::Client::try_from(kube::Config::new(url.parse()?))?;

    let started = Instant::now();
    create_nodes(&client, nodes).await?;
    eprintln!(
        "  {nodes} nodes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    create_pods(&client, "p", pods).await?;
    eprintln!("  {pods} pods in {:.1} s", started.elapsed().as_secs_f64());

    let bound = Arc::new(BoundLog::default());
    let watch = tokio::spawn(follow(client.clone(), bound.clone(), cancel.child_token()));
    // Wait for the follower to have listed the pending pods before timing.
    bound.wait_listed().await;

    let begin = Instant::now();
    let scheduler = skiff_scheduler::Scheduler::new(client.clone());
    let scheduler_task = tokio::spawn(scheduler.run(cancel.child_token()));
    let deadline = begin + Duration::from_secs(options.timeout_s);
    let mut last_report = Instant::now();
    loop {
        let count = bound.count();
        if count >= pods {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {count} of {pods} pods were bound in {} s",
                options.timeout_s
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  … {count} bound after {:.1} s",
                begin.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = bound.last_bound().unwrap_or_else(Instant::now) - begin;
    let pods_per_s = pods as f64 / elapsed.as_secs_f64();
    eprintln!(
        "  all {pods} bound in {:.2} s: {pods_per_s:.0} pods/s",
        elapsed.as_secs_f64()
    );

    let latency = if latency_pods > 0 {
        Some(measure_latency(&client, &bound, latency_pods, options).await?)
    } else {
        None
    };
    cancel.cancel();
    let _ = scheduler_task.await;
    let _ = watch.await;
    server.abort();
    store.close().await;
    Ok(RunResult {
        pods_per_s,
        latency,
    })
}

async fn create_nodes(client: &kube::Client, count: usize) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("fake-{i:05}");
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {
                        "kubernetes.io/hostname": name,
                        "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}}
                }))?;
                api.create(&PostParams::default(), &node).await?;
                // A fake kubelet's first status: Ready, with capacity.
                let status = json!({"status": {
                    "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
                }});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
    }))?)
}

async fn create_pods(client: &kube::Client, prefix: &str, count: usize) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &pod(&format!("{prefix}-{i:05}"))?)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// When each pod was first seen bound.
#[derive(Default)]
struct BoundLog {
    bound: Mutex<HashMap<String, Instant>>,
    last: Mutex<Option<Instant>>,
    listed: tokio::sync::Notify,
    listed_flag: std::sync::atomic::AtomicBool,
}

impl BoundLog {
    fn count(&self) -> usize {
        self.bound.lock().expect("bound log").len()
    }

    fn last_bound(&self) -> Option<Instant> {
        *self.last.lock().expect("bound log")
    }

    fn bound_at(&self, name: &str) -> Option<Instant> {
        self.bound.lock().expect("bound log").get(name).copied()
    }

    async fn wait_listed(&self) {
        loop {
            let notified = self.listed.notified();
            if self.listed_flag.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Follow every pod: note the first sight of each binding, and play the
/// kubelet of every fake node by marking bound pods Running.
async fn follow(client: kube::Client, log: Arc<BoundLog>, cancel: CancellationToken) {
    let api: Api<Pod> = Api::all(client.clone());
    let mut events = watcher(api, watcher::Config::default()).boxed();
    let kubelets = Arc::new(Semaphore::new(16));
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            event = events.next() => event,
        };
        let pod = match event {
            Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => pod,
            Some(Ok(watcher::Event::InitDone)) => {
                log.listed_flag
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                log.listed.notify_waiters();
                continue;
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => {
                eprintln!("  pod watch: {err}");
                continue;
            }
            None => return,
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some_and(|n| !n.is_empty());
        if !bound {
            continue;
        }
        let now = Instant::now();
        let first = {
            let mut map = log.bound.lock().expect("bound log");
            map.insert(name.clone(), now).is_none()
        };
        if !first {
            continue;
        }
        *log.last.lock().expect("bound log") = Some(now);
        let running = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Running");
        if !running {
            let permit = kubelets.clone().acquire_owned().await;
            let api: Api<Pod> = Api::namespaced(
                client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            tokio::spawn(async move {
                let status = json!({"status": {"phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}]}});
                if let Err(err) = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                {
                    eprintln!("  fake kubelet: {name}: {err}");
                }
                drop(permit);
            });
        }
    }
}

async fn measure_latency(
    client: &kube::Client,
    log: &Arc<BoundLog>,
    count: usize,
    options: &Options,
) -> Result<Samples> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let samples = stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let log = log.clone();
            let timeout = Duration::from_secs(options.timeout_s);
            async move {
                let name = format!("lat-{i:05}");
                let pod = pod(&name)?;
                let created = Instant::now();
                api.create(&PostParams::default(), &pod).await?;
                loop {
                    if let Some(at) = log.bound_at(&name) {
                        return anyhow::Ok(at.saturating_duration_since(created));
                    }
                    if created.elapsed() > timeout {
                        bail!("{name} was not bound");
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
        .buffer_unordered(options.latency_concurrency)
        .try_collect::<Vec<Duration>>()
        .await?;
    Ok(Samples::new(samples))
}
