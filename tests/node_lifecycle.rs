//! In-process cluster (store, API server, scheduler, controllers) with fake
//! nodes: a node that stops renewing its Lease in the middle of a rollout goes
//! Unknown, is tainted unreachable, loses its pods after their
//! tolerationSeconds, and the Deployment finishes on the nodes that are left.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct InProcess {
    client: kube::Client,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start(node_grace: Duration) -> Result<InProcess> {
    let dir = tempfile::tempdir()?;
    let cancel = CancellationToken::new();
    let store =
        skiff_store::Store::open(skiff_store::StoreConfig::new(dir.path().join("store"))).await?;
    let api = skiff_apiserver::ApiServer::new(store, cancel.child_token());
    api.bootstrap().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { api.serve(listener).await });
    let client = kube::Client::try_from(kube::Config::new(url.parse()?))?;
    let scheduler = skiff_scheduler::Scheduler::new(client.clone());
    tokio::spawn(scheduler.run(cancel.child_token()));
    let config = skiff_controllers::ControllersConfig {
        node_grace,
        ..Default::default()
    };
    let controllers = skiff_controllers::Controllers::with_config(client.clone(), config);
    tokio::spawn(controllers.run(cancel.child_token()));
    Ok(InProcess {
        client,
        cancel,
        _dir: dir,
    })
}

/// A fake node: its object (Ready, with capacity) and a Lease renewed every
/// 300 ms until `alive` is cancelled.
async fn fake_node(client: &kube::Client, name: &str, alive: CancellationToken) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    nodes.create(&PostParams::default(), &node).await?;
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
        "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": now,
                        "lastTransitionTime": now, "reason": "KubeletReady"}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                 "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}
    }))?;
    leases.create(&PostParams::default(), &lease).await?;
    let name = name.to_string();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = alive.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
            let renew = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            let patch = json!({"spec": {"renewTime": renew}});
            let _ = leases
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
        }
    });
    Ok(())
}

/// The kubelets of the live nodes: bound pods become Running and Ready, and
/// pods being deleted are let go at once. Pods on `dead` nodes are left as
/// they are, as a node that is gone would leave them.
fn fake_kubelets(client: kube::Client, dead: Arc<std::sync::Mutex<BTreeSet<String>>>) {
    tokio::spawn(async move {
        let api: Api<Pod> = Api::all(client.clone());
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else {
                continue;
            };
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            if dead.lock().unwrap().contains(&node) {
                continue;
            }
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            if pod.metadata.deletion_timestamp.is_some() {
                let _ = pods
                    .delete(&name, &DeleteParams::default().grace_period(0))
                    .await;
                continue;
            }
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if !running {
                let now = jiff::Timestamp::now().to_string();
                let status = json!({"status": {"phase": "Running", "startTime": now,
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                let _ = pods
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
        }
    });
}

async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn deployment(image: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 6,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "web", "image": image,
                        "resources": {"requests": {"cpu": "100m"}}}],
                    "tolerations": [
                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 2},
                        {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 2}
                    ]
                }
            }
        }
    }))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dying_mid_rollout_is_tainted_and_its_pods_are_replaced_elsewhere() -> Result<()> {
    let cluster = start(Duration::from_secs(3)).await?;
    let client = cluster.client.clone();
    let dead = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut hearts = Vec::new();
    for name in ["node-a", "node-b", "node-c"] {
        let alive = CancellationToken::new();
        fake_node(&client, name, alive.clone()).await?;
        hearts.push(alive);
    }
    fake_kubelets(client.clone(), dead.clone());

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("example/web:1")?)
        .await?;
    let available = |want_image: &'static str| {
        let deployments = deployments.clone();
        move || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get("web").await?;
                let status = d.status.unwrap_or_default();
                let image = d
                    .spec
                    .and_then(|s| s.template.spec)
                    .map(|s| s.containers[0].image.clone());
                let done = image.flatten().as_deref() == Some(want_image)
                    && status.updated_replicas == Some(6)
                    && status.available_replicas == Some(6)
                    && status.replicas == Some(6);
                Ok(done.then_some(()))
            }
        }
    };
    eventually(
        "the first rollout",
        Duration::from_secs(60),
        available("example/web:1"),
    )
    .await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let on_b: Vec<String> = pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-b"))
        .filter_map(|p| p.metadata.name)
        .collect();
    assert!(!on_b.is_empty(), "the scheduler spread pods onto node-b");

    // Start a rollout, and let node-b die at the same time.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "example/web:2"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    dead.lock().unwrap().insert("node-b".to_string());
    hearts[1].cancel();

    let nodes: Api<Node> = Api::all(client.clone());
    eventually(
        "node-b Unknown and tainted unreachable",
        Duration::from_secs(30),
        || {
            let nodes = nodes.clone();
            async move {
                let node = nodes.get("node-b").await?;
                let ready = node
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|c| c.type_ == "Ready")
                    .map(|c| c.status);
                let taints: BTreeSet<(String, String)> = node
                    .spec
                    .and_then(|s| s.taints)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| (t.key, t.effect))
                    .collect();
                let tainted = taints
                    .contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into()))
                    && taints
                        .contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into()));
                Ok((ready.as_deref() == Some("Unknown") && tainted).then_some(()))
            }
        },
    )
    .await?;

    eventually(
        "the rollout to finish without node-b",
        Duration::from_secs(90),
        available("example/web:2"),
    )
    .await
    .context("rollout after node-b died")?;
    let all = pods.list(&ListParams::default()).await?.items;
    let live: Vec<&Pod> = all
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    assert_eq!(
        live.len(),
        6,
        "six live pods: {:?}",
        live.iter().map(|p| &p.metadata.name).collect::<Vec<_>>()
    );
    for pod in &live {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        assert_ne!(node, Some("node-b"), "no live pod on the dead node");
        let image = &pod.spec.as_ref().unwrap().containers[0].image;
        assert_eq!(image.as_deref(), Some("example/web:2"));
    }
    for name in &on_b {
        if let Some(pod) = all.iter().find(|p| p.metadata.name.as_ref() == Some(name)) {
            assert!(
                pod.metadata.deletion_timestamp.is_some(),
                "{name} on the dead node was evicted"
            );
        }
    }
    cluster.cancel.cancel();
    Ok(())
}
