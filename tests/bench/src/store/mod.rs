//! `store`: etcd 3.4 against the Skiff store with one workload and the same client
//! concurrency, 1 and 3 members. Both run as separate processes on loopback: etcd's
//! members talk Raft over HTTP, Skiff's (`store-member`, this binary) over the store's
//! TCP transport; one client, the same for both, speaks etcd's v3 gateway JSON over
//! keep-alive HTTP/1.1 to each member.

mod etcd;
mod member;
mod skiff;
mod workload;

pub use member::{MemberOptions, run as run_member};

use std::time::Duration;

use anyhow::{Context, Result};

use crate::report::{Better, Comparison, Samples};
use workload::{Backend, Limits, Phase};

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Seconds each throughput phase runs.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Most operations one throughput phase issues.
    #[arg(long, default_value_t = 200_000)]
    pub max_ops: u64,
    /// Puts whose put → event latency is measured, one after another.
    #[arg(long, default_value_t = 1000)]
    pub watch_puts: usize,
}

const PUT_CLIENTS: [usize; 3] = [1, 16, 64];
const GET_CLIENTS: usize = 16;
const SIZES: [usize; 2] = [1, 3];

/// Everything measured on one store of one size.
struct Figures {
    puts: Vec<Phase>,
    get: Phase,
    watch: Samples,
}

pub async fn run(options: Options) -> Result<Vec<Comparison>> {
    let etcd_version = etcd::version()?;
    let peer_name = format!("etcd-{etcd_version}");
    let limits = Limits {
        duration: Duration::from_secs(options.seconds),
        max_ops: options.max_ops,
    };
    eprintln!(
        "bench: store: {peer_name} vs skiff-store, each member a separate process on \
         loopback, both reached by one client over keep-alive HTTP/1.1 with etcd's v3 \
         gateway JSON (etcd: gateway → in-process gRPC; skiff: `store-member`'s HTTP \
         server → store); Raft between members over TCP; 1 KiB values"
    );
    let mut comparisons = Vec::new();
    for size in SIZES {
        eprintln!("bench: {peer_name}, {size} member(s)");
        let cluster = etcd::EtcdCluster::start(size).await?;
        let peer = measure(&cluster.client(), limits, options.watch_puts)
            .await
            .context("measuring etcd")?;
        cluster.stop();

        eprintln!("bench: skiff-store, {size} member(s)");
        let cluster = skiff::SkiffCluster::start(size).await?;
        let ours = measure(&cluster.client(), limits, options.watch_puts)
            .await
            .context("measuring skiff-store");
        cluster.stop();
        let ours = ours?;

        let compare = |metric: String, ours: f64, peer: f64, unit, better| Comparison {
            bench: "store",
            metric,
            ours,
            peer,
            peer_name: peer_name.clone(),
            unit,
            better,
        };
        for (i, clients) in PUT_CLIENTS.iter().enumerate() {
            comparisons.push(compare(
                format!("put_{size}m_{clients}c"),
                ours.puts[i].ops_per_s,
                peer.puts[i].ops_per_s,
                "ops/s",
                Better::Higher,
            ));
        }
        comparisons.push(compare(
            format!("get_{size}m_{GET_CLIENTS}c"),
            ours.get.ops_per_s,
            peer.get.ops_per_s,
            "ops/s",
            Better::Higher,
        ));
        comparisons.push(compare(
            format!("watch_{size}m_p99"),
            ours.watch.percentile_ms(99.0),
            peer.watch.percentile_ms(99.0),
            "ms",
            Better::Lower,
        ));
        let sixteen = PUT_CLIENTS
            .iter()
            .position(|c| *c == 16)
            .expect("16 clients");
        comparisons.push(compare(
            format!("put_{size}m_16c_p99"),
            ours.puts[sixteen].latency.percentile_ms(99.0),
            peer.puts[sixteen].latency.percentile_ms(99.0),
            "ms",
            Better::Lower,
        ));
    }
    Ok(comparisons)
}

async fn measure<B: Backend>(backend: &B, limits: Limits, watch_puts: usize) -> Result<Figures> {
    let warmup = Limits {
        duration: Duration::from_secs(1),
        ..limits
    };
    workload::puts(backend, 16, warmup)
        .await
        .context("warm-up")?;
    let mut puts = Vec::new();
    for clients in PUT_CLIENTS {
        let phase = workload::puts(backend, clients, limits)
            .await
            .with_context(|| format!("puts with {clients} clients"))?;
        eprintln!(
            "bench:   put {clients:>2} clients: {:>9.1} ops/s, {}",
            phase.ops_per_s,
            phase.latency.summary()
        );
        puts.push(phase);
    }
    let get = workload::gets(backend, GET_CLIENTS, limits)
        .await
        .context("linearizable gets")?;
    eprintln!(
        "bench:   get {GET_CLIENTS} clients: {:>9.1} ops/s, {}",
        get.ops_per_s,
        get.latency.summary()
    );
    let watch_limits = Limits {
        duration: Duration::from_secs(30),
        ..limits
    };
    let watch = workload::watch_latency(backend, watch_puts, watch_limits)
        .await
        .context("watch latency")?;
    eprintln!("bench:   put → watch event: {}", watch.summary());
    Ok(Figures { puts, get, watch })
}
