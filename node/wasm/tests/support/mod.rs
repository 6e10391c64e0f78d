//! Shared by the integration tests: real guests built from `examples/`, a runtime
//! with a small pool, and a writer that captures guest output.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use skiff_wasm::{Process, RuntimeConfig, Sandbox, WasmRuntime};
use tokio::io::AsyncWrite;
use tokio::sync::watch;

/// Safety net only: no assertion depends on timing.
pub const PATIENCE: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the example guests once per test binary (through `scripts/build-guests`,
/// so the script is exercised too) and returns the directory they were installed in.
pub fn guests() -> &'static Path {
    static GUESTS: OnceLock<PathBuf> = OnceLock::new();
    GUESTS.get_or_init(|| {
        let root = repo_root();
        let examples_target = root.join("examples/target");
        let dest = examples_target.join("skiff-wasm-tests");
        let status = std::process::Command::new(root.join("scripts/build-guests"))
            .env("SKIFF_EXAMPLES_DIR", &dest)
            // Never the outer build's target dir: `cargo test` holds its lock while
            // the tests run, so a nested build there would wait forever.
            .env("CARGO_TARGET_DIR", &examples_target)
            .status()
            .expect("run scripts/build-guests");
        assert!(status.success(), "scripts/build-guests failed: {status}");
        dest
    })
}

/// `file://` reference to an installed guest, e.g. `image("hello-p1")`.
pub fn image(name: &str) -> String {
    let path = guests().join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    format!("file://{}", path.canonicalize().unwrap().display())
}

pub fn runtime(cache_dir: &Path) -> WasmRuntime {
    WasmRuntime::new(RuntimeConfig {
        cache_dir: cache_dir.to_owned(),
        max_instances: 8,
        ..RuntimeConfig::default()
    })
    .expect("create runtime")
}

/// A writer whose contents can be awaited.
pub struct Capture {
    tx: watch::Sender<Vec<u8>>,
}

#[derive(Clone)]
pub struct Captured {
    rx: watch::Receiver<Vec<u8>>,
}

pub fn capture() -> (Capture, Captured) {
    let (tx, rx) = watch::channel(Vec::new());
    (Capture { tx }, Captured { rx })
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.tx.send_modify(|all| all.extend_from_slice(buf));
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.rx.borrow()).into_owned()
    }

    /// Waits until the output contains `needle`; panics with the output so far if it
    /// never does.
    pub async fn wait_for(&mut self, needle: &str) {
        let found = tokio::time::timeout(
            PATIENCE,
            self.rx
                .wait_for(|all| String::from_utf8_lossy(all).contains(needle)),
        )
        .await
        .is_ok_and(|seen| seen.is_ok());
        assert!(
            found,
            "output never contained {needle:?}; got:\n{}",
            self.text()
        );
    }
}

/// A process with captured stdout and stderr.
pub fn captured_process(args: &[&str], env: &[(&str, &str)]) -> (Process, Captured, Captured) {
    let (stdout, out) = capture();
    let (stderr, err) = capture();
    let process = Process {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        stdout: Box::new(stdout),
        stderr: Box::new(stderr),
        sandbox: Sandbox::default(),
    };
    (process, out, err)
}
