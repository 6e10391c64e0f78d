//! `skiff-bench`: Skiff's benchmarks, each run next to a peer on the same machine in
//! the same run. `cargo run --release -p skiff-bench -- NAME`; progress goes to
//! stderr and the last lines on stdout are one per comparison:
//!
//! ```text
//! RESULT <bench> <metric> ours=<number> peer=<number> peer_name=<name> unit=<unit> better=<higher|lower>
//! ```
//!
//! - `pod-start`: pod create → Ready on the real `skiff up`, pods started per second
//!   and node memory per idle pod, against the same program as a native process.
//! - `http`: `examples/hello-http` served by the node vs `wasmtime serve`: requests/s
//!   and p99 latency under the same closed-loop load.
//! - `gateway`: requests/s and p99 through the node gateway to `examples/hello-http`
//!   (one and N endpoints), against `wasmtime serve` and a native hyper hello server.
//! - `cold-start`: first response from a Deployment scaled to zero, through the
//!   gateway, against `wasmtime serve`'s process start → first response.
//! - `density`: thousands of functions (Deployment + Service, scaled to zero) on one
//!   node, and request latency through the gateway over a sample of them.
//! - `store`: etcd 3.4 (Debian's `etcd`) against `skiff-store`, 1 and 3 members.
//! - `scheduler`: pods bound per second on 1,000 and 5,000 fake nodes and bind
//!   latency, against kube-scheduler's published throughput.
//!
//! Figures and the commands that produced them are in `docs/benchmarks.md`.

mod cold_start;
mod density;
mod gateway;
mod http;
mod pod_start;
mod process;
mod report;
mod scheduler;
mod store;
mod wasmtime;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "skiff-bench",
    about = "Skiff's benchmarks, each next to a peer"
)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Pod create → Ready, pods per second and RSS per idle pod vs native processes.
    PodStart(pod_start::Options),
    /// hello-http on the node vs `wasmtime serve`: requests/s and p99.
    Http(http::Options),
    /// Requests/s and p99 through the node gateway to hello-http vs `wasmtime serve`
    /// and a native hyper hello.
    Gateway(gateway::Options),
    /// First response from zero replicas through the gateway vs `wasmtime serve` start.
    ColdStart(cold_start::Options),
    /// Functions deployed on one node (scaled to zero) and request p99 through the gateway.
    Density(density::Options),
    /// The native hello server `gateway` compares with (not for direct use).
    #[command(hide = true)]
    HelloServer(gateway::HelloServerOptions),
    /// etcd 3.4 vs skiff-store: puts, linearizable gets and watch latency.
    Store(store::Options),
    /// Scheduler throughput and bind latency on 1,000 and 5,000 fake nodes.
    Scheduler(scheduler::Options),
    /// One skiff-store member process, started by `store` (not for direct use).
    #[command(hide = true)]
    StoreMember(store::MemberOptions),
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let comparisons = match cli.bench {
        Bench::PodStart(options) => pod_start::run(options).await?,
        Bench::Http(options) => http::run(options).await?,
        Bench::Gateway(options) => gateway::run(options).await?,
        Bench::ColdStart(options) => cold_start::run(options).await?,
        Bench::Density(options) => density::run(options).await?,
        Bench::HelloServer(options) => return gateway::serve_hello(options).await,
        Bench::Store(options) => store::run(options).await?,
        Bench::Scheduler(options) => scheduler::run(options).await?,
        Bench::StoreMember(options) => return store::run_member(options).await,
    };
    report::finish(&comparisons);
    Ok(())
}
