//! `http`: requests per second and p99 latency of `examples/hello-http` served by
//! a Skiff node (a pod with a `hostPort`, a fresh instance per request) next to
//! `wasmtime serve` on the same component, both driven by the same closed-loop
//! load (N connections, keep-alive, one request in flight each) on this machine.
//!
//! The peer is the `wasmtime` CLI of the workspace's wasmtime version, found on
//! `PATH` or in `~/.cargo/bin`. Missing, the bench stops and says how to install it:
//! `cargo install wasmtime-cli --version 48.0.8 --locked`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

use crate::pod_start::node::{SkiffNode, build_skiff};
use crate::process::free_port;
use crate::report::{Better, Comparison};
use crate::wasmtime::{find_wasmtime, start_serve, wait_answers};

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// How long each server is measured, after a warm-up of a second.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// The component; built by `scripts/build-guests`.
    #[arg(
        long,
        default_value = "/usr/local/share/skiff/examples/hello-http.wasm"
    )]
    pub component: PathBuf,
}

struct Measured {
    rps: f64,
    p99_ms: f64,
    p50_ms: f64,
    errors: usize,
}

pub async fn run(options: Options) -> Result<Vec<Comparison>> {
    if !options.component.is_file() {
        bail!(
            "{} is missing: run scripts/build-guests first",
            options.component.display()
        );
    }
    let wasmtime = find_wasmtime()?;
    let binary = build_skiff()?;

    let node = SkiffNode::start(&binary).await?;
    let port = free_port()?;
    serve_pod(&node, &options.component, port).await?;
    let ours = measure("skiff node", port, &options).await?;
    drop(node);

    let port = free_port()?;
    let peer_process = start_serve(&wasmtime, &options.component, port).await?;
    let peer = measure("wasmtime serve", port, &options).await?;
    drop(peer_process);

    let peer_name = crate::wasmtime::peer_name();
    Ok(vec![
        Comparison {
            bench: "http",
            metric: "rps".into(),
            ours: ours.rps,
            peer: peer.rps,
            peer_name: peer_name.clone(),
            unit: "req/s",
            better: Better::Higher,
        },
        Comparison {
            bench: "http",
            metric: "p99_ms".into(),
            ours: ours.p99_ms,
            peer: peer.p99_ms,
            peer_name,
            unit: "ms",
            better: Better::Lower,
        },
    ])
}

/// Creates the hello-http pod with `hostPort: port` and waits until it answers.
async fn serve_pod(node: &SkiffNode, component: &Path, port: u16) -> Result<()> {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hello-http", "namespace": "default"},
        "spec": {"containers": [{
            "name": "hello-http",
            "image": format!("file://{}", component.display()),
            "ports": [{"containerPort": 8080, "hostPort": port}],
        }]},
    }))?;
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), "default");
    pods.create(&PostParams::default(), &pod).await?;
    wait_answers(port, Duration::from_secs(120))
        .await
        .with_context(|| format!("the pod did not serve; see {}", node.log.display()))
}

/// Closed-loop load: each connection sends its next request when the last one
/// answered. A second of warm-up is not counted.
async fn measure(what: &str, port: u16, options: &Options) -> Result<Measured> {
    let url = Arc::new(format!("http://127.0.0.1:{port}/bench"));
    let warmup = Duration::from_secs(1);
    let duration = Duration::from_secs(options.seconds);
    let start = Instant::now();
    let measure_from = start + warmup;
    let until = measure_from + duration;
    let mut tasks = Vec::new();
    for _ in 0..options.connections {
        let url = Arc::clone(&url);
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let mut latencies = Vec::new();
            let mut errors = 0;
            loop {
                let sent = Instant::now();
                if sent >= until {
                    break;
                }
                let ok = match client.get(url.as_str()).send().await {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if sent >= measure_from {
                    if ok {
                        latencies.push(sent.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mut some, failed) = task.await??;
        latencies.append(&mut some);
        errors += failed;
    }
    if latencies.is_empty() {
        bail!("{what}: no request succeeded");
    }
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let measured = Measured {
        rps: latencies.len() as f64 / duration.as_secs_f64(),
        p50_ms: at(0.5).as_secs_f64() * 1000.0,
        p99_ms: at(0.99).as_secs_f64() * 1000.0,
        errors,
    };
    eprintln!(
        "bench: {what}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors ({} connections, {} s)",
        measured.rps,
        measured.p50_ms,
        measured.p99_ms,
        measured.errors,
        options.connections,
        options.seconds
    );
    Ok(measured)
}
