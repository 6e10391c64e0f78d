//! The real `skiff up` in a fresh data directory on a free loopback port, and a
//! `kube` client for it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::Api;
use kube::api::ListParams;

use crate::process::{Managed, cargo, target_dir};

/// Builds `skiff` in release mode (cheap when it is current) and returns its path.
pub fn build_skiff() -> Result<PathBuf> {
    cargo(&["build", "--release", "--bin", "skiff"])?;
    let binary = target_dir().join("release/skiff");
    if !binary.is_file() {
        bail!("{} is missing after the build", binary.display());
    }
    Ok(binary)
}

/// A running `skiff up`. Dropping it stops the process, then removes its data.
pub struct SkiffNode {
    process: Managed,
    pub client: kube::Client,
    pub log: PathBuf,
    /// The node gateway's address, as `skiff up` announced it.
    pub gateway: Option<String>,
    _dir: tempfile::TempDir,
}

impl SkiffNode {
    pub async fn start(binary: &Path) -> Result<SkiffNode> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-bench-node-")
            .tempdir()?;
        // `SKIFF_BENCH_NODE_LOG` keeps the node's log after the run.
        let log = std::env::var_os("SKIFF_BENCH_NODE_LOG")
            .map_or_else(|| dir.path().join("skiff.log"), PathBuf::from);
        // warn: the node would otherwise log a few lines per pod, which is work the
        // peer (a bare process start) does not do either. `SKIFF_BENCH_RUST_LOG`
        // overrides it, to see where the time goes (timestamps in the log).
        let filter = std::env::var("SKIFF_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into());
        let mut child = Command::new(binary)
            .args(["up", "--api-addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()
            .with_context(|| format!("starting {} up", binary.display()))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let mut process = Managed::new(child, "skiff up", Duration::from_secs(20));
        let (server, gateway) = tokio::task::spawn_blocking(move || read_server_url(stdout))
            .await?
            .with_context(|| format!("skiff up did not come up; see {}", log.display()))?;
        process.check_running()?;
        eprintln!("bench: skiff up (pid {}) serves {server}", process.pid());
        let client = kube::Client::try_from(kube::Config::new(server.parse()?))?;
        let node = SkiffNode {
            process,
            client,
            log,
            gateway,
            _dir: dir,
        };
        node.wait_node_ready(Duration::from_secs(60)).await?;
        Ok(node)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    async fn wait_node_ready(&self, timeout: Duration) -> Result<()> {
        let nodes: Api<KubeNode> = Api::all(self.client.clone());
        let start = Instant::now();
        loop {
            let ready = nodes
                .list(&ListParams::default())
                .await
                .map(|list| {
                    list.items.iter().any(|node| {
                        let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
                        conditions.is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                    })
                })
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "the node was not Ready within {timeout:?}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Reads `skiff up`'s stdout up to its `export KUBECONFIG=` line, returns the API
/// and gateway addresses it announced, and keeps draining the pipe so the node
/// never blocks on it.
fn read_server_url(stdout: std::process::ChildStdout) -> Result<(String, Option<String>)> {
    let mut lines = BufReader::new(stdout).lines();
    let mut server = None;
    let mut gateway = None;
    for line in lines.by_ref() {
        let line = line?;
        if let Some(address) = line.strip_prefix("Gateway at http://") {
            gateway = Some(address.trim().to_string());
        }
        if let Some(url) = line.strip_prefix("Skiff is up: the Kubernetes API is at ") {
            server = Some(url.trim().to_string());
        }
        if line.starts_with("export KUBECONFIG=") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok((server.context("no API address on stdout")?, gateway))
}
