//! OCI pods on the same node as the Wasm pods: the busybox test image
//! (`scripts/oci-test-image`, built offline into the local engine) running
//! `sleep`, created with `runtimeClassName: oci` and timed create → Ready
//! exactly as the Wasm pods are.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::Options;
use super::node::SkiffNode;
use super::pods::PodStarter;
use super::runner;
use crate::process::workspace_root;
use crate::report::Samples;

/// Create → Ready of `options.oci_count` OCI pods, or `None` when there are
/// none to measure or Docker does not answer.
pub async fn measure(
    node: &SkiffNode,
    options: &Options,
    timeout: Duration,
) -> Result<Option<Samples>> {
    if options.oci_count == 0 {
        return Ok(None);
    }
    let docker = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    if !docker.is_ok_and(|out| out.status.success()) {
        eprintln!("bench: pod-start: Docker does not answer; no OCI pods measured");
        return Ok(None);
    }
    let image = test_image()?;
    eprintln!("bench: pod-start: OCI pods of {image} on the same skiff up");
    let command = vec!["sleep".to_string(), "3600".to_string()];
    let starter = Arc::new(PodStarter::oci(node.client.clone(), image, command, timeout).await?);
    // The first pod builds the pause image and warms the engine's caches.
    let warmup = options.warmup.clamp(1, 5);
    eprintln!("bench:   warm-up: {warmup} starts");
    runner::latencies(&starter, "oci-warm", warmup, 1, options.live).await?;
    // Docker starts containers one at a time per pod's sandbox; a few in flight
    // is what a rollout does.
    let concurrency = options.concurrency.min(4);
    eprintln!(
        "bench:   latency: {} starts, {concurrency} in flight",
        options.oci_count
    );
    let latency = runner::latencies(
        &starter,
        "oci-lat",
        options.oci_count,
        concurrency,
        options.live.min(32),
    )
    .await?;
    eprintln!("bench:   OCI start → ready {}", latency.summary());
    eprintln!("bench:   {}", starter.breakdown());
    Ok(Some(latency))
}

/// Builds (once; cheap afterwards) the busybox test image into the local
/// engine and returns its reference.
fn test_image() -> Result<String> {
    let script = workspace_root().join("scripts/oci-test-image");
    let out = Command::new(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout)?;
    Ok(text
        .lines()
        .last()
        .context("scripts/oci-test-image printed no reference")?
        .trim()
        .to_string())
}
