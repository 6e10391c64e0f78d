//! The peer several benchmarks compare with: the `wasmtime` CLI of the
//! workspace's wasmtime version (`cargo install wasmtime-cli --version 48.0.8
//! --locked`), found on `PATH` or in `~/.cargo/bin`, serving a `wasi:http`
//! component with `wasmtime serve`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::Managed;

/// The wasmtime version the workspace links (Cargo.lock); the peer must match.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// The peer's name in `RESULT` lines.
pub fn peer_name() -> String {
    format!("wasmtime-serve-{WASMTIME_VERSION}")
}

/// The `wasmtime` binary; an error saying how to install it when missing.
pub fn find_wasmtime() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("wasmtime"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/wasmtime"));
    }
    let Some(found) = candidates.into_iter().find(|p| p.is_file()) else {
        bail!(
            "the peer `wasmtime` is not installed; install the version the workspace uses with\n  \
             cargo install wasmtime-cli --version {WASMTIME_VERSION} --locked\n(it takes a while)"
        );
    };
    let version = Command::new(&found).arg("--version").output()?;
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    if !version.contains(WASMTIME_VERSION) {
        eprintln!(
            "bench: warning: {} is {}, not {WASMTIME_VERSION}",
            found.display(),
            version.trim()
        );
    }
    Ok(found)
}

/// The `wasmtime serve` command for `component` on `127.0.0.1:port`. The
/// guest's output is discarded (it logs a line per request, as on the node).
pub fn serve_command(wasmtime: &Path, component: &Path, port: u16) -> Command {
    let mut command = Command::new(wasmtime);
    command
        .arg("serve")
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        // hello-http's std imports wasi:cli beyond the proxy world (env, exit).
        .arg("-Scli");
    if component.extension().is_some_and(|e| e == "cwasm") {
        command.arg("--allow-precompiled");
    }
    command
        .arg(component)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Starts `wasmtime serve` and waits until `GET /ready` answers 200.
pub async fn start_serve(wasmtime: &Path, component: &Path, port: u16) -> Result<Managed> {
    let child = serve_command(wasmtime, component, port)
        .spawn()
        .with_context(|| format!("starting {} serve", wasmtime.display()))?;
    let mut process = Managed::new(child, "wasmtime serve", Duration::from_secs(5));
    wait_answers(port, Duration::from_secs(60)).await?;
    process.check_running()?;
    eprintln!(
        "bench: wasmtime serve (pid {}) on port {port}",
        process.pid()
    );
    Ok(process)
}

/// Precompiles `component` with `wasmtime compile` into `dir` (the peer's
/// equivalent of Skiff's compile cache); returns the `.cwasm` path.
pub fn precompile(wasmtime: &Path, component: &Path, dir: &Path) -> Result<PathBuf> {
    let output = dir.join("component.cwasm");
    let status = Command::new(wasmtime)
        .arg("compile")
        .arg("-o")
        .arg(&output)
        .arg(component)
        .stdin(Stdio::null())
        .status()
        .context("running wasmtime compile")?;
    if !status.success() {
        bail!("wasmtime compile {} failed: {status}", component.display());
    }
    Ok(output)
}

/// Polls `GET /ready` on `127.0.0.1:port` until it answers 200.
pub async fn wait_answers(port: u16, timeout: Duration) -> Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/ready");
    let start = Instant::now();
    loop {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("nothing answered on port {port} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
