//! `gateway`: requests per second and latency through the node gateway to
//! `examples/hello-http` (a fresh Wasm instance per request) with one and with
//! `--endpoints` endpoints, next to two peers on the same cores: `wasmtime
//! serve` of the same component (the target: the gateway's whole path
//! at least as fast as wasmtime serving the component directly) and a native
//! hyper hello server (a separate process, started by this binary's hidden
//! `hello-server` subcommand). Every side is loaded the same way from this
//! process: `--connections` keep-alive HTTP/1.1 connections, each sending its
//! next request when the last one is answered.

mod native;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use crate::pod_start::{SkiffNode, build_skiff};
use crate::process::{Managed, free_port};
use crate::report::{Better, Comparison, Samples};

pub use native::{HelloServerOptions, serve_hello};

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Seconds of load per side (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Keep-alive connections sending requests back to back.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// The `wasi:http` guest behind the gateway.
    #[arg(
        long,
        default_value = "/usr/local/share/skiff/examples/hello-http.wasm"
    )]
    pub guest: PathBuf,
    /// A `skiff` binary to use instead of building `--release --bin skiff`.
    #[arg(long)]
    pub skiff_bin: Option<PathBuf>,
    /// Endpoints (replicas) of the second measurement (`rps_<N>ep`).
    #[arg(long, default_value_t = 4)]
    pub endpoints: i32,
}

/// What one side achieved.
struct Load {
    per_second: f64,
    latency: Samples,
    failed: usize,
}

pub async fn run(options: Options) -> Result<Vec<Comparison>> {
    if !options.guest.is_file() {
        bail!(
            "{} is missing: run scripts/build-guests first",
            options.guest.display()
        );
    }
    let wasmtime = crate::wasmtime::find_wasmtime()?;
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
    let host = "hello.bench";
    wait_answering(host, gateway).await?;
    wait_endpoints(&node.client, 1).await?;
    eprintln!("bench: gateway {gateway}, Service {host}, 1 endpoint");
    let ours = load(host, gateway, &options).await?;
    let n = options.endpoints;
    scale(&node.client, n).await?;
    wait_endpoints(&node.client, n).await?;
    eprintln!("bench: gateway {gateway}, Service {host}, {n} endpoints");
    let ours_n = load(host, gateway, &options).await?;
    drop(node);

    let port = free_port()?;
    let serve = crate::wasmtime::start_serve(&wasmtime, &options.guest, port).await?;
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let wasmtime_peer = load("localhost", address, &options).await?;
    drop(serve);

    let port = free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["hello-server", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .context("starting the native hello server")?;
    let _native = Managed::new(child, "native hello server", Duration::from_secs(5));
    let native: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_answering("localhost", native).await?;
    let native_peer = load("localhost", native, &options).await?;

    let mut comparisons = Vec::new();
    let n_label = format!("{n}ep");
    let pairs = [
        ("1ep", &ours, &wasmtime_peer, crate::wasmtime::peer_name()),
        (
            n_label.as_str(),
            &ours_n,
            &wasmtime_peer,
            crate::wasmtime::peer_name(),
        ),
        ("1ep", &ours, &native_peer, "native-hyper-hello".to_string()),
    ];
    for (endpoints, ours, peer, peer_name) in pairs {
        comparisons.push(Comparison {
            bench: "gateway",
            metric: format!("rps_{endpoints}"),
            ours: ours.per_second,
            peer: peer.per_second,
            peer_name: peer_name.clone(),
            unit: "req/s",
            better: Better::Higher,
        });
        comparisons.push(Comparison {
            bench: "gateway",
            metric: format!("p99_ms_{endpoints}"),
            ours: ours.latency.percentile_ms(99.0),
            peer: peer.latency.percentile_ms(99.0),
            peer_name,
            unit: "ms",
            better: Better::Lower,
        });
    }
    Ok(comparisons)
}

/// Sets the Deployment's replicas through its scale subresource.
async fn scale(client: &kube::Client, replicas: i32) -> Result<()> {
    let patch = kube::api::Patch::Merge(json!({"spec": {"replicas": replicas}}));
    Api::<Deployment>::namespaced(client.clone(), "bench")
        .patch_scale("hello", &kube::api::PatchParams::default(), &patch)
        .await
        .context("scaling the Deployment")?;
    Ok(())
}

/// Waits until the Service's EndpointSlices list exactly `n` ready endpoints,
/// then a second more so the gateway's cache and the agent's port table follow.
async fn wait_endpoints(client: &kube::Client, n: i32) -> Result<()> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "bench");
    let params = ListParams::default().labels("kubernetes.io/service-name=hello");
    let start = Instant::now();
    loop {
        let ready = slices
            .list(&params)
            .await?
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| {
                let conditions = e.conditions.clone().unwrap_or_default();
                conditions.ready != Some(false) && conditions.terminating != Some(true)
            })
            .count();
        if ready == n as usize {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("the Service has {ready} ready endpoints, not {n}, after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn deploy(client: &kube::Client, guest: &std::path::Path) -> Result<()> {
    let post = PostParams::default();
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": "bench"}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&post, &namespace)
        .await?;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "hello", "namespace": "bench"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "hello"}},
            "template": {
                "metadata": {"labels": {"app": "hello"}},
                "spec": {"containers": [{
                    "name": "hello",
                    "image": format!("file://{}", guest.display()),
                    "ports": [{"containerPort": 8080}]
                }]}
            }
        }
    }))?;
    Api::<Deployment>::namespaced(client.clone(), "bench")
        .create(&post, &deployment)
        .await?;
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "hello", "namespace": "bench"},
        "spec": {"selector": {"app": "hello"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))?;
    Api::<Service>::namespaced(client.clone(), "bench")
        .create(&post, &service)
        .await?;
    Ok(())
}

fn client(host: &str, address: SocketAddr, connections: usize) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .resolve(host, address)
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(30))
        .build()?)
}

async fn wait_answering(host: &str, address: SocketAddr) -> Result<()> {
    let client = client(host, address, 1)?;
    let url = format!("http://{host}:{}/ready", address.port());
    let start = Instant::now();
    loop {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("{url} did not answer 200 within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn load(host: &str, address: SocketAddr, options: &Options) -> Result<Load> {
    let client = client(host, address, options.connections)?;
    let url = Arc::new(format!("http://{host}:{}/bench", address.port()));
    let run = |seconds: u64| {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..options.connections)
            .map(|_| {
                let client = client.clone();
                let url = Arc::clone(&url);
                tokio::spawn(async move {
                    let (mut latencies, mut failed) = (Vec::new(), 0usize);
                    while Instant::now() < deadline {
                        let sent = Instant::now();
                        let ok = match client.get(url.as_str()).send().await {
                            Ok(response) => {
                                response.status().is_success() && response.bytes().await.is_ok()
                            }
                            Err(_) => false,
                        };
                        if ok {
                            latencies.push(sent.elapsed());
                        } else {
                            failed += 1;
                        }
                    }
                    (latencies, failed)
                })
            })
            .collect();
        async move {
            let started = Instant::now();
            let mut all = Vec::new();
            let mut failed = 0;
            for task in tasks {
                let (latencies, f) = task.await?;
                all.extend(latencies);
                failed += f;
            }
            let elapsed = started.elapsed().as_secs_f64();
            anyhow::Ok(Load {
                per_second: all.len() as f64 / elapsed,
                latency: Samples::new(all),
                failed,
            })
        }
    };
    run(1).await?;
    let measured = run(options.seconds).await?;
    eprintln!(
        "bench:   {host}: {:.0} req/s, {}, {} failed",
        measured.per_second,
        measured.latency.summary(),
        measured.failed
    );
    Ok(measured)
}
