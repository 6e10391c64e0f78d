//! Service names inside OCI pods, end to end with `skiff up`, the real
//! Docker daemon and kubectl: a busybox pod looks up Services with nslookup
//! and calls them with wget, by short and full name — a Wasm Deployment
//! through its cluster IP, an OCI web server through a headless Service.
//! (Wasm guests calling Services by name: `tests/examples.rs`, greeter.)
//!
//! Skipped (with the reason printed) when Docker is not reachable, unless `CI`
//! is set: then it fails.

mod common;
mod oci;
#[path = "../node/wasm/tests/registry/mod.rs"]
mod registry;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, build_guests, manifest};
use oci::{Cleanup, docker_available, push_test_image};
use registry::Registry;

fn app(image: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: dns
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  namespace: dns
spec:
  replicas: 1
  selector:
    matchLabels: {{app: hello}}
  template:
    metadata:
      labels: {{app: hello}}
    spec:
      containers:
        - name: hello
          image: file:///usr/local/share/skiff/examples/hello-http.wasm
          ports:
            - name: http
              containerPort: 8080
          env:
            - name: POD_NAME
              value: dns-hello
---
apiVersion: v1
kind: Service
metadata:
  name: hello
  namespace: dns
spec:
  selector: {{app: hello}}
  ports:
    - port: 80
      targetPort: http
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: dns
  labels: {{app: web}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: web
      image: {image}
      command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
      ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: dns
spec:
  clusterIP: None
  selector: {{app: web}}
  ports:
    - port: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: dns
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: client
      image: {image}
      command:
        - sh
        - -c
        - |
          while true; do
            echo "== lookup"; nslookup hello.dns.svc.cluster.local 2>&1
            echo "== headless"; nslookup web 2>&1
            echo "== missing"; nslookup missing.dns.svc.cluster.local 2>&1
            echo "== short"; wget -qO- http://hello/by-short-name 2>&1
            echo "== full"; wget -qO- http://hello.dns.svc.cluster.local/by-full-name 2>&1
            echo "== oci"; wget -qO- http://web:8080/ 2>&1
            sleep 1
          done
"#
    )
}

#[test]
fn oci_pods_resolve_and_reach_services_by_name() -> Result<()> {
    if !docker_available() {
        return Ok(());
    }
    build_guests();
    let dir = tempfile::tempdir()?;
    let Some(registry) = Registry::start(&dir.path().join("registry")) else {
        return Ok(());
    };
    let image = push_test_image(&registry)?;
    let cluster = Cluster::start()?;
    let _cleanup = Cleanup(cluster.data_dir.clone());
    let path = manifest(dir.path(), "app.yaml", &app(&image));
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    cluster.kubectl_ok(&[
        "rollout",
        "status",
        "deploy/hello",
        "-n",
        "dns",
        "--timeout=120s",
    ])?;
    let cluster_ip = cluster.jsonpath(&["svc", "hello", "-n", "dns"], "{.spec.clusterIP}")?;
    assert!(cluster_ip.starts_with("10."), "{cluster_ip}");

    // One full round of the client's loop, after everything is up.
    let mut round = String::new();
    cluster.wait_for(
        Duration::from_secs(120),
        "a round that reached every Service",
        |c| {
            let out = c.kubectl(&["logs", "client", "-n", "dns", "--tail=200"])?;
            let logs = String::from_utf8_lossy(&out.stdout).into_owned();
            let rounds: Vec<&str> = logs.split("== lookup").collect();
            // The last round may still be running: look at the one before it.
            if rounds.len() < 3 {
                return Ok(false);
            }
            round = rounds[rounds.len() - 2].to_string();
            Ok(round.contains("path: /by-short-name")
                && round.contains("path: /by-full-name")
                && round.contains("hello from the skiff test image"))
        },
    )?;
    let web_ip = cluster.jsonpath(&["pod", "web", "-n", "dns"], "{.status.podIP}")?;
    let section = |name: &str| -> String {
        round
            .split("== ")
            .find(|s| s.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    let lookup = round.split("== headless").next().unwrap_or_default();
    assert!(
        lookup.contains(&cluster_ip),
        "the cluster IP {cluster_ip} in {round}"
    );
    assert!(
        section("headless").contains(&web_ip),
        "the headless Service's pod {web_ip} in {round}"
    );
    assert!(
        section("missing").contains("NXDOMAIN") || section("missing").contains("can't find"),
        "{round}"
    );
    assert!(
        section("short").contains("Hello from dns-hello!"),
        "{round}"
    );
    Ok(())
}
