//! A rolling update of 10 replicas under the real kubectl never drops below
//! `replicas - maxUnavailable` ready pods: a watch follows every pod change
//! during `kubectl rollout status` and checks the count after each one. And
//! `kubectl describe` shows the controllers' Events.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Result, ensure};
use common::{Cluster, build_guests, manifest};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;

const REPLICAS: usize = 10;
/// 25 % of 10, rounded down as Kubernetes rounds maxUnavailable.
const MAX_UNAVAILABLE: usize = 2;

fn deployment(greeting: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: roll
spec:
  replicas: {REPLICAS}
  selector:
    matchLabels:
      app: roll
  strategy:
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 25%
  template:
    metadata:
      labels:
        app: roll
    spec:
      containers:
      - name: hello
        image: file:///usr/local/share/skiff/examples/hello.wasm
        args: [{greeting}]
"
    )
}

fn ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The fewest ready pods seen after any pod change, and how many changes.
#[derive(Default)]
struct Low {
    least: Option<usize>,
    changes: usize,
}

#[test]
fn rolling_update_of_ten_keeps_enough_ready_pods() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let v1 = manifest(dir.path(), "v1.yaml", &deployment("one"));
    let v2 = manifest(dir.path(), "v2.yaml", &deployment("two"));
    cluster.kubectl_ok(&["apply", "-f", v1.to_str().unwrap()])?;
    cluster.kubectl_ok(&["rollout", "status", "deployment/roll", "--timeout=180s"])?;

    // Follow every pod change from here on, in a runtime of its own.
    let low = Arc::new(Mutex::new(Low::default()));
    let runtime = tokio::runtime::Runtime::new()?;
    let kubeconfig = cluster.kubeconfig();
    let (listed_tx, listed_rx) = std::sync::mpsc::channel();
    let follower = {
        let low = low.clone();
        runtime.spawn(async move {
            let config = kube::Config::from_custom_kubeconfig(
                Kubeconfig::read_from(kubeconfig)?,
                &KubeConfigOptions::default(),
            )
            .await?;
            let api: Api<Pod> = Api::namespaced(kube::Client::try_from(config)?, "default");
            let mut events = watcher(api, watcher::Config::default().labels("app=roll")).boxed();
            let mut pods: BTreeMap<String, bool> = BTreeMap::new();
            let mut listing = BTreeMap::new();
            while let Some(event) = events.next().await {
                match event? {
                    // A (re)list: counted once complete, at InitDone.
                    watcher::Event::Init => {
                        listing.clear();
                        continue;
                    }
                    watcher::Event::InitApply(pod) => {
                        listing.insert(pod.metadata.name.clone().unwrap_or_default(), ready(&pod));
                        continue;
                    }
                    watcher::Event::InitDone => {
                        pods = std::mem::take(&mut listing);
                    }
                    watcher::Event::Apply(pod) => {
                        pods.insert(pod.metadata.name.clone().unwrap_or_default(), ready(&pod));
                    }
                    watcher::Event::Delete(pod) => {
                        pods.remove(&pod.metadata.name.clone().unwrap_or_default());
                    }
                }
                let count = pods.values().filter(|r| **r).count();
                let mut low = low.lock().unwrap();
                low.least = Some(low.least.map_or(count, |l| l.min(count)));
                low.changes += 1;
                drop(low);
                let _ = listed_tx.send(());
            }
            anyhow::Ok(())
        })
    };
    listed_rx.recv_timeout(std::time::Duration::from_secs(30))?;
    {
        let low = low.lock().unwrap();
        ensure!(
            low.least == Some(REPLICAS),
            "all {REPLICAS} ready before the update: {:?}",
            low.least
        );
    }

    cluster.kubectl_ok(&["apply", "-f", v2.to_str().unwrap()])?;
    cluster.kubectl_ok(&["rollout", "status", "deployment/roll", "--timeout=240s"])?;
    let (least, changes) = {
        let low = low.lock().unwrap();
        (low.least, low.changes)
    };
    follower.abort();
    ensure!(
        changes > REPLICAS,
        "the watch saw the rollout ({changes} changes)"
    );
    let least = least.unwrap_or(0);
    ensure!(
        least >= REPLICAS - MAX_UNAVAILABLE,
        "ready pods fell to {least}, below {REPLICAS} - {MAX_UNAVAILABLE}"
    );

    let args = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=roll",
        "-o",
        "jsonpath={.items[*].spec.containers[0].args[0]}",
    ])?;
    ensure!(
        args.split_whitespace().filter(|a| *a == "two").count() >= REPLICAS,
        "{args}"
    );

    let described = cluster.kubectl_ok(&["describe", "deployment", "roll"])?;
    ensure!(described.contains("ScalingReplicaSet"), "{described}");
    ensure!(
        described.contains("Scaled up replica set roll-"),
        "{described}"
    );
    ensure!(
        described.contains("Scaled down replica set roll-"),
        "{described}"
    );
    let sets = cluster.kubectl_ok(&["describe", "rs", "-l", "app=roll"])?;
    ensure!(
        sets.contains("SuccessfulCreate") && sets.contains("Created pod: roll-"),
        "{sets}"
    );
    Ok(())
}
