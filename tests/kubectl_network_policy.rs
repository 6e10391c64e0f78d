//! NetworkPolicy at the gateway and the NodePort forwarder, end to end: the
//! hello-http example behind a Service and a NodePort, policies applied with
//! kubectl, and curl calling from two loopback addresses (127.0.0.2 allowed
//! by an `ipBlock`, 127.0.0.3 not).

mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{Cluster, build_guests, manifest};

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: np
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  namespace: np
spec:
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      containers:
        - name: hello
          image: file:///usr/local/share/skiff/examples/hello-http.wasm
          ports:
            - name: http
              containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: hello
  namespace: np
spec:
  type: NodePort
  selector: {app: hello}
  ports:
    - port: 80
      targetPort: http
"#;

const DENY_ALL: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: np
spec:
  podSelector: {}
"#;

fn allow_from_2(port: &str) -> String {
    format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-2
  namespace: np
spec:
  podSelector:
    matchLabels: {{app: hello}}
  policyTypes: [Ingress]
  ingress:
    - from:
        - ipBlock: {{cidr: 127.0.0.0/24, except: [127.0.0.3/32]}}
      ports:
        - port: {port}
"#
    )
}

/// One request with curl from `source` (no retries): status code (0 when the
/// connection closed without an answer) and body.
fn curl(source: &str, url: &str, host: &str) -> Result<(u16, String)> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "--interface", source, "-H"])
        .arg(format!("Host: {host}"))
        .args(["-w", "\n%{http_code}"])
        .arg(url)
        .output()
        .context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    let code = code.trim().parse().with_context(|| {
        format!(
            "curl status {code:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((code, body.to_string()))
}

#[test]
fn network_policies_allow_and_deny_callers_at_the_gateway_and_node_ports() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let apply = |name: &str, yaml: &str| -> Result<()> {
        let path = manifest(dir.path(), name, yaml);
        cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
        Ok(())
    };
    apply("app.yaml", APP)?;
    cluster.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/hello",
        "-n",
        "np",
        "--timeout=120s",
    ])?;
    let gateway = format!("http://{}/", cluster.gateway);
    let node_port = cluster.kubectl_ok(&[
        "get",
        "service",
        "hello",
        "-n",
        "np",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ])?;
    let node_port = format!("http://127.0.0.1:{}/", node_port.trim());
    // Every check waits for the gateway's caches to see the last change.
    let expect = |what: &str, source: &str, url: &str, status: u16, text: &str| {
        cluster
            .wait_for(Duration::from_secs(60), what, |_| {
                Ok(curl(source, url, "hello.np")
                    .is_ok_and(|(code, body)| code == status && body.contains(text)))
            })
            .with_context(|| {
                format!(
                    "{what}: last answer {:?}",
                    curl(source, url, "hello.np").ok()
                )
            })
    };

    // No policy: everyone gets through.
    for source in ["127.0.0.2", "127.0.0.3"] {
        expect("open gateway", source, &gateway, 200, "Hello from")?;
        expect("open node port", source, &node_port, 200, "Hello from")?;
    }

    // A policy selecting the pod with no ingress rule: default deny.
    apply("deny.yaml", DENY_ALL)?;
    for source in ["127.0.0.2", "127.0.0.3"] {
        expect(
            "denied by deny-all",
            source,
            &gateway,
            403,
            "NetworkPolicy np/deny-all allows",
        )?;
        expect("node port closed", source, &node_port, 0, "")?;
    }

    // Another policy allows 127.0.0.2 (an ipBlock) on the named port: policies add up.
    apply("allow.yaml", &allow_from_2("http"))?;
    expect(
        "allowed by allow-2",
        "127.0.0.2",
        &gateway,
        200,
        "Hello from",
    )?;
    expect(
        "node port allowed",
        "127.0.0.2",
        &node_port,
        200,
        "Hello from",
    )?;
    let (status, body) = curl("127.0.0.3", &gateway, "hello.np")?;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(
            "NetworkPolicy np/allow-2, np/deny-all allows 127.0.0.3 no endpoint of Service np/hello"
        ),
        "{body}"
    );
    assert_eq!(curl("127.0.0.3", &node_port, "hello.np")?.0, 0);

    // The allowed port is not the pod's: denied again.
    apply("allow.yaml", &allow_from_2("9999"))?;
    expect("port 9999 only", "127.0.0.2", &gateway, 403, "np/allow-2")?;

    // Policies deleted: open again.
    cluster.kubectl_ok(&["delete", "networkpolicy", "--all", "-n", "np"])?;
    expect("open again", "127.0.0.3", &gateway, 200, "Hello from")?;
    Ok(())
}
