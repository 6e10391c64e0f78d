//! `kubectl drain` through `pods/eviction` with a PodDisruptionBudget, and
//! `kubectl auth can-i` / `whoami` (Skiff answers every access allowed).

mod common;

use anyhow::Result;
use common::{Cluster, build_guests, manifest};

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: hello
        image: file:///usr/local/share/skiff/examples/hello.wasm
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
"#;

fn pods_on(cluster: &Cluster, node: &str) -> Result<Vec<String>> {
    let out = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "--field-selector",
        &format!("spec.nodeName={node}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    Ok(out.split_whitespace().map(String::from).collect())
}

#[test]
fn drain_respects_the_disruption_budget() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let app = manifest(dir.path(), "app.yaml", APP);
    cluster.kubectl_ok(&["apply", "-f", app.to_str().unwrap()])?;
    cluster.wait_field(&["deployment", "web"], "{.status.readyReplicas}", "2")?;
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "-l",
        "app=web",
        "--timeout=120s",
    ])?;
    let node = cluster.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])?;
    let before = pods_on(&cluster, &node)?;
    assert_eq!(before.len(), 2, "{before:?}");

    // Both pods are needed by the budget: drain cordons, then gives up.
    let out = cluster.kubectl(&["drain", &node, "--ignore-daemonsets", "--timeout=8s"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain should have failed: {stderr}");
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{stderr}"
    );
    assert_eq!(
        cluster.kubectl_ok(&["get", "node", &node, "-o", "jsonpath={.spec.unschedulable}"])?,
        "true"
    );
    assert_eq!(pods_on(&cluster, &node)?, before, "no pod may have gone");

    // A budget that allows it: drain evicts both pods; their replacements
    // wait for a schedulable node.
    cluster.kubectl_ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":0}}"#,
    ])?;
    let out = cluster.kubectl_ok(&["drain", &node, "--ignore-daemonsets", "--timeout=90s"])?;
    assert!(out.contains("drained"), "{out}");
    for pod in &before {
        let err = cluster.kubectl_err(&["get", "pod", pod])?;
        assert!(err.contains("NotFound"), "{pod} still there: {err}");
    }
    cluster.wait_field(
        &["pods", "-l", "app=web"],
        "{.items[*].status.phase}",
        "Pending Pending",
    )?;

    // Uncordoned, the replacements run on the node again.
    cluster.kubectl_ok(&["uncordon", &node])?;
    cluster.wait_field(&["deployment", "web"], "{.status.readyReplicas}", "2")?;
    Ok(())
}

#[test]
fn auth_can_i_and_whoami_answer() -> Result<()> {
    let cluster = Cluster::start()?;
    assert_eq!(
        cluster.kubectl_ok(&["auth", "can-i", "create", "pods"])?,
        "yes\n"
    );
    assert_eq!(
        cluster.kubectl_ok(&["auth", "can-i", "delete", "nodes", "--all-namespaces"])?,
        "yes\n"
    );
    let list = cluster.kubectl_ok(&["auth", "can-i", "--list"])?;
    assert!(list.contains("*.*"), "{list}");
    let whoami = cluster.kubectl_ok(&["auth", "whoami"])?;
    assert!(whoami.contains("system:anonymous"), "{whoami}");
    Ok(())
}
