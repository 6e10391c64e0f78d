//! Ingress TLS end to end: a self-signed certificate made with the openssl
//! CLI, stored with `kubectl create secret tls`, named by an Ingress's
//! `spec.tls`; curl reaches the hello-http example over HTTPS (HTTP/1.1 and
//! HTTP/2 by ALPN) on the gateway's port, which still takes plain HTTP; a
//! server name no Ingress covers gets no certificate.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Result, bail};
use common::{Cluster, build_guests, manifest};

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: tls
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  namespace: tls
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
            - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: hello
  namespace: tls
spec:
  selector: {app: hello}
  ports:
    - port: 80
      targetPort: 8080
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: secure
  namespace: tls
spec:
  tls:
    - hosts: [secure.example.com]
      secretName: secure-tls
  rules:
    - host: secure.example.com
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: hello
                port: {number: 80}
"#;

fn run(command: &mut Command) -> Result<Output> {
    let out = command.output()?;
    Ok(out)
}

#[test]
fn ingress_tls_from_a_secret() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let crt = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    let made = run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=secure.example.com"])
        .args(["-addext", "subjectAltName=DNS:secure.example.com"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt))?;
    if !made.status.success() {
        bail!("openssl: {}", String::from_utf8_lossy(&made.stderr));
    }
    let path = manifest(dir.path(), "app.yaml", APP);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    cluster.kubectl_ok(&[
        "create",
        "secret",
        "tls",
        "secure-tls",
        "-n",
        "tls",
        "--cert",
        crt.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ])?;
    cluster.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/hello",
        "-n",
        "tls",
        "--timeout=120s",
    ])?;
    let port = cluster.gateway.rsplit_once(':').unwrap().1.to_string();
    let https = |host: &str, extra: &[&str]| -> Result<Output> {
        run(Command::new("curl")
            .args(["-sS", "--max-time", "30", "--cacert"])
            .arg(&crt)
            .arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"))
            .args(["-w", "\n%{http_code} %{http_version}"])
            .args(extra)
            .arg(format!("https://{host}:{port}/tls")))
    };

    // HTTPS with the Secret's certificate (curl checks it against the file),
    // over HTTP/1.1 and HTTP/2.
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let mut last = String::new();
        cluster
            .wait_for(Duration::from_secs(60), "an HTTPS answer", |_| {
                let out = https("secure.example.com", &[flag])?;
                last = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                Ok(last.contains("path: /tls") && last.ends_with(&format!("200 {version}")))
            })
            .map_err(|e| e.context(format!("last answer: {last}")))?;
    }

    // A server name no Ingress has a certificate for: the handshake fails.
    let out = https("other.example.com", &["-k"])?;
    assert_eq!(out.status.code(), Some(35), "{out:?}");

    // Plain HTTP on the same port still works.
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "30", "-H", "Host: hello.tls"])
        .arg(format!("http://{}/plain", cluster.gateway)))?;
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("path: /plain"), "{out:?}");
    Ok(())
}
