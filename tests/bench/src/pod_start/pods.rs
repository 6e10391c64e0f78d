//! Pods as the thing being started: create through the API, seen Ready through one
//! shared watch, deleted and seen gone the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use tokio::sync::oneshot;

use super::runner::Starter;
use crate::report::Samples;

pub const NAMESPACE: &str = "skiff-bench";
pub const OCI_NAMESPACE: &str = "skiff-bench-oci";

/// Who is waiting for which pod to become Ready or to disappear.
#[derive(Default)]
struct Waiters {
    ready: HashMap<String, oneshot::Sender<Instant>>,
    gone: HashMap<String, oneshot::Sender<Instant>>,
    /// When each pod's create was sent and first seen bound to a node, for the
    /// create → scheduled → Ready breakdown.
    created: HashMap<String, Instant>,
    scheduled: HashMap<String, Instant>,
    to_scheduled: Vec<Duration>,
    scheduled_to_ready: Vec<Duration>,
}

impl Waiters {
    fn seen(&mut self, pod: &Pod, now: Instant) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let bound = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
        if bound && self.created.contains_key(&name) {
            self.scheduled.entry(name.clone()).or_insert(now);
        }
        if !is_ready(pod) {
            return;
        }
        if let Some(tx) = self.ready.remove(&name) {
            let _ = tx.send(now);
        }
        if let (Some(created), Some(scheduled)) =
            (self.created.remove(&name), self.scheduled.remove(&name))
        {
            self.to_scheduled.push(scheduled - created);
            self.scheduled_to_ready.push(now - scheduled);
        }
    }
}

/// Starts pods running `image` and waits for them through one watch on the
/// namespace, so waiting costs the API server one stream, not a poll per pod.
pub struct PodStarter {
    api: Api<Pod>,
    image: String,
    /// For OCI pods: `runtimeClassName: oci` and the command the image runs.
    oci_command: Option<Vec<String>>,
    timeout: Duration,
    waiters: Arc<Mutex<Waiters>>,
    watch_task: tokio::task::JoinHandle<()>,
}

impl PodStarter {
    /// Creates the namespace and starts the watch; returns once the watch has listed.
    pub async fn new(client: kube::Client, image: String, timeout: Duration) -> Result<Self> {
        Self::in_namespace(client, NAMESPACE, image, None, timeout).await
    }

    /// Pods of a container image on the OCI driver, running `command`, in
    /// their own namespace (so their watch sees only them).
    pub async fn oci(
        client: kube::Client,
        image: String,
        command: Vec<String>,
        timeout: Duration,
    ) -> Result<Self> {
        Self::in_namespace(client, OCI_NAMESPACE, image, Some(command), timeout).await
    }

    async fn in_namespace(
        client: kube::Client,
        namespace_name: &str,
        image: String,
        oci_command: Option<Vec<String>>,
        timeout: Duration,
    ) -> Result<Self> {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace_name},
        }))?;
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .context("creating the benchmark namespace")?;
        let api: Api<Pod> = Api::namespaced(client, namespace_name);
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let (listed_tx, listed_rx) = oneshot::channel();
        let watch_task = tokio::spawn(follow(api.clone(), waiters.clone(), listed_tx));
        tokio::time::timeout(Duration::from_secs(30), listed_rx)
            .await
            .context("the pod watch did not list within 30 s")?
            .context("the pod watch ended before listing")?;
        Ok(PodStarter {
            api,
            image,
            oci_command,
            timeout,
            waiters,
            watch_task,
        })
    }

    /// Where create → Ready went, over every pod started so far.
    pub fn breakdown(&self) -> String {
        let waiters = self.waiters.lock().unwrap();
        format!(
            "create → bound to the node: {}; bound → Ready: {}",
            Samples::new(waiters.to_scheduled.clone()).summary(),
            Samples::new(waiters.scheduled_to_ready.clone()).summary()
        )
    }

    fn pod(&self, name: &str) -> Result<Pod> {
        if let Some(command) = &self.oci_command {
            return Ok(serde_json::from_value(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "skiff-bench-oci"}},
                "spec": {
                    "restartPolicy": "Always",
                    "runtimeClassName": "oci",
                    // The command does not handle SIGTERM: do not wait 30 s for it.
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "main", "image": self.image, "command": command}],
                },
            }))?);
        }
        Ok(serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "skiff-bench"}},
            "spec": {
                "restartPolicy": "Always",
                "containers": [{"name": "hello", "image": self.image}],
            },
        }))?)
    }

    async fn wait(&self, rx: oneshot::Receiver<Instant>, what: &str) -> Result<Instant> {
        tokio::time::timeout(self.timeout, rx)
            .await
            .map_err(|_| anyhow!("{what}: not seen within {:?}", self.timeout))?
            .map_err(|_| anyhow!("{what}: the pod watch stopped"))
    }
}

impl Drop for PodStarter {
    fn drop(&mut self) {
        self.watch_task.abort();
    }
}

impl Starter for PodStarter {
    type Running = String;

    async fn start(&self, name: String) -> Result<(Instant, String)> {
        let pod = self.pod(&name)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = self.waiters.lock().unwrap();
            waiters.ready.insert(name.clone(), tx);
            waiters.created.insert(name.clone(), Instant::now());
        }
        self.api
            .create(&PostParams::default(), &pod)
            .await
            .with_context(|| format!("creating pod {name}"))?;
        let ready_at = self.wait(rx, &format!("pod {name} Ready")).await?;
        Ok((ready_at, name))
    }

    async fn stop(&self, name: String) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().gone.insert(name.clone(), tx);
        self.api
            .delete(&name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting pod {name}"))?;
        self.wait(rx, &format!("pod {name} gone")).await?;
        Ok(())
    }
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Feeds the watch's events to the waiters until the starter is dropped. The instant
/// is taken as the event arrives, so a waiter's scheduling delay is not counted.
async fn follow(api: Api<Pod>, waiters: Arc<Mutex<Waiters>>, listed: oneshot::Sender<()>) {
    let mut listed = Some(listed);
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
    while let Some(event) = events.next().await {
        let now = Instant::now();
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                waiters.lock().unwrap().seen(&pod, now);
            }
            Ok(watcher::Event::Delete(pod)) => {
                let name = pod.metadata.name.unwrap_or_default();
                if let Some(tx) = waiters.lock().unwrap().gone.remove(&name) {
                    let _ = tx.send(now);
                }
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(tx) = listed.take() {
                    let _ = tx.send(());
                }
            }
            Ok(watcher::Event::Init) => {}
            Err(err) => {
                eprintln!("bench: pod watch error (it retries): {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
