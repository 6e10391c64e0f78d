//! `pod-start`: create → Ready latency, pods started per second and node memory per
//! idle pod on the real `skiff up`, next to the same program started as a native
//! process; and, on the same node in the same run, create → Ready of OCI pods
//! (Docker containers of the busybox test image) next to the Wasm pods' figure.

mod native;
pub mod node;
mod oci;
mod pods;
mod runner;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{private_kib, rss_kib, workspace_root};
use crate::report::{Better, Comparison, Samples};
use native::{ProcessStarter, build_native_hello};
pub(crate) use node::{SkiffNode, build_skiff};
use pods::PodStarter;
use runner::Starter;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Pods (and processes) whose create → Ready latency is measured.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Creates in flight at once while measuring latency.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Most pods alive at once while measuring latency (the node holds 110 pods and
    /// 500 instances); the rest wait for deletions.
    #[arg(long, default_value_t = 64)]
    pub live: usize,
    /// Pods started all at once for pods/s and memory per idle pod (at most the
    /// node's 110-pod capacity).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Workloads started and discarded first, so the artifact is compiled and cached.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// The guest the pods run.
    #[arg(long, default_value = "/usr/local/share/skiff/examples/hello.wasm")]
    pub guest: PathBuf,
    /// A `skiff` binary to use instead of building `--release --bin skiff`.
    #[arg(long)]
    pub skiff_bin: Option<PathBuf>,
    /// OCI pods whose create → Ready latency is measured (0: none; skipped
    /// when Docker does not answer).
    #[arg(long, default_value_t = 100)]
    pub oci_count: usize,
}

/// What one side achieved.
struct Figures {
    latency: Samples,
    per_second: f64,
    rss_per_instance_kib: f64,
}

pub async fn run(options: Options) -> Result<Vec<Comparison>> {
    if options.batch == 0 || options.count == 0 || options.live == 0 {
        bail!("--count, --live and --batch must be at least 1");
    }
    build_guests()?;
    let skiff = match &options.skiff_bin {
        Some(path) => path.clone(),
        None => build_skiff()?,
    };
    let native = build_native_hello()?;
    let image = format!("file://{}", options.guest.display());
    let timeout = Duration::from_secs(120);

    eprintln!("bench: pod-start on skiff up, guest {image}");
    let node = SkiffNode::start(&skiff).await?;
    let starter = Arc::new(PodStarter::new(node.client.clone(), image, timeout).await?);
    let pid = node.pid();
    let ours = measure(&starter, &options, "pod", |_| Ok(rss_kib(pid)? as f64))
        .await
        .with_context(|| format!("on skiff up (log: {})", node.log.display()))?;
    eprintln!("bench:   {}", starter.breakdown());
    drop(starter);
    let oci = oci::measure(&node, &options, timeout)
        .await
        .with_context(|| format!("OCI pods on skiff up (log: {})", node.log.display()))?;
    drop(node);

    eprintln!(
        "bench: pod-start peer: native processes of {}",
        native.display()
    );
    let starter = Arc::new(ProcessStarter::new(&native));
    let peer = measure(&starter, &options, "proc", |running| {
        // A process's RSS counts the shared C library and program text again in every
        // process; its private memory is what one more process costs, as the node's
        // RSS growth is what one more pod costs.
        let (mut private, mut rss) = (0.0, 0.0);
        for process in running {
            let pid = process.pid().context("a process exited")?;
            private += private_kib(pid)? as f64;
            rss += rss_kib(pid)? as f64;
        }
        if !running.is_empty() {
            eprintln!(
                "bench:   processes: VmRSS {:.1} KiB each, private (USS) {:.1} KiB each",
                rss / running.len() as f64,
                private / running.len() as f64
            );
        }
        Ok(private)
    })
    .await?;

    let peer_name = "native-process".to_string();
    let compare = |metric: &str, ours: f64, peer: f64, unit, better| Comparison {
        bench: "pod-start",
        metric: metric.to_string(),
        ours,
        peer,
        peer_name: peer_name.clone(),
        unit,
        better,
    };
    let mut results = vec![
        compare(
            "create_to_ready_p50",
            ours.latency.percentile_ms(50.0),
            peer.latency.percentile_ms(50.0),
            "ms",
            Better::Lower,
        ),
        compare(
            "create_to_ready_p99",
            ours.latency.percentile_ms(99.0),
            peer.latency.percentile_ms(99.0),
            "ms",
            Better::Lower,
        ),
        compare(
            "pods_per_s",
            ours.per_second,
            peer.per_second,
            "1/s",
            Better::Higher,
        ),
        compare(
            "rss_per_pod_kib",
            ours.rss_per_instance_kib,
            peer.rss_per_instance_kib,
            "KiB",
            Better::Lower,
        ),
    ];
    if let Some(oci) = oci {
        // The OCI pods' figures, with the Wasm pods' of the same node as the peer.
        for (name, percentile) in [("p50", 50.0), ("p99", 99.0)] {
            results.push(Comparison {
                bench: "pod-start",
                metric: format!("oci_create_to_ready_{name}"),
                ours: oci.percentile_ms(percentile),
                peer: ours.latency.percentile_ms(percentile),
                peer_name: "skiff-wasm".to_string(),
                unit: "ms",
                better: Better::Lower,
            });
        }
    }
    Ok(results)
}

/// Warm-up, latency, then one batch. `memory_kib` reads the memory that counts for
/// this side with the batch running (and with an empty slice for the baseline): the
/// node's RSS, or the processes' summed private memory.
async fn measure<S: Starter>(
    starter: &Arc<S>,
    options: &Options,
    prefix: &str,
    memory_kib: impl Fn(&[S::Running]) -> Result<f64>,
) -> Result<Figures> {
    eprintln!("bench:   warm-up: {} starts", options.warmup);
    runner::latencies(
        starter,
        &format!("{prefix}-warm"),
        options.warmup,
        1,
        options.live,
    )
    .await?;
    eprintln!(
        "bench:   latency: {} starts, {} in flight, at most {} alive",
        options.count, options.concurrency, options.live
    );
    let latency = runner::latencies(
        starter,
        &format!("{prefix}-lat"),
        options.count,
        options.concurrency,
        options.live,
    )
    .await?;
    eprintln!("bench:   start → ready {}", latency.summary());

    let before = memory_kib(&[])?;
    let (elapsed, running) =
        runner::batch(starter, &format!("{prefix}-batch"), options.batch).await?;
    let per_second = options.batch as f64 / elapsed.as_secs_f64();
    eprintln!(
        "bench:   batch: {} started in {:.3} s = {per_second:.1}/s",
        options.batch,
        elapsed.as_secs_f64()
    );
    // Let start-up garbage settle, so what remains is the cost of idling.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = memory_kib(&running)?;
    let rss_per_instance_kib = (after - before) / options.batch as f64;
    eprintln!(
        "bench:   memory: {before:.0} KiB → {after:.0} KiB with {} idle = {rss_per_instance_kib:.1} KiB each",
        options.batch
    );
    runner::stop_all(starter, running).await?;
    Ok(Figures {
        latency,
        per_second,
        rss_per_instance_kib,
    })
}

/// Builds and installs the example guests (`scripts/build-guests`).
fn build_guests() -> Result<()> {
    let script = workspace_root().join("scripts/build-guests");
    eprintln!("bench: {}", script.display());
    let status = Command::new(&script)
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} failed with {status}", script.display());
    }
    Ok(())
}
