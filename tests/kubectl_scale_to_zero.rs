//! Scale to zero end to end: a Deployment of the hello-http example annotated
//! `skiff.dev/scale-to-zero-after`, scaled to zero by the gateway when idle,
//! woken by a request (through its Service name and through an Ingress) that
//! curl sends once and gets answered; a Deployment that never becomes Ready
//! shows the queue limit and the hold timeout (503 with the reason); a bad
//! annotation is reported on its Deployment.

mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{Cluster, build_guests, manifest};

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: stz
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  namespace: stz
  annotations:
    skiff.dev/scale-to-zero-after: 3s
    skiff.dev/scale-to-zero-timeout: 90s
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
  namespace: stz
spec:
  selector: {app: hello}
  ports:
    - port: 80
      targetPort: 8080
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: hello
  namespace: stz
spec:
  rules:
    - host: fn.example.com
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: hello
                port: {number: 80}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
  namespace: stz
  annotations:
    skiff.dev/scale-to-zero-after: 1h
    skiff.dev/scale-to-zero-queue: "1"
    skiff.dev/scale-to-zero-timeout: 40s
spec:
  replicas: 0
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
    spec:
      containers:
        - name: broken
          image: file:///nonexistent/broken.wasm
          ports:
            - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: broken
  namespace: stz
spec:
  selector: {app: broken}
  ports:
    - port: 80
      targetPort: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: typo
  namespace: stz
  annotations:
    skiff.dev/scale-to-zero-after: soon
spec:
  replicas: 0
  selector:
    matchLabels: {app: typo}
  template:
    metadata:
      labels: {app: typo}
    spec:
      containers:
        - name: typo
          image: file:///usr/local/share/skiff/examples/hello-http.wasm
"#;

/// One request with curl (no retries): status code and body.
fn curl(gateway: &str, host: &str, path: &str) -> Result<(u16, String)> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "120", "-H"])
        .arg(format!("Host: {host}"))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("http://{gateway}{path}"))
        .output()
        .context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text
        .rsplit_once('\n')
        .with_context(|| format!("curl printed no status: {text:?}"))?;
    let code = code.trim().parse().with_context(|| {
        format!(
            "curl status {code:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((code, body.to_string()))
}

fn pods(cluster: &Cluster, app: &str) -> Result<String> {
    cluster.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "stz",
        "-l",
        &format!("app={app}"),
        "-o",
        "name",
    ])
}

fn events(cluster: &Cluster, name: &str) -> Result<String> {
    cluster.kubectl_ok(&[
        "get",
        "events",
        "-n",
        "stz",
        "--field-selector",
        &format!("involvedObject.name={name}"),
    ])
}

/// Wait until the gateway has scaled hello to zero and its pod is gone.
fn wait_for_zero(cluster: &Cluster) -> Result<()> {
    cluster.wait_field(
        &["deployment", "hello", "-n", "stz"],
        "{.spec.replicas}",
        "0",
    )?;
    cluster.wait_for(Duration::from_secs(90), "hello's pod to go", |c| {
        Ok(pods(c, "hello")?.trim().is_empty())
    })
}

#[test]
fn idle_deployments_scale_to_zero_and_wake_on_the_first_request() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let gateway = cluster.gateway.clone();
    let dir = tempfile::tempdir()?;
    let path = manifest(dir.path(), "app.yaml", APP);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    cluster.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/hello",
        "-n",
        "stz",
        "--timeout=120s",
    ])?;
    cluster.wait_for(Duration::from_secs(60), "hello to answer", |_| {
        Ok(curl(&gateway, "hello.stz", "/warm")?.0 == 200)
    })?;

    // Idle for 3 s: scaled to zero, with an Event saying why.
    wait_for_zero(&cluster)?;
    cluster.wait_for(Duration::from_secs(30), "the ScaledToZero event", |c| {
        Ok(events(c, "hello")?.contains("ScaledToZero"))
    })?;

    // The first request is held while the Deployment scales up, then answered.
    let (status, body) = curl(&gateway, "hello.stz.svc.cluster.local", "/cold")?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("path: /cold"), "{body}");
    cluster.wait_for(Duration::from_secs(30), "the ScaledFromZero event", |c| {
        Ok(events(c, "hello")?.contains("ScaledFromZero"))
    })?;

    // Idle again, then woken through the Ingress.
    wait_for_zero(&cluster)?;
    let (status, body) = curl(&gateway, "fn.example.com", "/via-ingress")?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("path: /via-ingress"), "{body}");

    // A Deployment that never becomes Ready: the first request is held (and
    // wakes it), the second is over the queue limit of 1, the first gets 503
    // when its timeout ends.
    let held = {
        let gateway = gateway.clone();
        std::thread::spawn(move || curl(&gateway, "broken.stz", "/"))
    };
    cluster.wait_field(
        &["deployment", "broken", "-n", "stz"],
        "{.spec.replicas}",
        "1",
    )?;
    let (status, body) = curl(&gateway, "broken.stz", "/")?;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("Deployment stz/broken has no ready endpoint and already holds 1 request"),
        "{body}"
    );
    let (status, body) = held.join().expect("held request thread")?;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("Deployment stz/broken has no ready endpoint after 40s"),
        "{body}"
    );

    // An annotation that cannot be read is reported on its Deployment.
    cluster.wait_for(
        Duration::from_secs(30),
        "the BadScaleAnnotation event",
        |c| {
            let events = events(c, "typo")?;
            Ok(events.contains("BadScaleAnnotation")
                && events.contains("skiff.dev/scale-to-zero-after"))
        },
    )?;
    Ok(())
}

const BUSY: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: busy
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: busy
  namespace: busy
  annotations:
    skiff.dev/target-concurrency: "1"
    skiff.dev/max-replicas: "3"
spec:
  selector:
    matchLabels: {app: busy}
  template:
    metadata:
      labels: {app: busy}
    spec:
      containers:
        - name: busy
          image: file:///usr/local/share/skiff/examples/hello-http.wasm
          ports:
            - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: busy
  namespace: busy
spec:
  selector: {app: busy}
  ports:
    - port: 80
      targetPort: 8080
"#;

/// One HTTP/1.0 request over a fresh connection: whether it got a 200.
fn hit(gateway: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(gateway) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    if stream
        .write_all(b"GET /load HTTP/1.0\r\nHost: busy.busy\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response).is_ok();
    read && (response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200"))
}

#[test]
fn in_flight_requests_scale_a_deployment_up_and_back_down() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let path = manifest(dir.path(), "busy.yaml", BUSY);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    cluster.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/busy",
        "-n",
        "busy",
        "--timeout=120s",
    ])?;
    let gateway = cluster.gateway.clone();
    cluster.wait_for(Duration::from_secs(60), "busy to answer", |_| {
        Ok(hit(&gateway))
    })?;

    // Sixteen clients back to back keep several requests in flight at the
    // gateway: more than one pod's target of 1.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            let gateway = gateway.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    hit(&gateway);
                }
            })
        })
        .collect();
    let scaled_up = cluster.wait_for(Duration::from_secs(90), "more than one replica", |c| {
        let replicas = c.kubectl_ok(&[
            "get",
            "deployment",
            "busy",
            "-n",
            "busy",
            "-o",
            "jsonpath={.spec.replicas}",
        ])?;
        Ok(replicas.trim().parse::<i32>().unwrap_or(0) > 1)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.join().expect("load client");
    }
    scaled_up?;
    cluster.wait_for(
        Duration::from_secs(30),
        "the ScaledForConcurrency event",
        |c| {
            Ok(c.kubectl_ok(&[
                "get",
                "events",
                "-n",
                "busy",
                "--field-selector",
                "involvedObject.name=busy",
            ])?
            .contains("ScaledForConcurrency"))
        },
    )?;

    // Quiet again: back to one replica (never to zero without the idle annotation).
    cluster.wait_field(
        &["deployment", "busy", "-n", "busy"],
        "{.spec.replicas}",
        "1",
    )?;
    Ok(())
}
