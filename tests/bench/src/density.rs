//! `density`: how many functions one node holds, and what a request to one of
//! them costs through the gateway when thousands are deployed.
//!
//! A function is what a user deploys for `examples/hello-http`: a Deployment
//! annotated for scale to zero (`replicas: 0`) and a Service selecting it,
//! spread over `--namespaces` namespaces. The bench creates `--functions` of
//! them through the API (`--create-concurrency` creates in flight) and waits
//! until the controllers have caught up (a ReplicaSet per Deployment, an
//! EndpointSlice per Service); it stops creating at `--create-timeout-s` and
//! reports the count reached. Then, over a sample of `--sample` functions
//! spread evenly over all of them, one at a time: the first request (held by
//! the gateway while the function starts from zero), then `--warm-requests`
//! more to the now running pod; each function is scaled back to zero
//! afterwards so the node's 110-pod capacity is never the limit.
//!
//! `density p99_ms` is the p99 of the first (from zero) requests: every
//! function is at zero, so that is what a request meets. The warm requests'
//! figures are printed alongside.
//!
//! Peers are published figures (nothing comparable runs on this machine):
//! SpinKube's 5,000 Spin applications on one k3s node (Fermyon, KubeCon EU
//! 2024; <https://dev.to/fermyon/lightweight-kubernetes-and-wasm-is-a-perfect-combo-5h11>)
//! and OpenShift Serverless's published scale-from-zero 99.9th percentile of
//! 4.5 s (Knative, 3 workers × 64 CPUs, at most 3,000 Knative services;
//! <https://docs.openshift.com/en/documentation/red_hat_openshift_serverless/1.37/html/installing_openshift_serverless/preparing-serverless-install>).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use crate::pod_start::{SkiffNode, build_skiff};
use crate::process::rss_kib;
use crate::report::{Better, Comparison, Samples};

/// SpinKube on k3s, KubeCon EU 2024 (see the module docs).
const PEER_FUNCTIONS: f64 = 5000.0;
const PEER_FUNCTIONS_NAME: &str = "spinkube-k3s-published";
/// OpenShift Serverless 1.37 docs: scale from zero, p99.9 (see the module docs).
const PEER_P99_MS: f64 = 4500.0;
const PEER_P99_NAME: &str = "openshift-serverless-published-p99.9";

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Functions (Deployment + Service) to deploy.
    #[arg(long, default_value_t = 10_000)]
    pub functions: usize,
    /// Namespaces they are spread over.
    #[arg(long, default_value_t = 10)]
    pub namespaces: usize,
    /// Creates in flight at once.
    #[arg(long, default_value_t = 16)]
    pub create_concurrency: usize,
    /// Stop creating after this long and measure with what was reached.
    #[arg(long, default_value_t = 1800)]
    pub create_timeout_s: u64,
    /// Functions whose requests are measured, spread over all of them.
    #[arg(long, default_value_t = 100)]
    pub sample: usize,
    /// Requests after the first to each sampled function.
    #[arg(long, default_value_t = 20)]
    pub warm_requests: usize,
    /// The `wasi:http` guest.
    #[arg(
        long,
        default_value = "/usr/local/share/skiff/examples/hello-http.wasm"
    )]
    pub guest: PathBuf,
    /// A `skiff` binary to use instead of building `--release --bin skiff`.
    #[arg(long)]
    pub skiff_bin: Option<PathBuf>,
}

/// Function `i`: its namespace and name.
fn function(i: usize, namespaces: usize) -> (String, String) {
    (format!("fn-{}", i % namespaces), format!("fn-{i}"))
}

pub async fn run(options: Options) -> Result<Vec<Comparison>> {
    if !options.guest.is_file() {
        bail!(
            "{} is missing: run scripts/build-guests first",
            options.guest.display()
        );
    }
    let namespaces = options.namespaces.max(1);
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
    let rss_before = rss_kib(node.pid())?;
    for n in 0..namespaces.min(options.functions) {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": format!("fn-{n}")}}))?;
        Api::<Namespace>::all(node.client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.create_timeout_s);
    let image = format!("file://{}", options.guest.display());
    let created = Arc::new(AtomicUsize::new(0));
    let results: Vec<Result<()>> = futures::stream::iter(0..options.functions)
        .map(|i| {
            let client = node.client.clone();
            let image = image.clone();
            let created = Arc::clone(&created);
            async move {
                if Instant::now() >= deadline {
                    return Ok(());
                }
                let (namespace, name) = function(i, namespaces);
                create_function(&client, &namespace, &name, &image).await?;
                let done = created.fetch_add(1, Ordering::Relaxed) + 1;
                if done.is_multiple_of(1000) {
                    eprintln!(
                        "bench: {done} functions created in {:.0} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                Ok(())
            }
        })
        .buffer_unordered(options.create_concurrency)
        .collect()
        .await;
    if let Some(err) = results.into_iter().find_map(Result::err) {
        return Err(err.context(format!("see {}", node.log.display())));
    }
    let deployed = created.load(Ordering::Relaxed);
    let create_s = started.elapsed().as_secs_f64();
    eprintln!(
        "bench: {deployed} functions created in {create_s:.0} s ({:.0}/s)",
        deployed as f64 / create_s
    );
    settle(&node.client, deployed).await?;
    let rss_after = rss_kib(node.pid())?;
    eprintln!(
        "bench: settled after {:.0} s; node RSS {} → {} MiB ({:.1} KiB per function)",
        started.elapsed().as_secs_f64(),
        rss_before / 1024,
        rss_after / 1024,
        rss_after.saturating_sub(rss_before) as f64 / deployed.max(1) as f64
    );

    // The sample: spread over every deployed function (index order mixes namespaces).
    let sample = options.sample.min(deployed).max(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for k in 0..sample {
        let i = k * deployed / sample;
        let (namespace, name) = function(i, namespaces);
        let host = format!("{name}.{namespace}");
        let url = format!("http://{}/density", gateway);
        for n in 0..=options.warm_requests {
            let sent = Instant::now();
            let response = client
                .get(&url)
                .header(reqwest::header::HOST, &host)
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            let took = sent.elapsed();
            if !status.is_success() {
                bail!(
                    "{host}: {status} {}; see {}",
                    String::from_utf8_lossy(&body),
                    node.log.display()
                );
            }
            if n == 0 { &mut cold } else { &mut warm }.push(took);
        }
        let deployments = Api::<Deployment>::namespaced(node.client.clone(), &namespace);
        crate::cold_start::scale_to(&deployments, &name, 0)
            .await
            .with_context(|| format!("scaling {namespace}/{name} back to zero"))?;
        if (k + 1).is_multiple_of(25) {
            eprintln!(
                "bench: {} sampled, first requests {}",
                k + 1,
                Samples::new(cold.clone()).summary()
            );
        }
    }
    let cold = Samples::new(cold);
    let warm = Samples::new(warm);
    eprintln!("bench: {deployed} functions deployed; over {sample} of them:");
    eprintln!("bench:   first request (from zero): {}", cold.summary());
    eprintln!("bench:   later requests (running):  {}", warm.summary());
    Ok(vec![
        Comparison {
            bench: "density",
            metric: "functions".into(),
            ours: deployed as f64,
            peer: PEER_FUNCTIONS,
            peer_name: PEER_FUNCTIONS_NAME.into(),
            unit: "count",
            better: Better::Higher,
        },
        Comparison {
            bench: "density",
            metric: "p99_ms".into(),
            ours: cold.percentile_ms(99.0),
            peer: PEER_P99_MS,
            peer_name: PEER_P99_NAME.into(),
            unit: "ms",
            better: Better::Lower,
        },
    ])
}

async fn create_function(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    image: &str,
) -> Result<()> {
    let post = PostParams::default();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {
                "skiff.dev/scale-to-zero-after": "10m",
                "skiff.dev/scale-to-zero-timeout": "60s",
            },
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"fn": name}},
            "template": {
                "metadata": {"labels": {"fn": name}},
                "spec": {"containers": [{
                    "name": "fn",
                    "image": image,
                    "ports": [{"containerPort": 8080}]
                }]}
            }
        }
    }))?;
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .create(&post, &deployment)
        .await
        .with_context(|| format!("creating Deployment {namespace}/{name}"))?;
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"fn": name}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))?;
    Api::<Service>::namespaced(client.clone(), namespace)
        .create(&post, &service)
        .await
        .with_context(|| format!("creating Service {namespace}/{name}"))?;
    Ok(())
}

/// Waits until the controllers have caught up with `deployed` functions: as
/// many ReplicaSets and EndpointSlices exist.
async fn settle(client: &kube::Client, deployed: usize) -> Result<()> {
    let replica_sets: Api<ReplicaSet> = Api::all(client.clone());
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let start = Instant::now();
    loop {
        let sets = count(&replica_sets).await?;
        let slices = count(&slices).await?;
        if sets >= deployed && slices >= deployed {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(1800) {
            bail!(
                "after 30 min the controllers made {sets} ReplicaSets and {slices} EndpointSlices for {deployed} functions"
            );
        }
        eprintln!(
            "bench: waiting for the controllers: {sets} ReplicaSets, {slices} EndpointSlices of {deployed}"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// How many objects of a kind exist (listed in pages).
async fn count<K>(api: &Api<K>) -> Result<usize>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = ListParams::default().limit(2000);
    let mut total = 0;
    loop {
        let page = api.list(&params).await?;
        total += page.items.len();
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params.continue_token = Some(token),
            None => return Ok(total),
        }
    }
}
