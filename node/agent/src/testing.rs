//! Test doubles: a scripted driver and an in-memory cluster that records
//! every call, with a way to wait for a condition without polling.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, PodStatus, Secret};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, ClusterError, PodChange};
use crate::driver::{
    ContainerDriver, ExitStatus, PrepareError, PreparedImage, ProcessSpec, PullRequest, RunError,
};

/// Virtual time is free under the paused clock; this only catches hangs.
pub const SAFETY_NET: Duration = Duration::from_secs(24 * 3600);

/// What one scripted attempt does.
#[derive(Debug, Clone)]
pub enum Attempt {
    /// Write `output` to stdout, run for `after`, then exit with `code`.
    Exit {
        code: i32,
        output: String,
        after: Duration,
    },
    Trap(String),
    /// Run until cancelled.
    Forever,
}

pub fn exit(code: i32) -> Attempt {
    Attempt::Exit {
        code,
        output: String::new(),
        after: Duration::ZERO,
    }
}

/// How one scripted prepare ends.
#[derive(Debug, Clone)]
pub enum Prepare {
    Ok,
    PullFails(String),
    Invalid(String),
}

/// A record of one `run` call.
#[derive(Debug, Clone)]
pub struct RunCall {
    pub image: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub at: Instant,
}

#[derive(Default)]
struct DriverScript {
    prepares: HashMap<String, VecDeque<Prepare>>,
    pulls: Vec<(String, PullRequest)>,
    attempts: HashMap<String, VecDeque<Attempt>>,
    runs: Vec<RunCall>,
}

/// A driver whose prepares and runs follow a per-image script; unscripted
/// prepares succeed and unscripted runs last until cancelled.
#[derive(Default, Clone)]
pub struct FakeDriver {
    script: Arc<Mutex<DriverScript>>,
    /// How many runs have begun.
    started: Arc<watch::Sender<usize>>,
}

impl FakeDriver {
    pub fn prepares(&self, image: &str, steps: impl IntoIterator<Item = Prepare>) {
        let mut script = self.script.lock().unwrap();
        script
            .prepares
            .entry(image.into())
            .or_default()
            .extend(steps);
    }

    pub fn attempts(&self, image: &str, steps: impl IntoIterator<Item = Attempt>) {
        let mut script = self.script.lock().unwrap();
        script
            .attempts
            .entry(image.into())
            .or_default()
            .extend(steps);
    }

    /// Every prepare call: the image and how it was to be pulled.
    pub fn pulls(&self) -> Vec<(String, PullRequest)> {
        self.script.lock().unwrap().pulls.clone()
    }

    pub fn runs(&self) -> Vec<RunCall> {
        self.script.lock().unwrap().runs.clone()
    }

    /// Waits until `count` runs have begun; panics on a hang.
    pub async fn wait_for_runs(&self, count: usize) -> Vec<RunCall> {
        let mut started = self.started.subscribe();
        let waited = tokio::time::timeout(SAFETY_NET, started.wait_for(|n| *n >= count)).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "gave up waiting for {count} runs"
        );
        self.runs()
    }
}

impl ContainerDriver for FakeDriver {
    fn prepare<'a>(
        &'a self,
        image: &'a str,
        pull: &'a PullRequest,
    ) -> BoxFuture<'a, Result<PreparedImage, PrepareError>> {
        let step = {
            let mut script = self.script.lock().unwrap();
            script.pulls.push((image.to_string(), pull.clone()));
            script.prepares.get_mut(image).and_then(VecDeque::pop_front)
        };
        let result = match step.unwrap_or(Prepare::Ok) {
            Prepare::Ok => Ok(PreparedImage::new(
                format!("sha256:{image}"),
                image.to_string(),
            )),
            Prepare::PullFails(message) => Err(PrepareError::Pull {
                image: image.into(),
                source: message.into(),
            }),
            Prepare::Invalid(message) => Err(PrepareError::Create {
                image: image.into(),
                source: message.into(),
            }),
        };
        async move { result }.boxed()
    }

    fn run<'a>(
        &'a self,
        image: &'a PreparedImage,
        mut process: ProcessSpec,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, RunError>> {
        let name = image.program::<String>().cloned().unwrap_or_default();
        let attempt = {
            let mut script = self.script.lock().unwrap();
            script.runs.push(RunCall {
                image: name.clone(),
                args: process.args.clone(),
                env: process.env.clone(),
                at: Instant::now(),
            });
            script.attempts.get_mut(&name).and_then(VecDeque::pop_front)
        };
        self.started.send_modify(|n| *n += 1);
        if let Some(report) = process.started_report.take() {
            report(None);
        }
        async move {
            match attempt.unwrap_or(Attempt::Forever) {
                Attempt::Exit {
                    code,
                    output,
                    after,
                } => {
                    let _ = process.stdout.write_all(output.as_bytes()).await;
                    tokio::select! {
                        _ = cancel.cancelled() => Ok(ExitStatus::Killed),
                        _ = tokio::time::sleep(after) => Ok(ExitStatus::Code(code)),
                    }
                }
                Attempt::Trap(message) => Ok(ExitStatus::Trap(message)),
                Attempt::Forever => {
                    cancel.cancelled().await;
                    Ok(ExitStatus::Killed)
                }
            }
        }
        .boxed()
    }
}

/// Everything the fake cluster was asked to do.
#[derive(Default, Debug, Clone)]
pub struct Recorded {
    pub statuses: Vec<(String, PodStatus)>,
    pub events: Vec<Event>,
    pub deleted: Vec<(String, String, String)>,
    pub nodes: Vec<Node>,
    pub node_status_patches: Vec<serde_json::Value>,
    /// Node names whose lease was renewed, in order.
    pub lease_renewals: Vec<String>,
}

impl Recorded {
    pub fn last_status(&self, pod: &str) -> Option<&PodStatus> {
        self.statuses
            .iter()
            .rev()
            .find(|(name, _)| name == pod)
            .map(|(_, s)| s)
    }

    pub fn event_reasons(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| e.reason.clone())
            .collect()
    }
}

/// An in-memory [`Cluster`]; the pod watch is fed by the test.
pub struct FakeCluster {
    recorded: watch::Sender<Recorded>,
    watch: Mutex<Option<mpsc::UnboundedReceiver<PodChange>>>,
    /// Secrets by `namespace/name`.
    secrets: Mutex<HashMap<String, Secret>>,
    /// ConfigMaps by `namespace/name`.
    config_maps: Mutex<HashMap<String, ConfigMap>>,
}

impl FakeCluster {
    pub fn new() -> (Arc<FakeCluster>, mpsc::UnboundedSender<PodChange>) {
        let (changes_tx, changes) = mpsc::unbounded_channel();
        let cluster = FakeCluster {
            recorded: watch::Sender::new(Recorded::default()),
            watch: Mutex::new(Some(changes)),
            secrets: Mutex::default(),
            config_maps: Mutex::default(),
        };
        (Arc::new(cluster), changes_tx)
    }

    pub fn add_secret(&self, namespace: &str, secret: Secret) {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let mut secrets = self.secrets.lock().unwrap();
        secrets.insert(format!("{namespace}/{name}"), secret);
    }

    pub fn add_config_map(&self, namespace: &str, map: ConfigMap) {
        let name = map.metadata.name.clone().unwrap_or_default();
        let mut maps = self.config_maps.lock().unwrap();
        maps.insert(format!("{namespace}/{name}"), map);
    }

    pub fn recorded(&self) -> Recorded {
        self.recorded.borrow().clone()
    }

    /// Waits until `done` holds for what was recorded; panics on a hang.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Recorded) -> bool) -> Recorded {
        let mut receiver = self.recorded.subscribe();
        let waited = tokio::time::timeout(SAFETY_NET, receiver.wait_for(|r| done(r))).await;
        match waited {
            Ok(Ok(recorded)) => recorded.clone(),
            _ => panic!("gave up waiting for {what}: {:#?}", self.recorded()),
        }
    }

    fn record(&self, change: impl FnOnce(&mut Recorded)) {
        self.recorded.send_modify(change);
    }
}

impl Cluster for FakeCluster {
    fn register_node<'a>(&'a self, node: &'a Node) -> BoxFuture<'a, Result<(), ClusterError>> {
        self.record(|r| r.nodes.push(node.clone()));
        async { Ok(()) }.boxed()
    }

    fn patch_node_status<'a>(
        &'a self,
        _name: &'a str,
        status: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        self.record(|r| r.node_status_patches.push(status));
        async { Ok(()) }.boxed()
    }

    fn renew_lease<'a>(
        &'a self,
        node_name: &'a str,
        _duration_seconds: i32,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        self.record(|r| r.lease_renewals.push(node_name.to_string()));
        async { Ok(()) }.boxed()
    }

    fn watch_pods(&self, _node_name: &str) -> BoxStream<'static, Result<PodChange, ClusterError>> {
        let changes = self
            .watch
            .lock()
            .unwrap()
            .take()
            .expect("one watch per test");
        futures::stream::unfold(changes, |mut changes| async move {
            let change = changes.recv().await?;
            Some((Ok(change), changes))
        })
        .boxed()
    }

    fn patch_pod_status<'a>(
        &'a self,
        _namespace: &'a str,
        name: &'a str,
        status: &'a PodStatus,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        self.record(|r| r.statuses.push((name.to_string(), status.clone())));
        async { Ok(()) }.boxed()
    }

    fn delete_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        uid: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        self.record(|r| r.deleted.push((namespace.into(), name.into(), uid.into())));
        async { Ok(()) }.boxed()
    }

    fn get_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, ClusterError>> {
        let secret = self
            .secrets
            .lock()
            .unwrap()
            .get(&format!("{namespace}/{name}"))
            .cloned();
        async move { Ok(secret) }.boxed()
    }

    fn get_config_map<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, ClusterError>> {
        let map = self
            .config_maps
            .lock()
            .unwrap()
            .get(&format!("{namespace}/{name}"))
            .cloned();
        async move { Ok(map) }.boxed()
    }

    fn create_event<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), ClusterError>> {
        self.record(|r| r.events.push(event.clone()));
        async { Ok(()) }.boxed()
    }
}
