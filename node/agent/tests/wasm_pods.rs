//! The agent running real Wasm guests (built from `examples/`) through the real
//! `skiff-wasm` runtime, against an in-memory stand-in for the API server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, EmptyDirVolumeSource, Event, Node, Pod, PodSpec,
    PodStatus, ResourceRequirements, Secret, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_agent::{AgentConfig, Cluster, ClusterError, NodeAgent, PodChange};
use skiff_wasm::{RuntimeConfig, WasmRuntime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Safety net only: no assertion depends on timing.
const PATIENCE: Duration = Duration::from_secs(120);

/// Builds the example guests once (through `scripts/build-guests`) and returns their directory.
fn guests() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let examples_target = root.join("examples/target");
    let dest = examples_target.join("skiff-agent-tests");
    let status = std::process::Command::new(root.join("scripts/build-guests"))
        .env("SKIFF_EXAMPLES_DIR", &dest)
        // Never the outer build's target dir: `cargo test` holds its lock.
        .env("CARGO_TARGET_DIR", &examples_target)
        .status()
        .expect("run scripts/build-guests");
    assert!(status.success(), "scripts/build-guests failed: {status}");
    dest
}

#[derive(Default, Clone, Debug)]
struct Seen {
    statuses: HashMap<String, PodStatus>,
    nodes: Vec<Node>,
}

/// Records what the agent writes; the pod watch is fed by the test.
struct Recorder {
    seen: watch::Sender<Seen>,
    changes: Mutex<Option<mpsc::UnboundedReceiver<PodChange>>>,
}

impl Recorder {
    async fn wait_for(&self, what: &str, done: impl Fn(&Seen) -> bool) -> Seen {
        let mut seen = self.seen.subscribe();
        match tokio::time::timeout(PATIENCE, seen.wait_for(|s| done(s))).await {
            Ok(Ok(seen)) => seen.clone(),
            _ => panic!("gave up waiting for {what}: {:#?}", self.seen.borrow()),
        }
    }
}

impl Cluster for Recorder {
    fn register_node<'a>(&'a self, node: &'a Node) -> BoxFuture<'a, Result<(), ClusterError>> {
        self.seen.send_modify(|s| s.nodes.push(node.clone()));
        async { Ok(()) }.boxed()
    }

    fn patch_node_status<'a>(
        &'a self,
        _name: &'a str,
        _status: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        async { Ok(()) }.boxed()
    }

    fn watch_pods(&self, _node: &str) -> BoxStream<'static, Result<PodChange, ClusterError>> {
        let changes = self.changes.lock().unwrap().take().expect("one watch");
        futures::stream::unfold(changes, |mut changes| async move {
            Some((Ok(changes.recv().await?), changes))
        })
        .boxed()
    }

    fn patch_pod_status<'a>(
        &'a self,
        _namespace: &'a str,
        name: &'a str,
        status: &'a PodStatus,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        self.seen
            .send_modify(|s| drop(s.statuses.insert(name.to_string(), status.clone())));
        async { Ok(()) }.boxed()
    }

    fn delete_pod<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
        _uid: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        async { Ok(()) }.boxed()
    }

    fn get_secret<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, ClusterError>> {
        async { Ok(None) }.boxed()
    }

    fn get_config_map<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, ClusterError>> {
        async { Ok(None) }.boxed()
    }

    fn renew_lease<'a>(
        &'a self,
        _node_name: &'a str,
        _duration_seconds: i32,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        async { Ok(()) }.boxed()
    }

    fn create_event<'a>(&'a self, _event: &'a Event) -> BoxFuture<'a, Result<(), ClusterError>> {
        async { Ok(()) }.boxed()
    }
}

fn container(name: &str, image: &str, args: &[&str]) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        args: Some(args.iter().map(|a| a.to_string()).collect()),
        ..Container::default()
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// A request with a `Host` header, as an HTTP function needs.
async fn http_get_host(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_guests_run_to_completion_with_kubernetes_exit_states() {
    let guests = guests();
    let image = format!(
        "file://{}",
        guests
            .join("exit-code-p1.wasm")
            .canonicalize()
            .unwrap()
            .display()
    );
    let dir = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(RuntimeConfig {
        cache_dir: dir.path().join("cache"),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder {
        seen: watch::Sender::new(Seen::default()),
        changes: Mutex::new(Some(changes)),
    });
    let config = AgentConfig {
        node_name: "wasm-node".into(),
        data_dir: dir.path().join("node"),
        ..AgentConfig::default()
    };
    let agent = NodeAgent::with_cluster(config, recorder.clone(), Arc::new(runtime));
    let cancel = CancellationToken::new();
    let running = tokio::spawn(agent.run(cancel.clone()));

    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("job".into()),
            namespace: Some("default".into()),
            uid: Some("u-job".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            containers: vec![
                container("ok", &image, &["0"]),
                container("fail", &image, &["3"]),
                container("crash", &image, &["panic"]),
            ],
            ..PodSpec::default()
        }),
        status: None,
    };
    changes_tx.send(PodChange::Applied(Box::new(pod))).unwrap();
    let seen = recorder
        .wait_for("a final phase", |s| {
            let phase = s.statuses.get("job").and_then(|p| p.phase.as_deref());
            matches!(phase, Some("Failed" | "Succeeded"))
        })
        .await;
    let status = &seen.statuses["job"];
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    let by_name: HashMap<_, _> = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let terminated = |name: &str| {
        let state = by_name[name].state.as_ref().unwrap();
        state.terminated.clone().expect("terminated")
    };
    assert_eq!(
        (
            terminated("ok").exit_code,
            terminated("ok").reason.as_deref()
        ),
        (0, Some("Completed"))
    );
    assert_eq!(
        (
            terminated("fail").exit_code,
            terminated("fail").reason.as_deref()
        ),
        (3, Some("Error"))
    );
    assert_eq!(terminated("crash").exit_code, 134, "a trap");
    assert!(by_name["ok"].image_id.starts_with("sha256:"));

    let port = seen.nodes[0]
        .status
        .as_ref()
        .unwrap()
        .daemon_endpoints
        .as_ref()
        .unwrap();
    let port = port.kubelet_endpoint.as_ref().unwrap().port;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let response = http_get(addr, "/containerLogs/default/job/fail").await;
    assert!(
        response.ends_with("\r\n\r\nexiting with code 3\n"),
        "{response}"
    );

    cancel.cancel();
    tokio::time::timeout(PATIENCE, running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

fn pod(name: &str, restart: &str, containers: Vec<Container>, volumes: Vec<Volume>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("u-{name}")),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(restart.into()),
            containers,
            volumes: Some(volumes).filter(|v| !v.is_empty()),
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn limited(mut container: Container, limits: &[(&str, &str)]) -> Container {
    container.resources = Some(ResourceRequirements {
        limits: Some(
            limits
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect(),
        ),
        ..ResourceRequirements::default()
    });
    container
}

/// Sends `count` requests one after another; returns how many answered 200 and
/// the latencies, sorted.
async fn probe_neighbour(addr: SocketAddr, count: usize) -> (usize, Vec<Duration>) {
    let mut ok = 0;
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = std::time::Instant::now();
        let response = tokio::time::timeout(PATIENCE, http_get_host(addr, "/hello"))
            .await
            .expect("the neighbour answers");
        latencies.push(started.elapsed());
        if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
            ok += 1;
        } else {
            eprintln!("the neighbour answered: {response:?}");
        }
    }
    latencies.sort();
    (ok, latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Hostile guests next to an HTTP function on one node: one spins forever under
/// `limits.cpu: 100m`, one allocates without bound under `limits.memory`, one fills
/// an emptyDir with a `sizeLimit`, one reads files outside its volumes. Each is
/// stopped or refused at its limit, and the neighbour answers every request
/// (its latency is printed, not asserted: the machine is shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_are_contained_and_the_neighbour_keeps_serving() {
    let guests = guests();
    let image = |name: &str| {
        let path = guests.join(name).canonicalize().unwrap();
        format!("file://{}", path.display())
    };
    let dir = tempfile::tempdir().unwrap();
    let runtime = WasmRuntime::new(RuntimeConfig {
        cache_dir: dir.path().join("cache"),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder {
        seen: watch::Sender::new(Seen::default()),
        changes: Mutex::new(Some(changes)),
    });
    let config = AgentConfig {
        node_name: "wasm-node".into(),
        data_dir: dir.path().join("node"),
        ..AgentConfig::default()
    };
    let agent = NodeAgent::with_cluster(config, recorder.clone(), Arc::new(runtime));
    let ports = agent.ports();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(agent.run(cancel.clone()));

    let mut server = container("web", &image("hello-http.wasm"), &[]);
    server.ports = Some(vec![ContainerPort {
        container_port: 8080,
        ..ContainerPort::default()
    }]);
    changes_tx
        .send(PodChange::Applied(Box::new(pod(
            "neighbour",
            "Always",
            vec![server],
            vec![],
        ))))
        .unwrap();
    let addr = loop {
        if let Some(entries) = ports.of_pod("default", "neighbour") {
            break SocketAddr::new(entries[0].host_ip.parse().unwrap(), entries[0].host_port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (ok, alone) = probe_neighbour(addr, 100).await;
    assert_eq!(ok, 100, "the neighbour serves on its own");

    let envdump = image("envdump.wasm");
    let hostile = [
        pod(
            "spinner",
            "Never",
            vec![limited(
                container("spin", &envdump, &["--spin"]),
                &[("cpu", "100m")],
            )],
            vec![],
        ),
        pod(
            "hog",
            "Never",
            vec![limited(
                container("alloc", &envdump, &["--alloc-mib", "4096"]),
                &[("memory", "64Mi")],
            )],
            vec![],
        ),
        pod(
            "filler",
            "Never",
            vec![Container {
                volume_mounts: Some(vec![VolumeMount {
                    name: "scratch".into(),
                    mount_path: "/scratch".into(),
                    ..VolumeMount::default()
                }]),
                ..limited(
                    container("fill", &envdump, &["--fill", "/scratch", "--sleep"]),
                    &[("cpu", "200m")],
                )
            }],
            vec![Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity("2Mi".into())),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            }],
        ),
        pod(
            "escaper",
            "Never",
            vec![container(
                "escape",
                &envdump,
                &["--read", "/etc/passwd", "--read", "/../../etc/hostname"],
            )],
            vec![],
        ),
    ];
    for pod in hostile {
        changes_tx.send(PodChange::Applied(Box::new(pod))).unwrap();
    }
    recorder
        .wait_for("the spinner to run", |s| {
            s.statuses.get("spinner").and_then(|p| p.phase.as_deref()) == Some("Running")
        })
        .await;
    let (ok, beside) = probe_neighbour(addr, 200).await;
    println!(
        "neighbour latency alone: p50 {:?} p99 {:?}; beside hostile guests: p50 {:?} p99 {:?}",
        percentile(&alone, 0.5),
        percentile(&alone, 0.99),
        percentile(&beside, 0.5),
        percentile(&beside, 0.99),
    );
    assert_eq!(
        ok, 200,
        "the neighbour answers every request while hostile guests run"
    );

    let seen = recorder
        .wait_for("the hog, the filler and the escaper to end", |s| {
            let phase = |name: &str| s.statuses.get(name).and_then(|p| p.phase.as_deref());
            ["hog", "filler", "escaper"]
                .iter()
                .all(|name| matches!(phase(name), Some("Failed" | "Succeeded")))
        })
        .await;
    let terminated = |pod: &str| {
        let status = &seen.statuses[pod].container_statuses.as_ref().unwrap()[0];
        status.state.as_ref().unwrap().terminated.clone()
    };
    let hog = terminated("hog").expect("the hog was stopped");
    assert_eq!(
        (hog.reason.as_deref(), hog.exit_code),
        (Some("OOMKilled"), 137)
    );
    let filler = &seen.statuses["filler"];
    assert_eq!(
        (filler.phase.as_deref(), filler.reason.as_deref()),
        (Some("Failed"), Some("Evicted")),
        "{filler:#?}"
    );
    assert!(
        filler
            .message
            .as_deref()
            .is_some_and(|m| m.contains("EmptyDir volume \"scratch\"")),
        "{filler:#?}"
    );
    assert_eq!(seen.statuses["spinner"].phase.as_deref(), Some("Running"));

    let port = seen.nodes[0]
        .status
        .as_ref()
        .unwrap()
        .daemon_endpoints
        .as_ref()
        .unwrap();
    let port = port.kubelet_endpoint.as_ref().unwrap().port;
    let agent_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = http_get(agent_addr, "/containerLogs/default/escaper/escape").await;
    assert!(log.contains("cannot read /etc/passwd"), "{log}");
    assert!(log.contains("cannot read /../../etc/hostname"), "{log}");
    assert!(
        !log.contains("bytes\n"),
        "nothing outside a volume was read: {log}"
    );
    let (ok, _) = probe_neighbour(addr, 20).await;
    assert_eq!(ok, 20, "the neighbour still serves");

    cancel.cancel();
    tokio::time::timeout(PATIENCE, running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
