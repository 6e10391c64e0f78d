//! The Python `kubernetes` client (`tests/python/client_smoke.py`) against
//! the real `skiff up`: list, create, patch, selectors, watch, delete. CI
//! installs the package (`.ci/run`); without it this test fails and says so.

mod common;

use std::process::Command;

use anyhow::{Context, Result, bail};
use common::{Cluster, repo_root};

fn python() -> String {
    std::env::var("SKIFF_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn python_kubernetes_client_lists_creates_watches_deletes() -> Result<()> {
    let probe = Command::new(python())
        .args(["-c", "import kubernetes"])
        .output()
        .context("running python3")?;
    if !probe.status.success() {
        bail!(
            "the Python `kubernetes` package is missing (`python3 -m pip install kubernetes`, as .ci/run does): {}",
            String::from_utf8_lossy(&probe.stderr)
        );
    }
    let cluster = Cluster::start()?;
    let out = Command::new(python())
        .arg(repo_root().join("tests/python/client_smoke.py"))
        .arg(cluster.kubeconfig())
        .output()
        .context("running the python client")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the python client failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(stdout.contains("python client: ok"), "{stdout}");
    Ok(())
}
