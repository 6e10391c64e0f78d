//! OCI pods as applications use them, end to end with the real kubectl and the
//! real Docker daemon: volumes shared by a pod's containers, probes, the
//! `securityContext`, a Deployment behind a Service reached through the node
//! gateway next to a Wasm Deployment, and a node whose engine is down.
//!
//! Skipped (with the reason printed) when Docker is not reachable, unless `CI`
//! is set: then it fails. The engine-down test needs no Docker.

mod common;
mod oci;
#[path = "../node/wasm/tests/registry/mod.rs"]
mod registry;

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use common::http::get;
use common::{Cluster, build_guests, manifest};
use oci::{Cleanup, docker_available, pod, push_test_image};
use registry::Registry;

#[test]
fn volumes_probes_and_security_context_of_an_oci_pod() -> Result<()> {
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

    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\ndata:\n  text: hello-from-a-configmap\n";
    let path = manifest(dir.path(), "config.yaml", config);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    // The writer runs as 1000:3000 on a read-only root and serves /www on 8080;
    // the reader (root) reads what the writer put in the shared emptyDir. The
    // writer's startup probe is a tcpSocket and its readiness an httpGet, both
    // to the pod IP (readiness counts only once the startup probe passed);
    // the reader's readiness an exec of `cat` on a file only its own running
    // container has (a fresh container from the image would not).
    let body = format!(
        r#"  runtimeClassName: oci
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
  volumes:
  - name: shared
    emptyDir: {{}}
  - name: conf
    configMap:
      name: greeting
  containers:
  - name: writer
    image: {image}
    command: ["sh", "-c", "echo from-the-writer > /shared/note; echo ids $(id -u) $(id -g); touch /rootfs-file && echo root-writable || echo root-read-only; echo env $GREETING; httpd -f -p 8080 -h /www"]
    env:
    - name: GREETING
      valueFrom:
        configMapKeyRef:
          name: greeting
          key: text
    securityContext:
      readOnlyRootFilesystem: true
      capabilities:
        drop: ["ALL"]
    volumeMounts:
    - name: shared
      mountPath: /shared
    readinessProbe:
      httpGet:
        path: /index.html
        port: 8080
      periodSeconds: 1
    startupProbe:
      tcpSocket:
        port: 8080
      periodSeconds: 1
      failureThreshold: 120
  - name: reader
    image: {image}
    command: ["sh", "-c", "echo alive > /tmp/alive; while true; do cat /shared/note /conf/text; echo from-env $text; sleep 1; done"]
    envFrom:
    - configMapRef:
        name: greeting
    securityContext:
      runAsUser: 0
      runAsGroup: 0
    volumeMounts:
    - name: shared
      mountPath: /shared
    - name: conf
      mountPath: /conf
    readinessProbe:
      exec:
        command: ["cat", "/tmp/alive"]
      periodSeconds: 1
"#
    );
    let yaml = pod("volumes", &body);
    let path = manifest(dir.path(), "volumes.yaml", &yaml);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    let privileged = pod(
        "privileged",
        &format!(
            "  runtimeClassName: oci\n  containers:\n  - name: main\n    image: {image}\n    command: [\"sleep\", \"1000\"]\n    securityContext:\n      privileged: true\n"
        ),
    );
    let path = manifest(dir.path(), "privileged.yaml", &privileged);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;

    // Every probe kind passes (tcpSocket, httpGet, exec): the pod is Ready.
    cluster.wait_field(
        &["pod", "volumes"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    )?;
    let writer = cluster.kubectl_ok(&["logs", "volumes", "-c", "writer"])?;
    assert!(writer.contains("ids 1000 3000\n"), "{writer}");
    assert!(writer.contains("root-read-only\n"), "{writer}");
    assert!(writer.contains("env hello-from-a-configmap\n"), "{writer}");
    cluster.wait_for(Duration::from_secs(60), "the reader's lines", |c| {
        let logs = c.kubectl_ok(&["logs", "volumes", "-c", "reader"])?;
        Ok(logs.contains("from-the-writer\nhello-from-a-configmap")
            && logs.contains("from-env hello-from-a-configmap\n"))
    })?;
    let restarts = cluster.jsonpath(
        &["pod", "volumes"],
        "{.status.containerStatuses[*].restartCount}",
    )?;
    assert_eq!(restarts, "0 0", "neither container restarted");

    // The containers' ids are the engine's.
    let ids = cluster.jsonpath(
        &["pod", "volumes"],
        "{.status.containerStatuses[*].containerID}",
    )?;
    for id in ids.split_whitespace() {
        let docker_id = id
            .strip_prefix("docker://")
            .with_context(|| format!("containerID {id:?} should be docker://…"))?;
        let out = Command::new("docker")
            .args(["inspect", "--format", "{{.State.Running}}", docker_id])
            .output()?;
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true", "{id}");
    }

    // A privileged container is refused, saying which field.
    cluster.wait_for(Duration::from_secs(60), "the privileged refusal", |c| {
        let status = c.jsonpath(&["pod", "privileged"], "{.status.containerStatuses[0]}")?;
        Ok(status.contains("securityContext.privileged"))
    })?;
    Ok(())
}

#[test]
fn working_dir_anywhere_file_sub_path_and_the_pods_own_ip_in_the_downward_api() -> Result<()> {
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

    let config =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  app.conf: mode=fast\n";
    let path = manifest(dir.path(), "config.yaml", config);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    // Every IP the pod shows while it starts, as `kubectl get -w` prints them.
    let mut watch = Command::new("kubectl")
        .args([
            "get",
            "pods",
            "--watch",
            "-o",
            "jsonpath={.metadata.name} ip={.status.podIP}{\"\\n\"}",
        ])
        .env("KUBECONFIG", cluster.kubeconfig())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // The working directories are in no volume and not in the image: the
    // runtime makes them (also on a read-only root). The config file comes in
    // through a subPath naming one key's file.
    let body = format!(
        r#"  runtimeClassName: oci
  volumes:
  - name: conf
    configMap:
      name: app
  containers:
  - name: main
    image: {image}
    workingDir: /srv/app/work
    command: ["sh", "-c", "echo cwd $(pwd); echo ip $MY_IP ips $MY_IPS host $MY_HOST; echo conf $(cat /etc/app.conf); echo listed $(ls /srv); sleep 3600"]
    env:
    - name: MY_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    - name: MY_IPS
      valueFrom:
        fieldRef:
          fieldPath: status.podIPs
    - name: MY_HOST
      valueFrom:
        fieldRef:
          fieldPath: status.hostIP
    volumeMounts:
    - name: conf
      mountPath: /etc/app.conf
      subPath: app.conf
  - name: readonly
    image: {image}
    workingDir: /var/lib/state
    command: ["sh", "-c", "echo cwd $(pwd); sleep 3600"]
    securityContext:
      readOnlyRootFilesystem: true
"#
    );
    let path = manifest(dir.path(), "placed.yaml", &pod("placed", &body));
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    cluster.wait_field(&["pod", "placed"], "{.status.phase}", "Running")?;

    let pod_ip = cluster.jsonpath(&["pod", "placed"], "{.status.podIP}")?;
    let host_ip = cluster.jsonpath(&["pod", "placed"], "{.status.hostIP}")?;
    let pod_ips = cluster.jsonpath(&["pod", "placed"], "{.status.podIPs[*].ip}")?;
    assert!(pod_ip.parse::<std::net::IpAddr>().is_ok(), "{pod_ip:?}");
    assert_ne!(pod_ip, host_ip, "the pod has an address of its own");
    assert_eq!(pod_ips, pod_ip);
    cluster.wait_for(Duration::from_secs(60), "the containers' lines", |c| {
        let main = c.kubectl_ok(&["logs", "placed", "-c", "main"])?;
        let readonly = c.kubectl_ok(&["logs", "placed", "-c", "readonly"])?;
        Ok(main.contains("listed app") && readonly.contains("cwd"))
    })?;
    let main = cluster.kubectl_ok(&["logs", "placed", "-c", "main"])?;
    assert!(main.contains("cwd /srv/app/work\n"), "{main}");
    assert!(
        main.contains(&format!("ip {pod_ip} ips {pod_ip} host {host_ip}\n")),
        "the downward API gives the pod's own address: {main}"
    );
    assert!(main.contains("conf mode=fast\n"), "{main}");
    let readonly = cluster.kubectl_ok(&["logs", "placed", "-c", "readonly"])?;
    assert_eq!(readonly, "cwd /var/lib/state\n");

    // The pod never showed an address it did not keep (the node's, say).
    let _ = watch.kill();
    let mut seen = String::new();
    watch
        .stdout
        .take()
        .context("watch output")?
        .read_to_string(&mut seen)?;
    let _ = watch.wait();
    let ips: Vec<&str> = seen
        .lines()
        .filter_map(|line| line.strip_prefix("placed ip="))
        .filter(|ip| !ip.is_empty())
        .collect();
    assert!(!ips.is_empty(), "the watch saw the pod: {seen}");
    assert!(ips.iter().all(|ip| *ip == pod_ip), "{seen}");

    // A relative workingDir cannot be honoured: the container is not started.
    let body = format!(
        "  runtimeClassName: oci\n  containers:\n  - name: main\n    image: {image}\n    workingDir: relative/dir\n    command: [\"sleep\", \"3600\"]\n"
    );
    let path = manifest(dir.path(), "relative.yaml", &pod("relative", &body));
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    cluster.wait_for(Duration::from_secs(60), "the relative workingDir refused", |c| {
        let waiting = c.jsonpath(&["pod", "relative"],
            "{.status.containerStatuses[0].state.waiting.reason} {.status.containerStatuses[0].state.waiting.message}",
        )?;
        Ok(waiting.starts_with("CreateContainerConfigError")
            && waiting.contains("must be an absolute path"))
    })?;
    Ok(())
}

const MIXED: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: mixed
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: mixed
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: httpd
          image: IMAGE
          command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
          ports:
            - name: http
              containerPort: 8080
          readinessProbe:
            httpGet: {path: /, port: 8080}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: mixed
spec:
  selector: {app: web}
  ports:
    - port: 80
      targetPort: http
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  namespace: mixed
spec:
  replicas: 1
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
          env:
            - name: POD_NAME
              value: wasm
---
apiVersion: v1
kind: Service
metadata:
  name: hello
  namespace: mixed
spec:
  selector: {app: hello}
  ports:
    - port: 80
      targetPort: http
"#;

#[test]
fn an_oci_deployment_behind_a_service_next_to_a_wasm_one() -> Result<()> {
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
    let path = manifest(dir.path(), "mixed.yaml", &MIXED.replace("IMAGE", &image));
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;

    for deployment in ["web", "hello"] {
        cluster.kubectl_ok(&[
            "rollout",
            "status",
            "-n",
            "mixed",
            &format!("deployment/{deployment}"),
            "--timeout=120s",
        ])?;
    }
    // One namespace, two drivers: docker:// ids for the image, wasm:// for the artifact.
    let ids = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "mixed",
        "-o",
        "jsonpath={range .items[*]}{.metadata.labels.app} {.status.containerStatuses[0].containerID}{\"\\n\"}{end}",
    ])?;
    let mut web = 0;
    for line in ids.lines() {
        match line.split_once(' ') {
            Some(("web", id)) => {
                assert!(id.starts_with("docker://"), "{line}");
                web += 1;
            }
            Some(("hello", id)) => assert!(id.starts_with("wasm://"), "{line}"),
            _ => panic!("unexpected pod line {line:?}"),
        }
    }
    assert_eq!(web, 2, "{ids}");

    // Both Services answer through the node gateway.
    let gateway = cluster.gateway.clone();
    cluster.wait_for(Duration::from_secs(60), "web through the gateway", |_| {
        Ok(get(&gateway, "web.mixed", "/")
            .is_ok_and(|(s, b)| s == 200 && b.contains("hello from the skiff test image")))
    })?;
    let (status, body) = get(&gateway, "hello.mixed", "/x")?;
    assert_eq!(
        (status, body.as_str()),
        (200, "Hello from wasm!\npath: /x\n")
    );
    // Every request to the OCI Service is answered (both replicas serve).
    for _ in 0..10 {
        let (status, body) = get(&gateway, "web.mixed", "/index.html")?;
        assert_eq!(status, 200, "{body}");
    }
    Ok(())
}

#[test]
fn a_node_whose_engine_is_down_runs_wasm_pods_and_says_so() -> Result<()> {
    build_guests();
    let dir = tempfile::tempdir()?;
    // A socket file nobody listens on: the engine "exists" but does not answer.
    let socket = dir.path().join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket)?);
    let host = format!("unix://{}", socket.display());
    let cluster = Cluster::start_with_env(&[("DOCKER_HOST", &host)])?;

    let oci_pod = pod(
        "container",
        "  runtimeClassName: oci\n  containers:\n  - name: main\n    image: 127.0.0.1:9/skiff-test/busybox:1\n",
    );
    let wasm_pod = pod(
        "function",
        "  containers:\n  - name: main\n    image: file:///usr/local/share/skiff/examples/hello-http.wasm\n    ports:\n    - containerPort: 8080\n",
    );
    for (name, yaml) in [("container", &oci_pod), ("function", &wasm_pod)] {
        let path = manifest(dir.path(), &format!("{name}.yaml"), yaml);
        cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    }
    cluster.wait_field(&["pod", "function"], "{.status.phase}", "Running")?;
    cluster.wait_for(Duration::from_secs(60), "CreateContainerError", |c| {
        let reason = c.jsonpath(
            &["pod", "container"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        )?;
        Ok(reason == "CreateContainerError")
    })?;
    let message = cluster.jsonpath(
        &["pod", "container"],
        "{.status.containerStatuses[0].state.waiting.message}",
    )?;
    assert!(
        message.contains("the OCI runtime is unavailable"),
        "{message}"
    );
    cluster.wait_for(Duration::from_secs(30), "the Failed event", |c| {
        let events = c.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=container,reason=Failed",
            "-o",
            "jsonpath={.items[*].message}",
        ])?;
        Ok(events.contains("the OCI runtime is unavailable"))
    })?;
    // The driver's condition comes with the node's heartbeat (every 10 s).
    let mut conditions = String::new();
    cluster.wait_for(Duration::from_secs(60), "OCIRuntimeReady=False", |c| {
        conditions = c.jsonpath(
            &["nodes"],
            "{range .items[0].status.conditions[*]}{.type}={.status}/{.reason} {end}",
        )?;
        Ok(conditions.contains("OCIRuntimeReady=False/DockerUnreachable"))
    })?;
    assert!(conditions.contains("Ready=True/"), "{conditions}");
    Ok(())
}
