//! Harness for end-to-end tests: the real `skiff` binary on a free port with
//! a fresh data directory, driven by the installed `kubectl`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod http;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Build and install the example guests once per test binary (the example
/// manifests name the installed paths).
pub fn build_guests() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(repo_root().join("scripts/build-guests"))
            .status()
            .expect("running scripts/build-guests");
        assert!(status.success(), "scripts/build-guests failed");
    });
}

/// A running `skiff up`.
pub struct Cluster {
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    cache_dir: tempfile::TempDir,
    child: Option<Child>,
    pub server: String,
    /// The node gateway's address (`127.0.0.1:PORT`).
    pub gateway: String,
    /// Extra environment of `skiff up`.
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Start a cluster with a fresh data directory.
    pub fn start() -> Result<Cluster> {
        Cluster::start_with_env(&[])
    }

    /// Start a cluster whose `skiff up` also has these environment variables.
    pub fn start_with_env(env: &[(&str, &str)]) -> Result<Cluster> {
        let temp = tempfile::tempdir()?;
        let data_dir = temp.path().join("data");
        let mut cluster = Cluster {
            data_dir,
            _temp: Some(temp),
            cache_dir: tempfile::tempdir()?,
            child: None,
            server: String::new(),
            gateway: String::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        cluster.launch()?;
        Ok(cluster)
    }

    fn launch(&mut self) -> Result<()> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args([
                "up",
                "--api-addr",
                "127.0.0.1:0",
                "--gateway-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&self.data_dir)
            .env("RUST_LOG", "info,raft=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(
                self.data_dir
                    .parent()
                    .unwrap()
                    .join(format!("skiff-{}.log", std::process::id())),
            )?))
            .spawn()
            .context("starting skiff up")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut server = None;
        let mut gateway = None;
        for line in lines.by_ref() {
            let line = line?;
            if let Some(url) = line.strip_prefix("Gateway at http://") {
                gateway = Some(url.trim().to_string());
            }
            if let Some(url) = line.strip_prefix("Skiff is up: the Kubernetes API is at ") {
                server = Some(url.trim().to_string());
            }
            if line.starts_with("export KUBECONFIG=") {
                break;
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.server = server.context("skiff up did not report its API address")?;
        self.gateway = gateway.context("skiff up did not report its gateway address")?;
        self.child = Some(child);
        self.wait_for(Duration::from_secs(60), "the node to be Ready", |c| {
            let out = c.kubectl(&[
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
            ])?;
            Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("True"))
        })?;
        Ok(())
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    /// Run the installed kubectl against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> Result<Output> {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.cache_dir.path())
            .stdin(Stdio::null())
            .output()
            .context("running kubectl")
    }

    /// Run the installed kubectl with `input` on its stdin (`kubectl exec -i`).
    pub fn kubectl_with_input(&self, args: &[&str], input: &[u8]) -> Result<Output> {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.cache_dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl")?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(input)?;
        drop(stdin);
        child.wait_with_output().context("waiting for kubectl")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args)?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// kubectl that must fail; returns stderr.
    pub fn kubectl_err(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args)?;
        if out.status.success() {
            bail!(
                "kubectl {} unexpectedly succeeded: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Poll `check` until it holds; the timeout is only a safety net.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Cluster) -> Result<bool>,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            if check(self)? {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "timed out waiting for {what}; the cluster's log ends with:\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `kubectl get OBJECT… -o jsonpath=PATH`: what it prints (the object must exist).
    pub fn jsonpath(&self, object: &[&str], path: &str) -> Result<String> {
        let expr = format!("jsonpath={path}");
        let mut args = vec!["get"];
        args.extend_from_slice(object);
        args.extend(["-o", &expr]);
        self.kubectl_ok(&args)
    }

    /// Wait until `jsonpath` of an object reads `want` (an object that does
    /// not exist yet reads as nothing).
    pub fn wait_field(&self, object: &[&str], jsonpath: &str, want: &str) -> Result<()> {
        let mut last = String::new();
        self.wait_for(
            Duration::from_secs(90),
            &format!("{jsonpath} = {want}"),
            |c| {
                last = c.jsonpath(object, jsonpath).unwrap_or_default();
                Ok(last == want)
            },
        )
        .with_context(|| format!("last value {last:?}"))
    }

    /// Stop with SIGTERM and wait for the process to exit.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()?;
            let start = Instant::now();
            while child.try_wait()?.is_none() {
                if start.elapsed() > Duration::from_secs(30) {
                    child.kill()?;
                    bail!("skiff did not stop within 30s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// Stop and start again on the same data directory.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.launch()
    }

    /// The last `lines` lines of the cluster's log, for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir
            .parent()
            .unwrap()
            .join(format!("skiff-{}.log", std::process::id()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Write a manifest into a temp file for kubectl -f.
pub fn manifest(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("writing manifest");
    path
}
