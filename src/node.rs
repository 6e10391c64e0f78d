//! `skiff node`: a node agent on its own, joining the control plane that a
//! kubeconfig points at. `skiff up` starts the same agent in-process, built
//! with the same [`wasm_runtime`] and [`agent_config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::up::{SHUTDOWN_GRACE, shutdown_signal};

#[derive(clap::Args)]
pub struct NodeArgs {
    /// The Node's name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// How to reach the API server (e.g. `DATA_DIR/kubeconfig` written by `skiff up`).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// Where this node keeps container logs, volumes and the compile cache.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The node agent's HTTP address (logs, ports); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub node_addr: SocketAddr,
}

/// The node's Wasm runtime, its compile cache in `data_dir/wasm-cache`.
pub fn wasm_runtime(data_dir: &Path) -> Result<skiff_wasm::WasmRuntime> {
    skiff_wasm::WasmRuntime::new(skiff_wasm::RuntimeConfig {
        cache_dir: data_dir.join("wasm-cache"),
        ..skiff_wasm::RuntimeConfig::default()
    })
    .context("starting the Wasm runtime")
}

/// The node agent's settings, its state in `data_dir/node`.
pub fn agent_config(
    data_dir: &Path,
    node_name: Option<String>,
    node_addr: SocketAddr,
) -> Result<skiff_agent::AgentConfig> {
    let mut config = skiff_agent::AgentConfig {
        data_dir: data_dir.join("node"),
        listen_addr: node_addr,
        ..skiff_agent::AgentConfig::default()
    };
    if let Some(name) = node_name {
        config.node_name = name;
    }
    config.validate().context("node configuration")?;
    Ok(config)
}

pub async fn run(args: NodeArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .with_context(|| format!("using {}", args.kubeconfig.display()))?;
    config.headers.push(crate::up::user_agent("kubelet")?);
    let server = config.cluster_url.clone();
    let client = kube::Client::try_from(config).context("building the API client")?;
    let config = agent_config(&data_dir, args.name, args.node_addr)?;
    // Wasm pods only for now: the OCI driver is `skiff up`'s.
    let drivers = skiff_agent::Drivers::new(Arc::new(wasm_runtime(&data_dir)?), None);
    let agent = skiff_agent::NodeAgent::new(config, client, drivers);
    let cancel = CancellationToken::new();
    let mut task = tokio::spawn(agent.run(cancel.clone()));
    println!("Skiff node is up, joined {server}");

    tokio::select! {
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            cancel.cancel();
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(joined) => joined.context("node agent task")?.context("node agent")?,
                Err(_) => tracing::warn!("the node agent did not stop within {SHUTDOWN_GRACE:?}"),
            }
        }
        joined = &mut task => joined.context("node agent task")?.context("node agent stopped")?,
    }
    Ok(())
}
