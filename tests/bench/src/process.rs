//! Child processes the benchmarks start (the node, etcd members, native peers),
//! building binaries, free loopback ports and resident memory from `/proc`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The repository root (this package lives in `tests/bench`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the workspace's cargo puts its builds.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs `cargo ARGS` in the workspace root; its output goes to our stderr so stdout
/// keeps only the results.
pub fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("bench: cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .current_dir(workspace_root())
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed with {status}", args.join(" "));
    }
    Ok(())
}

/// A loopback port nobody listens on right now (the OS picks it).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_field_kib(pid, "VmRSS:")
}

/// Private memory of a process (`Private_Clean` + `Private_Dirty` of
/// `/proc/PID/smaps_rollup`, its unique set size), in KiB: what one more such process
/// costs, without the shared C library and program text RSS counts in every process.
pub fn private_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let rollup = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    ["Private_Clean:", "Private_Dirty:"]
        .iter()
        .map(|field| field_kib(&rollup, field).with_context(|| format!("in {path}")))
        .sum()
}

fn status_field_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    field_kib(&status, field).with_context(|| format!("in {path}"))
}

/// The value of a `Field:   123 kB` line.
fn field_kib(text: &str, field: &str) -> Result<u64> {
    let line = text
        .lines()
        .find(|line| line.starts_with(field))
        .with_context(|| format!("no {field} line"))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("parsing {line:?}"))
}

/// A child process stopped by its PID when dropped: SIGTERM, then SIGKILL if it has
/// not exited within the grace period.
pub struct Managed {
    child: Child,
    what: String,
    grace: Duration,
}

impl Managed {
    pub fn new(child: Child, what: impl Into<String>, grace: Duration) -> Managed {
        Managed {
            child,
            what: what.into(),
            grace,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited (it crashed or refused to start).
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early with {status}", self.what);
        }
        Ok(())
    }

    /// Stops the process and waits for it.
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while start.elapsed() < self.grace {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "bench: {} did not stop within {:?} of SIGTERM; killing it",
            self.what, self.grace
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_memory() {
        let pid = std::process::id();
        let rss = rss_kib(pid).unwrap();
        let private = private_kib(pid).unwrap();
        assert!(rss > 0 && private > 0 && private <= rss, "{private} {rss}");
    }
}
