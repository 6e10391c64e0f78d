//! Probes on the Wasm node, end to end with `skiff up` and the real kubectl: a
//! failing exec readiness probe keeps a running pod un-Ready, a passing tcpSocket
//! readiness probe makes an HTTP pod Ready, and a failing httpGet liveness probe
//! restarts the container again and again.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, build_guests, manifest};

const PODS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: never-ready
spec:
  containers:
    - name: app
      image: file:///usr/local/share/skiff/examples/envdump.wasm
      args: ["--sleep"]
      readinessProbe:
        exec:
          command: ["envdump", "--exit", "1"]
        periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: ready-http
spec:
  containers:
    - name: web
      image: file:///usr/local/share/skiff/examples/hello-http.wasm
      ports:
        - name: http
          containerPort: 8080
      readinessProbe:
        tcpSocket:
          port: http
        periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: unhealthy
spec:
  containers:
    - name: web
      image: file:///usr/local/share/skiff/examples/hello-http.wasm
      ports:
        - containerPort: 8080
      livenessProbe:
        httpGet:
          path: /trap
          port: 8080
        periodSeconds: 1
        failureThreshold: 2
"#;

#[test]
fn probes_drive_readiness_and_restarts() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let path = manifest(dir.path(), "pods.yaml", PODS);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;

    let ready = "{.status.conditions[?(@.type==\"Ready\")].status}";
    cluster.wait_field(&["pod", "ready-http"], ready, "True")?;
    cluster.wait_field(
        &["pod", "ready-http"],
        "{.status.containerStatuses[0].ready}",
        "true",
    )?;

    cluster.wait_field(&["pod", "never-ready"], "{.status.phase}", "Running")?;
    cluster.wait_for(Duration::from_secs(60), "an Unhealthy event", |c| {
        let events = c.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=never-ready",
        ])?;
        Ok(events.contains("Readiness probe failed"))
    })?;
    let status = cluster.kubectl_ok(&["get", "pod", "never-ready", "-o", &format!("jsonpath={ready} {{.status.containerStatuses[0].ready}} {{.status.containerStatuses[0].started}}")])?;
    assert_eq!(status, "False false true");
    let table = cluster.kubectl_ok(&["get", "pod", "never-ready"])?;
    assert!(
        table.contains("0/1") && table.contains("Running"),
        "{table}"
    );

    cluster.wait_for(Duration::from_secs(120), "two liveness restarts", |c| {
        let count = c.kubectl_ok(&[
            "get",
            "pod",
            "unhealthy",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ])?;
        Ok(count.parse::<u32>().unwrap_or(0) >= 2)
    })?;
    let events = cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=unhealthy",
    ])?;
    assert!(
        events.contains("Liveness probe failed: HTTP probe failed with statuscode: 500"),
        "{events}"
    );
    assert!(
        events.contains("Container web failed liveness probe, will be restarted"),
        "{events}"
    );
    // Stopped like any container: an HTTP function drains and ends with 0.
    let last = cluster.kubectl_ok(&[
        "get",
        "pod",
        "unhealthy",
        "-o",
        "jsonpath={.status.containerStatuses[0].lastState.terminated.finishedAt}",
    ])?;
    assert!(!last.is_empty());
    Ok(())
}
