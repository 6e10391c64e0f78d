//! The node gateway end to end: `skiff up`, the real kubectl, the hello-http
//! example as a Deployment behind a Service, an Ingress and a NodePort,
//! reached with plain HTTP clients (a raw TCP client here, curl for HTTP/2).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use common::http::{exchange, get};
use common::{Cluster, build_guests, manifest};

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: gw
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  namespace: gw
spec:
  replicas: 2
  selector:
    matchLabels: {app: hello}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
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
          env:
            - name: POD_NAME
              value: v1
---
apiVersion: v1
kind: Service
metadata:
  name: hello
  namespace: gw
spec:
  selector: {app: hello}
  ports:
    - name: web
      port: 80
      targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: hello-np
  namespace: gw
spec:
  type: NodePort
  selector: {app: hello}
  ports:
    - port: 80
      targetPort: 8080
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: hello
  namespace: gw
spec:
  rules:
    - host: hello.example.com
      http:
        paths:
          - path: /api
            pathType: Prefix
            backend:
              service:
                name: hello
                port: {name: web}
"#;

fn ready_endpoints(cluster: &Cluster) -> Result<usize> {
    let conditions = cluster.kubectl_ok(&[
        "get",
        "endpointslices",
        "-n",
        "gw",
        "-l",
        "kubernetes.io/service-name=hello",
        "-o",
        "jsonpath={.items[*].endpoints[*].conditions.ready}",
    ])?;
    Ok(conditions
        .split_whitespace()
        .filter(|c| *c == "true")
        .count())
}

#[test]
fn services_ingress_and_node_ports_through_the_gateway() -> Result<()> {
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
        "gw",
        "--timeout=120s",
    ])?;
    cluster.wait_for(Duration::from_secs(60), "two ready endpoints", |c| {
        Ok(ready_endpoints(c)? == 2)
    })?;

    // EndpointSlices and the legacy Endpoints list both pods on the resolved port.
    let slices = cluster.kubectl_ok(&[
        "get",
        "endpointslices",
        "-n",
        "gw",
        "-l",
        "kubernetes.io/service-name=hello",
    ])?;
    assert!(
        slices.contains("IPv4") && slices.contains("8080"),
        "{slices}"
    );
    let endpoints = cluster.kubectl_ok(&[
        "get",
        "endpoints",
        "hello",
        "-n",
        "gw",
        "-o",
        "jsonpath={.subsets[*].addresses[*].targetRef.name}",
    ])?;
    assert_eq!(endpoints.split_whitespace().count(), 2, "{endpoints}");
    let cluster_ip = cluster.kubectl_ok(&[
        "get",
        "service",
        "hello",
        "-n",
        "gw",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])?;
    assert!(cluster_ip.starts_with("10."), "{cluster_ip}");

    // By Service name, in every form, and by Ingress host and path.
    for host in [
        "hello.gw.svc.cluster.local",
        "hello.gw.svc",
        "hello.gw",
        "hello.gw:80",
    ] {
        let (status, body) = get(&gateway, host, "/by-name")?;
        assert_eq!(
            (status, body.as_str()),
            (200, "Hello from v1!\npath: /by-name\n"),
            "{host}"
        );
    }
    let (status, body) = get(&gateway, "hello.example.com", "/api/items")?;
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from v1!\npath: /api/items\n")
    );
    let (status, body) = get(&gateway, "hello.example.com", "/elsewhere")?;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("Ingress gw/hello has no rule"), "{body}");
    let (status, body) = get(&gateway, "nobody.example.org", "/")?;
    assert_eq!(status, 404);
    assert!(
        body.contains("no Service or Ingress rule for host \"nobody.example.org\""),
        "{body}"
    );
    let (status, _) = exchange(&gateway, "this is not HTTP\r\n\r\n")?;
    assert_eq!(status, 400);

    // Requests are spread over both pods: each pod's log shows some.
    for _ in 0..6 {
        assert_eq!(get(&gateway, "hello.gw", "/spread")?.0, 200);
    }
    let pods = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "gw",
        "-l",
        "app=hello",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    for pod in pods.split_whitespace() {
        cluster.wait_for(
            Duration::from_secs(30),
            "a request in each pod's log",
            |c| {
                Ok(c.kubectl_ok(&["logs", pod, "-n", "gw"])?
                    .contains("GET /spread"))
            },
        )?;
    }

    // HTTP/2 without TLS (h2c, prior knowledge) through curl.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-H",
            "Host: hello.gw",
            "-w",
            "\n%{http_version}",
        ])
        .arg(format!("http://{gateway}/h2"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("path: /h2") && text.ends_with("\n2"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The NodePort Service: plain TCP on 127.0.0.1:<nodePort>.
    let node_port = cluster.kubectl_ok(&[
        "get",
        "service",
        "hello-np",
        "-n",
        "gw",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ])?;
    let node_addr = format!("127.0.0.1:{}", node_port.trim());
    cluster.wait_for(Duration::from_secs(30), "the node port to answer", |_| {
        Ok(get(&node_addr, "whatever", "/np")
            .is_ok_and(|(s, b)| s == 200 && b.contains("path: /np")))
    })?;

    // The gateway's own metrics count per route.
    let (status, metrics) = get(&gateway, "anything", "/_skiff/metrics")?;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("skiff_gateway_requests_total{route=\"ingress/gw/hello\",code=\"200\"} 1"),
        "{metrics}"
    );

    // A rolling update under steady load: no request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = Arc::clone(&stop);
        let gateway = gateway.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed, mut saw_v2) = (0u32, Vec::new(), false);
            while !stop.load(Ordering::Relaxed) {
                match get(&gateway, "hello.gw", "/load") {
                    Ok((200, body)) => {
                        ok += 1;
                        saw_v2 |= body.starts_with("Hello from v2!");
                    }
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed, saw_v2)
        })
    };
    cluster.kubectl_ok(&["set", "env", "deployment/hello", "-n", "gw", "POD_NAME=v2"])?;
    cluster.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/hello",
        "-n",
        "gw",
        "--timeout=120s",
    ])?;
    cluster.wait_for(Duration::from_secs(60), "only v2 answering", |_| {
        Ok((0..4).all(|_| {
            get(&gateway, "hello.gw", "/v").is_ok_and(|(_, b)| b.starts_with("Hello from v2!"))
        }))
    })?;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, saw_v2) = load.join().expect("load thread");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 0 && saw_v2, "ok={ok} saw_v2={saw_v2}");

    // An Ingress whose backend does not exist is reported with an Event.
    let broken = manifest(
        dir.path(),
        "broken.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: broken, namespace: gw}\n\
         spec:\n  defaultBackend:\n    service: {name: missing, port: {number: 80}}\n",
    );
    cluster.kubectl_ok(&["apply", "-f", broken.to_str().unwrap()])?;
    cluster.wait_for(Duration::from_secs(60), "the ServiceNotFound event", |c| {
        let events = c.kubectl_ok(&[
            "get",
            "events",
            "-n",
            "gw",
            "--field-selector",
            "involvedObject.name=broken",
        ])?;
        Ok(events.contains("ServiceNotFound") && events.contains("missing"))
    })?;
    let (status, body) = get(&gateway, "other.example.org", "/")?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Service gw/missing not found"), "{body}");
    cluster.kubectl_ok(&["delete", "ingress", "broken", "-n", "gw"])?;

    // No ready pod: 503 with the reason.
    cluster.kubectl_ok(&["scale", "deployment/hello", "-n", "gw", "--replicas=0"])?;
    cluster.wait_for(Duration::from_secs(60), "no endpoints", |c| {
        Ok(ready_endpoints(c)? == 0)
    })?;
    cluster.wait_for(Duration::from_secs(30), "503 from the gateway", |_| {
        Ok(get(&gateway, "hello.gw", "/")
            .is_ok_and(|(s, b)| s == 503 && b.contains("Service gw/hello has no ready endpoints")))
    })?;

    // Deleting the Service takes its EndpointSlices and Endpoints along.
    cluster.kubectl_ok(&["delete", "service", "hello", "-n", "gw"])?;
    cluster.wait_for(
        Duration::from_secs(90),
        "the endpoints to be collected",
        |c| {
            let slices = c.kubectl_ok(&[
                "get",
                "endpointslices",
                "-n",
                "gw",
                "-l",
                "kubernetes.io/service-name=hello",
                "-o",
                "name",
            ])?;
            let endpoints = c.kubectl(&["get", "endpoints", "hello", "-n", "gw"])?;
            Ok(slices.trim().is_empty() && !endpoints.status.success())
        },
    )?;
    Ok(())
}
