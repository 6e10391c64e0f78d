//! Separate nodes: one `skiff up` plus two `skiff node` processes joining it
//! through its kubeconfig. A Deployment's pods spread over all three nodes, logs
//! come from whichever node runs the pod, and every node renews its Lease.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use common::{Cluster, build_guests, manifest};

/// A `skiff node` process, stopped when dropped.
struct NodeProcess {
    child: Child,
}

impl NodeProcess {
    fn start(cluster: &Cluster, name: &str, data_dir: &Path) -> Result<NodeProcess> {
        let log = std::fs::File::create(data_dir.with_extension("log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["node", "--name", name, "--kubeconfig"])
            .arg(cluster.kubeconfig())
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting skiff node")?;
        Ok(NodeProcess { child })
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..300 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pods_spread_over_separate_nodes() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let _a = NodeProcess::start(&cluster, "node-a", &dir.path().join("node-a"))?;
    let _b = NodeProcess::start(&cluster, "node-b", &dir.path().join("node-b"))?;
    cluster.wait_for(Duration::from_secs(120), "three Ready nodes", |c| {
        let out = c.kubectl_ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ])?;
        Ok(out.lines().filter(|l| *l == "True").count() == 3)
    })?;

    let yaml = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: spread
spec:
  replicas: 6
  selector:
    matchLabels:
      app: spread
  template:
    metadata:
      labels:
        app: spread
    spec:
      containers:
        - name: hello
          image: file:///usr/local/share/skiff/examples/hello.wasm
          args: ["from", "$(NODE)"]
          env:
            - name: NODE
              valueFrom:
                fieldRef:
                  fieldPath: spec.nodeName
"#;
    let path = manifest(dir.path(), "deployment.yaml", yaml);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    let mut placement = String::new();
    cluster.wait_for(Duration::from_secs(120), "six running pods", |c| {
        placement = c.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=spread",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase}{\"\\n\"}{end}",
        ])?;
        Ok(placement.lines().filter(|l| l.ends_with(" Running")).count() == 6)
    })?;
    let nodes: BTreeSet<&str> = placement
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        nodes.len(),
        3,
        "pods did not spread over all nodes:\n{placement}"
    );

    // Logs come from the node that runs the pod (the API server proxies there).
    let on_a = placement
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("node-a"))
        .and_then(|l| l.split_whitespace().next())
        .context("no pod on node-a")?
        .to_string();
    cluster.wait_for(Duration::from_secs(60), "the greeting from node-a", |c| {
        let logs = c.kubectl_ok(&["logs", &on_a])?;
        Ok(logs.contains("node-a"))
    })?;

    for node in ["node-a", "node-b"] {
        let holder = cluster.kubectl_ok(&[
            "get",
            "lease",
            node,
            "-n",
            "kube-node-lease",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])?;
        assert_eq!(holder, node);
    }
    Ok(())
}
