//! The `skiff` command: one binary for the whole cluster.
//!
//! `skiff up` runs a complete single-node cluster in one process: the store,
//! the Kubernetes API server, the scheduler and a node agent with the Wasm
//! runtime. It writes `DATA_DIR/kubeconfig` for kubectl. `skiff node` runs
//! another node agent that joins it through that kubeconfig. Each subcommand lives
//! in its own module.

mod control;
mod node;
mod up;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "A WebAssembly-first orchestrator that speaks the Kubernetes API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a single-node cluster (store, API server, scheduler, node) in this process.
    Up(up::UpArgs),
    /// Run a node agent that joins the control plane a kubeconfig points at.
    Node(node::NodeArgs),
    /// Run one member of a replicated control plane (store, API server; scheduler and
    /// controllers while it leads). Nodes join with `skiff node`.
    Control(control::ControlArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,raft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Up(args) => runtime.block_on(up::run(args)),
        Command::Node(args) => runtime.block_on(node::run(args)),
        Command::Control(args) => runtime.block_on(control::run(args)),
    }
}
