//! What the OCI end-to-end tests share: whether Docker is there, the busybox
//! test image in a loopback registry, the containers of a test cluster's node.

#![allow(dead_code)]

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::common::{Cluster, repo_root};
use crate::registry::Registry;

/// True when the Docker daemon answers; outside CI a missing one skips the test.
pub fn docker_available() -> bool {
    let up = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !up {
        assert!(
            std::env::var_os("CI").is_none(),
            "the Docker daemon must be reachable in CI (docker info failed)"
        );
        eprintln!("SKIPPED: the Docker daemon is not reachable (docker info failed)");
    }
    up
}

/// Builds the busybox test image and pushes it to `registry`; returns its reference.
pub fn push_test_image(registry: &Registry) -> Result<String> {
    let out = Command::new(repo_root().join("scripts/oci-test-image"))
        .arg(registry.host())
        .output()
        .context("running scripts/oci-test-image")?;
    if !out.status.success() {
        bail!(
            "scripts/oci-test-image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout)?;
    let reference = text.lines().last().context("no reference printed")?.trim();
    // Pods must pull it from the registry, not find it in the engine already.
    let _ = Command::new("docker").args(["rmi", reference]).output();
    Ok(reference.to_string())
}

/// The Docker containers of one cluster's node, by the node label the driver
/// sets (`<node name>@<data dir>`).
pub fn containers(cluster: &Cluster, extra_filter: &str) -> Result<Vec<String>> {
    node_containers(&cluster.data_dir, extra_filter)
}

pub fn node_containers(data_dir: &std::path::Path, extra_filter: &str) -> Result<Vec<String>> {
    let data_dir = data_dir.canonicalize()?;
    let suffix = format!("@{}", data_dir.display());
    let mut args = vec![
        "ps",
        "-a",
        "--filter",
        "label=io.skiff.node",
        "--format",
        "{{.ID}} {{.Label \"io.skiff.node\"}}",
    ];
    if !extra_filter.is_empty() {
        args.extend(["--filter", extra_filter]);
    }
    let out = Command::new("docker").args(&args).output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, node)| node.ends_with(&suffix))
        .map(|(id, _)| id.to_string())
        .collect())
}

/// Removes every container the cluster's node made, when the test ends.
pub struct Cleanup(pub std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(ids) = node_containers(&self.0, "") {
            for id in ids {
                let _ = Command::new("docker").args(["rm", "-f", &id]).output();
            }
        }
    }
}

pub fn pod(name: &str, body: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n{body}"
    )
}
