//! The peer until the OCI driver exists: the same hello program built for the host
//! and started as a plain process; "ready" is its first line on stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::runner::Starter;
use crate::process::{cargo, workspace_root};

/// Builds `examples/hello` for the host into its own target directory, away from
/// both the workspace's and the guests' (`examples/target`), and returns the binary.
pub fn build_native_hello() -> Result<PathBuf> {
    let host = host_triple()?;
    let target_dir = std::env::var_os("SKIFF_BENCH_NATIVE_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("skiff-bench-native-target"));
    let manifest = workspace_root().join("examples/Cargo.toml");
    cargo(&[
        "build",
        "--release",
        "--manifest-path",
        &manifest.to_string_lossy(),
        "-p",
        "hello",
        "--target",
        &host,
        "--target-dir",
        &target_dir.to_string_lossy(),
    ])?;
    let binary = target_dir.join(&host).join("release/hello");
    if !binary.is_file() {
        bail!("{} is missing after the build", binary.display());
    }
    Ok(binary)
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(rustc)
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
        .context("rustc -vV printed no host line")
}

/// A started process; its stdout stays open so its later lines do not fail.
pub struct Process {
    child: Child,
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl Process {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

pub struct ProcessStarter {
    binary: PathBuf,
}

impl ProcessStarter {
    pub fn new(binary: &Path) -> ProcessStarter {
        ProcessStarter {
            binary: binary.to_owned(),
        }
    }
}

impl Starter for ProcessStarter {
    type Running = Process;

    async fn start(&self, name: String) -> Result<(Instant, Process)> {
        // The pod's argv is its container name; give the process the same.
        let mut child = Command::new(&self.binary)
            .arg0("hello")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        if lines.next_line().await?.is_none() {
            bail!("{name} closed stdout before its first line");
        }
        let ready_at = Instant::now();
        Ok((
            ready_at,
            Process {
                child,
                _stdout: lines,
            },
        ))
    }

    async fn stop(&self, mut process: Process) -> Result<()> {
        // Kills this child by its own PID (tokio sends SIGKILL), then reaps it.
        process.child.start_kill()?;
        process.child.wait().await?;
        Ok(())
    }
}
