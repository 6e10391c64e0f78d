//! OCI pods end to end: `skiff up` with the real Docker daemon and the real
//! kubectl. The test image is built offline from Debian's busybox-static
//! (`scripts/oci-test-image`) and pushed to a loopback registry, so pods name
//! it by registry reference and the node tells it from a Wasm artifact by
//! asking the registry.
//!
//! Skipped (with the reason printed) when Docker is not reachable, unless `CI`
//! is set: then it fails.

mod common;
mod oci;
#[path = "../node/wasm/tests/registry/mod.rs"]
mod registry;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, manifest};
use oci::{Cleanup, containers, docker_available, pod, push_test_image};
use registry::Registry;

#[test]
fn busybox_pods_log_restart_share_localhost_and_report_oom_and_pull_errors() -> Result<()> {
    if !docker_available() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let Some(registry) = Registry::start(&dir.path().join("registry")) else {
        return Ok(());
    };
    let image = push_test_image(&registry)?;
    let cluster = Cluster::start()?;
    let _cleanup = Cleanup(cluster.data_dir.clone());

    // No runtimeClassName: the node asks the registry and finds a container image.
    let looping = pod(
        "looping",
        &format!(
            "  containers:\n  - name: main\n    image: {image}\n    command: [\"sh\", \"-c\", \"i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done\"]\n"
        ),
    );
    let crashing = pod(
        "crashing",
        &format!(
            "  runtimeClassName: oci\n  containers:\n  - name: main\n    image: {image}\n    command: [\"sh\", \"-c\", \"echo about to fail; exit 3\"]\n"
        ),
    );
    let oom = pod(
        "hungry",
        &format!(
            "  restartPolicy: Never\n  containers:\n  - name: main\n    image: {image}\n    command: [\"sh\", \"-c\", \"x=$(head -c 200000000 /dev/zero | tr '\\\\0' a); echo survived ${{#x}}\"]\n    resources:\n      limits:\n        memory: 16Mi\n"
        ),
    );
    let shared = pod(
        "shared",
        &format!(
            "  containers:\n  - name: server\n    image: {image}\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n  - name: client\n    image: {image}\n    command: [\"sh\", \"-c\", \"while true; do wget -qO- http://localhost:8080/ || echo not yet; sleep 0.5; done\"]\n"
        ),
    );
    let missing_image = format!("{}/skiff-test/missing:1", registry.host());
    let missing = pod(
        "missing",
        &format!(
            "  runtimeClassName: oci\n  containers:\n  - name: main\n    image: {missing_image}\n"
        ),
    );
    for (name, yaml) in [
        ("looping", &looping),
        ("crashing", &crashing),
        ("hungry", &oom),
        ("shared", &shared),
        ("missing", &missing),
    ] {
        let path = manifest(dir.path(), &format!("{name}.yaml"), yaml);
        cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    }

    // A shell loop: Running with a pod IP of its own, its lines in kubectl logs.
    cluster.wait_field(&["pod", "looping"], "{.status.phase}", "Running")?;
    cluster.wait_for(Duration::from_secs(60), "the loop's lines", |c| {
        let logs = c.kubectl_ok(&["logs", "looping"])?;
        Ok(logs.contains("line 0\n") && logs.contains("line 3\n"))
    })?;
    let ip = cluster.jsonpath(&["pod", "looping"], "{.status.podIP}")?;
    let host_ip = cluster.jsonpath(&["pod", "looping"], "{.status.hostIP}")?;
    assert!(
        ip.parse::<std::net::IpAddr>().is_ok() && ip != host_ip,
        "pod IP {ip:?} should be the sandbox's own, not the node's {host_ip:?}"
    );
    let image_id = cluster.jsonpath(
        &["pod", "looping"],
        "{.status.containerStatuses[0].imageID}",
    )?;
    assert!(
        image_id.starts_with(&format!("{}/skiff-test/busybox@sha256:", registry.host())),
        "imageID {image_id:?} should be the registry digest"
    );

    // A failing command restarts with back-off, its exit code kept.
    cluster.wait_for(Duration::from_secs(120), "a restart after exit 3", |c| {
        let restarts = c.jsonpath(
            &["pod", "crashing"],
            "{.status.containerStatuses[0].restartCount}",
        )?;
        Ok(restarts.parse::<u32>().unwrap_or(0) >= 1)
    })?;
    let last_exit = cluster.jsonpath(
        &["pod", "crashing"],
        "{.status.containerStatuses[0].lastState.terminated.exitCode}",
    )?;
    assert_eq!(last_exit, "3");
    // The ended attempt's output: `--previous`, because the current attempt may
    // already have started and not written yet.
    let previous = cluster.kubectl_ok(&["logs", "crashing", "--previous"])?;
    assert!(previous.contains("about to fail"), "{previous}");

    // Over its memory limit: OOMKilled, exit 137.
    cluster.wait_field(&["pod", "hungry"], "{.status.phase}", "Failed")?;
    let terminated = cluster.jsonpath(&["pod", "hungry"],
        "{.status.containerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.terminated.exitCode}",
    )?;
    assert_eq!(terminated, "OOMKilled 137");

    // Two containers share localhost.
    cluster.wait_for(Duration::from_secs(60), "the client's fetch", |c| {
        let logs = c.kubectl_ok(&["logs", "shared", "-c", "client"])?;
        Ok(logs.contains("hello from the skiff test image"))
    })?;

    // A missing image: ErrImagePull / ImagePullBackOff and a Failed event.
    cluster.wait_for(Duration::from_secs(60), "a pull error", |c| {
        let reason = c.jsonpath(
            &["pod", "missing"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        )?;
        Ok(reason == "ErrImagePull" || reason == "ImagePullBackOff")
    })?;
    cluster.wait_for(Duration::from_secs(30), "the Failed event", |c| {
        let events = c.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=missing,reason=Failed",
            "-o",
            "jsonpath={.items[*].message}",
        ])?;
        Ok(events.contains("Failed to pull image"))
    })?;

    // The node says its OCI runtime is ready.
    let ready = cluster.jsonpath(
        &["nodes"],
        "{.items[0].status.conditions[?(@.type==\"OCIRuntimeReady\")].status}",
    )?;
    assert_eq!(ready, "True");
    Ok(())
}

#[test]
fn a_restarted_agent_adopts_running_containers_and_deleted_pods_lose_theirs() -> Result<()> {
    if !docker_available() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let Some(registry) = Registry::start(&dir.path().join("registry")) else {
        return Ok(());
    };
    let image = push_test_image(&registry)?;
    let mut cluster = Cluster::start()?;
    let _cleanup = Cleanup(cluster.data_dir.clone());
    let yaml = pod(
        "steady",
        &format!(
            "  runtimeClassName: oci\n  containers:\n  - name: main\n    image: {image}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done\"]\n"
        ),
    );
    let path = manifest(dir.path(), "steady.yaml", &yaml);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    cluster.wait_field(&["pod", "steady"], "{.status.phase}", "Running")?;
    cluster.wait_for(Duration::from_secs(60), "ticks", |c| {
        Ok(c.kubectl_ok(&["logs", "steady"])?.contains("tick 2\n"))
    })?;
    let before = containers(&cluster, "label=io.skiff.pod.name=steady")?;
    assert_eq!(before.len(), 2, "the sandbox and the container: {before:?}");

    cluster.restart()?;
    cluster.wait_for(Duration::from_secs(60), "the container adopted", |c| {
        let ready = c.jsonpath(&["pod", "steady"], "{.status.containerStatuses[0].ready}")?;
        Ok(ready == "true")
    })?;
    let after = containers(&cluster, "label=io.skiff.pod.name=steady")?;
    let (mut before, mut after) = (before, after);
    before.sort();
    after.sort();
    assert_eq!(before, after, "the same containers, none duplicated");
    cluster.wait_for(Duration::from_secs(60), "ticks after the restart", |c| {
        let logs = c.kubectl_ok(&["logs", "steady"])?;
        Ok(logs.contains("tick 0\n") && logs.lines().count() > 5)
    })?;

    cluster.kubectl_ok(&["delete", "pod", "steady", "--wait=true", "--timeout=60s"])?;
    cluster.wait_for(Duration::from_secs(60), "the containers removed", |c| {
        Ok(containers(c, "label=io.skiff.pod.name=steady")?.is_empty())
    })?;
    Ok(())
}

#[test]
fn exec_into_a_busybox_pod_passes_stdin_and_exit_codes_and_top_shows_it() -> Result<()> {
    if !docker_available() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let Some(registry) = Registry::start(&dir.path().join("registry")) else {
        return Ok(());
    };
    let image = push_test_image(&registry)?;
    let cluster = Cluster::start()?;
    let _cleanup = Cleanup(cluster.data_dir.clone());
    let shell = pod(
        "shell",
        &format!(
            "  runtimeClassName: oci\n  containers:\n  - name: main\n    image: {image}\n    command: [\"sh\", \"-c\", \"echo ready; while true; do sleep 1; done\"]\n    env:\n    - name: GREETING\n      value: ahoy\n"
        ),
    );
    let path = manifest(dir.path(), "shell.yaml", &shell);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    cluster.wait_field(&["pod", "shell"], "{.status.phase}", "Running")?;

    // The command runs inside the running container: its env, its exit code.
    let out = cluster.kubectl(&[
        "exec",
        "shell",
        "--",
        "sh",
        "-c",
        "echo $GREETING; echo oops >&2; exit 4",
    ])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ahoy\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("oops"));
    assert_eq!(out.status.code(), Some(4));
    let out = cluster.kubectl(&["exec", "shell", "--", "sh", "-c", "echo made > /tmp/mark"])?;
    assert!(out.status.success());
    let marked = cluster.kubectl_ok(&["exec", "shell", "-c", "main", "--", "cat", "/tmp/mark"])?;
    assert_eq!(marked, "made\n", "both commands ran in the same container");

    // -i passes stdin; its end ends the command.
    let out =
        cluster.kubectl_with_input(&["exec", "-i", "shell", "--", "wc", "-l"], b"a\nb\nc\n")?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");

    // An unknown container is named.
    let err = cluster.kubectl_err(&["exec", "shell", "-c", "nope", "--", "true"])?;
    assert!(err.contains("nope"), "{err}");

    // kubectl top reads Docker's stats.
    let mut table = String::new();
    cluster.wait_for(Duration::from_secs(30), "kubectl top pod shell", |c| {
        let out = c.kubectl(&["top", "pod", "shell"])?;
        table = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(out.status.success() && table.contains("shell"))
    })?;
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.len(), 3, "{table}");
    assert!(
        row[2].trim_end_matches("Mi").parse::<u64>().is_ok(),
        "{table}"
    );
    Ok(())
}
