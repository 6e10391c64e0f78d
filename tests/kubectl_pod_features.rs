//! Pod features on the Wasm node, end to end with `skiff up` and the real
//! kubectl: env from ConfigMaps, Secrets and the downward API; configMap,
//! secret, downwardAPI and emptyDir volumes shared by two containers; a missing
//! ConfigMap holding a container in CreateContainerConfigError until it appears;
//! a memory limit ending a guest OOMKilled.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, build_guests, manifest, repo_root};

const ENVDUMP: &str = "file:///usr/local/share/skiff/examples/envdump.wasm";

fn logs_contain(cluster: &Cluster, args: &[&str], needle: &str) -> Result<String> {
    let mut last = String::new();
    cluster.wait_for(Duration::from_secs(90), needle, |c| {
        let out = c.kubectl(args)?;
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(last.contains(needle))
    })?;
    Ok(last)
}

#[test]
fn env_and_volumes_reach_the_guest() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let example = repo_root().join("examples/envdump/manifest.yaml");
    cluster.kubectl_ok(&["apply", "-f", example.to_str().unwrap()])?;
    let pod = ["pod", "envdump", "-n", "envdump"];
    cluster.wait_field(&pod, "{.status.phase}", "Running")?;

    let reader = ["logs", "envdump", "-n", "envdump", "-c", "reader"];
    let logs = logs_contain(&cluster, &reader, "done")?;
    for line in [
        "env CM_COLOR=blue",
        "env PASSWORD=s3cret",
        "env NAMESPACE=envdump",
        "env MEMORY_LIMIT_MI=64",
        "env SUMMARY=blue in envdump",
        "env PWD=/shared",
        "found /shared/note.txt",
        "file /shared/note.txt: written by envdump",
        "file /etc/config/COLOR: blue",
        "file /etc/config/greeting.txt: hello from a configmap\\n",
        "file /etc/secret/password: s3cret",
        "file /etc/podinfo/labels: app=\"envdump\"",
    ] {
        assert!(logs.contains(line), "missing {line:?} in:\n{logs}");
    }
    // Every ConfigMap key is a valid variable name (dots are allowed).
    assert!(
        logs.contains("env CM_greeting.txt=hello from a configmap"),
        "{logs}"
    );
    let writer = ["logs", "envdump", "-n", "envdump", "-c", "writer"];
    logs_contain(&cluster, &writer, "wrote /shared/note.txt")?;

    // Deleting the pod removes its emptyDir from the node.
    let uid = cluster.kubectl_ok(&[
        "get",
        "pod",
        "envdump",
        "-n",
        "envdump",
        "-o",
        "jsonpath={.metadata.uid}",
    ])?;
    let volumes = cluster.data_dir.join("node/volumes").join(uid.trim());
    assert!(volumes.join("shared/note.txt").exists());
    cluster.kubectl_ok(&["delete", "pod", "envdump", "-n", "envdump"])?;
    cluster.wait_for(Duration::from_secs(60), "the pod's volumes to go", |_| {
        Ok(!volumes.exists())
    })?;
    Ok(())
}

#[test]
fn a_missing_config_map_waits_until_it_exists() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: needs-config
spec:
  containers:
    - name: app
      image: {ENVDUMP}
      args: ["--sleep"]
      env:
        - name: MODE
          valueFrom:
            configMapKeyRef:
              name: later
              key: mode
"#
    );
    let path = manifest(dir.path(), "pod.yaml", &yaml);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    let pod = ["pod", "needs-config"];
    cluster.wait_field(
        &pod,
        "{.status.containerStatuses[0].state.waiting.reason}",
        "CreateContainerConfigError",
    )?;
    cluster.wait_field(
        &pod,
        "{.status.containerStatuses[0].state.waiting.message}",
        "configmap \"later\" not found",
    )?;
    let events = cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=needs-config",
    ])?;
    assert!(events.contains("configmap \"later\" not found"), "{events}");

    let config = manifest(
        dir.path(),
        "config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: later\ndata:\n  mode: fast\n",
    );
    cluster.kubectl_ok(&["apply", "-f", config.to_str().unwrap()])?;
    cluster.wait_field(&pod, "{.status.phase}", "Running")?;
    logs_contain(&cluster, &["logs", "needs-config"], "env MODE=fast")?;
    Ok(())
}

#[test]
fn a_guest_over_its_memory_limit_is_oom_killed() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hungry
spec:
  restartPolicy: Never
  containers:
    - name: app
      image: {ENVDUMP}
      args: ["--alloc-mib", "200"]
      resources:
        limits:
          memory: 32Mi
"#
    );
    let path = manifest(dir.path(), "pod.yaml", &yaml);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    let pod = ["pod", "hungry"];
    cluster.wait_field(&pod, "{.status.phase}", "Failed")?;
    cluster.wait_field(
        &pod,
        "{.status.containerStatuses[0].state.terminated.reason}",
        "OOMKilled",
    )?;
    cluster.wait_field(
        &pod,
        "{.status.containerStatuses[0].state.terminated.exitCode}",
        "137",
    )?;
    let logs = cluster.kubectl_ok(&["logs", "hungry"])?;
    assert!(logs.contains("allocated 1 MiB"), "{logs}");
    assert!(!logs.contains("allocated 40 MiB"), "{logs}");
    let table = cluster.kubectl_ok(&["get", "pod", "hungry"])?;
    assert!(table.contains("OOMKilled"), "{table}");
    Ok(())
}
