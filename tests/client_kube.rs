//! The `kube` crate (what Rust controllers use) against the real `skiff up`:
//! discovery (legacy and aggregated), typed CRUD with every patch type,
//! optimistic concurrency, selectors, raw watches, and a watcher feeding a
//! reflector.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::Cluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Config, ResourceExt};
use serde_json::json;

/// A safety net for waits on streams; never a performance assertion.
const PATIENCE: Duration = Duration::from_secs(60);

async fn client(cluster: &Cluster) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig())?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn pod(name: &str, labels: serde_json::Value) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [
            {"name": "main", "image": "/nonexistent/guest.wasm", "env": [{"name": "A", "value": "1"}]},
        ]},
    }))?)
}

fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_every_served_kind() -> Result<()> {
    let cluster = Cluster::start()?;
    let client = client(&cluster).await?;
    for (how, discovery) in [
        ("legacy", Discovery::new(client.clone()).run().await?),
        (
            "aggregated",
            Discovery::new(client.clone()).run_aggregated().await?,
        ),
    ] {
        let core = discovery
            .get("")
            .with_context(|| format!("{how}: no core group"))?;
        let (pods, caps) = core
            .recommended_resources()
            .into_iter()
            .find(|(r, _)| r.plural == "pods")
            .with_context(|| format!("{how}: no pods"))?;
        assert_eq!(pods.kind, "Pod", "{how}");
        assert_eq!(caps.scope, Scope::Namespaced, "{how}");
        assert!(caps.supports_operation("watch"), "{how}");
        assert!(
            caps.subresources.iter().any(|(r, _)| r.plural == "status"),
            "{how}: pods/status missing"
        );
        let (namespaces, caps) = core
            .recommended_resources()
            .into_iter()
            .find(|(r, _)| r.plural == "namespaces")
            .with_context(|| format!("{how}: no namespaces"))?;
        assert_eq!(namespaces.kind, "Namespace");
        assert_eq!(caps.scope, Scope::Cluster, "{how}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_crud_patches_and_conflicts() -> Result<()> {
    let cluster = Cluster::start()?;
    let client = client(&cluster).await?;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": "kube-crud", "labels": {"suite": "kube"}},
    }))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let listed = namespaces
        .list(&ListParams::default().labels("suite=kube"))
        .await?;
    assert_eq!(
        listed
            .items
            .iter()
            .map(|n| n.name_any())
            .collect::<Vec<_>>(),
        ["kube-crud"]
    );
    let again = namespaces.create(&PostParams::default(), &ns).await;
    assert_eq!(again.err().as_ref().and_then(api_code), Some(409));

    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-crud");
    let created = pods
        .create(&PostParams::default(), &pod("p1", json!({"app": "a"}))?)
        .await?;
    assert_eq!(created.namespace().as_deref(), Some("kube-crud"));
    assert!(created.uid().is_some());
    pods.create(&PostParams::default(), &pod("p2", json!({"app": "b"}))?)
        .await?;

    // Merge patch adds a label. Strategic merge changes the image of the
    // container found by its name and keeps its other fields: a replaced
    // list would drop `env`, which a pod update may not do.
    let merged = pods
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "web"}}})),
        )
        .await?;
    assert_eq!(merged.labels()["tier"], "web");
    assert_eq!(merged.labels()["app"], "a");
    let strategic = pods
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"containers": [
                {"name": "main", "image": "/nonexistent/other.wasm"},
            ]}})),
        )
        .await?;
    let container = &strategic.spec.as_ref().context("spec")?.containers[0];
    assert_eq!(container.image.as_deref(), Some("/nonexistent/other.wasm"));
    let env: Vec<&str> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["A"]);
    let json_patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/labels/tier", "value": "web"},
        {"op": "replace", "path": "/metadata/labels/tier", "value": "db"},
    ]))?;
    let patched = pods
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Json::<()>(json_patch),
        )
        .await?;
    assert_eq!(patched.labels()["tier"], "db");

    // Label and field selectors.
    let by_label = pods.list(&ListParams::default().labels("app=b")).await?;
    assert_eq!(
        by_label
            .items
            .iter()
            .map(|p| p.name_any())
            .collect::<Vec<_>>(),
        ["p2"]
    );
    let by_field = pods
        .list(&ListParams::default().fields("metadata.name=p1"))
        .await?;
    assert_eq!(
        by_field
            .items
            .iter()
            .map(|p| p.name_any())
            .collect::<Vec<_>>(),
        ["p1"]
    );
    let by_set = pods
        .list(&ListParams::default().labels("app in (a,b),tier!=web"))
        .await?;
    assert_eq!(by_set.items.len(), 2);

    // Replace with the current resourceVersion succeeds (the scheduler and
    // the node write the pod too, so re-read on a conflict as clients do);
    // the older copy is then stale and gets a 409.
    let stale = pods.get("p1").await?;
    let mut attempts = 0;
    let replaced = loop {
        attempts += 1;
        if attempts > 50 {
            bail!("replace kept conflicting");
        }
        let mut current = pods.get("p1").await?;
        current.labels_mut().insert("replaced".into(), "yes".into());
        match pods.replace("p1", &PostParams::default(), &current).await {
            Err(err) if api_code(&err) == Some(409) => continue,
            other => break other?,
        }
    };
    assert_eq!(replaced.labels()["replaced"], "yes");
    assert_ne!(replaced.resource_version(), stale.resource_version());
    let conflict = pods.replace("p1", &PostParams::default(), &stale).await;
    assert_eq!(conflict.err().as_ref().and_then(api_code), Some(409));

    // Events: create, then find them by the object they are about.
    let events: Api<Event> = Api::namespaced(client.clone(), "kube-crud");
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "p1.kube"},
        "involvedObject": {"kind": "Pod", "name": "p1", "namespace": "kube-crud"},
        "reason": "Tested",
        "message": "written by the kube client test",
        "type": "Normal",
    }))?;
    events.create(&PostParams::default(), &event).await?;
    let about = events
        .list(&ListParams::default().fields("involvedObject.name=p1,reason=Tested"))
        .await?;
    assert!(about.items.iter().any(|e| e.name_any() == "p1.kube"));
    assert_eq!(
        events.get("p1.kube").await?.reason.as_deref(),
        Some("Tested")
    );

    // Delete, then the object is gone.
    pods.delete("p2", &DeleteParams::default().grace_period(0))
        .await?;
    let gone = wait_gone(&pods, "p2").await?;
    assert_eq!(gone, 404);
    let missing = pods.delete("nope", &DeleteParams::default()).await;
    assert_eq!(missing.err().as_ref().and_then(api_code), Some(404));
    Ok(())
}

/// `Patch::Apply`: server-side apply creates, records the manager, refuses
/// to change another manager's field without `force`, and takes it with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_with_field_managers() -> Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let cluster = Cluster::start()?;
    let client = client(&cluster).await?;
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let config = |mode: &str| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"mode": mode, "level": "1"},
        })
    };
    let created = maps
        .patch(
            "settings",
            &PatchParams::apply("deployer"),
            &Patch::Apply(config("fast")),
        )
        .await?;
    let managed = created.metadata.managed_fields.clone().unwrap_or_default();
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].manager.as_deref(), Some("deployer"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));

    let other = maps
        .patch(
            "settings",
            &PatchParams::apply("tuner"),
            &Patch::Apply(config("slow")),
        )
        .await;
    let err = other.expect_err("a conflict");
    assert_eq!(api_code(&err), Some(409));
    assert!(err.to_string().contains(".data.mode"), "{err}");

    let forced = maps
        .patch(
            "settings",
            &PatchParams::apply("tuner").force(),
            &Patch::Apply(config("slow")),
        )
        .await?;
    assert_eq!(forced.data.unwrap_or_default()["mode"], "slow");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    // Both still own `.data.level`, which they applied with the same value.
    assert_eq!(managers, ["deployer", "tuner"]);
    Ok(())
}

/// Deleting a pod may wait for its node to stop it; poll until it is gone.
async fn wait_gone(pods: &Api<Pod>, name: &str) -> Result<u16> {
    let start = std::time::Instant::now();
    loop {
        match pods.get(name).await {
            Err(err) if api_code(&err) == Some(404) => return Ok(404),
            Err(err) => return Err(err.into()),
            Ok(_) if start.elapsed() > PATIENCE => bail!("{name} was never deleted"),
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_and_reflectors_see_changes() -> Result<()> {
    let cluster = Cluster::start()?;
    let client = client(&cluster).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());

    // A raw watch from the list's resourceVersion sees each change once, in order.
    let list = namespaces
        .list(&ListParams::default().labels("watched=yes"))
        .await?;
    let rv = list.metadata.resource_version.context("list has an RV")?;
    let mut raw = namespaces
        .watch(
            &WatchParams::default().labels("watched=yes").timeout(290),
            &rv,
        )
        .await?
        .boxed();

    // A watcher feeding a reflector store, filtered by label, driven in the
    // background; the names it applies come back over a channel.
    let (reader, writer) = reflector::store::<Namespace>();
    let config = watcher::Config::default().labels("watched=yes");
    let mut reflected = reflector(writer, watcher(namespaces.clone(), config))
        .applied_objects()
        .boxed();
    let (applied_tx, mut applied) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(Ok(ns)) = reflected.next().await {
            if applied_tx.send(ns.name_any()).is_err() {
                return;
            }
        }
    });
    tokio::time::timeout(PATIENCE, reader.wait_until_ready())
        .await
        .context("the reflector never listed")??;

    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": "watched", "labels": {"watched": "yes"}},
    }))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    namespaces
        .patch(
            "watched",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"step": "two"}}})),
        )
        .await?;
    namespaces
        .delete("watched", &DeleteParams::default())
        .await?;

    let mut seen = Vec::new();
    while !seen.iter().any(|s| s == "DELETED") {
        let event = tokio::time::timeout(PATIENCE, raw.try_next())
            .await
            .context("no watch event")??
            .context("watch ended early")?;
        match event {
            WatchEvent::Added(ns) => seen.push(format!("ADDED {}", ns.name_any())),
            WatchEvent::Modified(ns) => {
                let step = ns.annotations().get("step").cloned().unwrap_or_default();
                seen.push(format!("MODIFIED {step}"));
            }
            WatchEvent::Deleted(_) => seen.push("DELETED".into()),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(err) => bail!("watch error: {err:?}"),
        }
    }
    assert_eq!(seen.first().map(String::as_str), Some("ADDED watched"));
    assert!(seen.iter().any(|s| s == "MODIFIED two"), "{seen:?}");

    // The reflector applied the namespace, then dropped it from its store.
    let first = tokio::time::timeout(PATIENCE, applied.recv())
        .await
        .context("the reflector saw nothing")?
        .context("the watcher ended")?;
    assert_eq!(first, "watched");
    let start = std::time::Instant::now();
    while reader.get(&reflector::ObjectRef::new("watched")).is_some() {
        if start.elapsed() > PATIENCE {
            bail!("the reflector never removed the deleted namespace");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A second object arrives in the store while the watcher keeps running.
    let later: Namespace = serde_json::from_value(json!({
        "metadata": {"name": "watched-later", "labels": {"watched": "yes"}},
    }))?;
    namespaces.create(&PostParams::default(), &later).await?;
    let start = std::time::Instant::now();
    while reader
        .get(&reflector::ObjectRef::new("watched-later"))
        .is_none()
    {
        if start.elapsed() > PATIENCE {
            bail!("the reflector never saw watched-later");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reader
            .state()
            .iter()
            .all(|ns| ns.labels()["watched"] == "yes"),
        "the label selector reached the watcher"
    );
    driver.abort();
    Ok(())
}

/// kubectl itself: aggregated discovery means two discovery requests
/// (`/api`, `/apis`) on a cold cache, and `explain` reads the v3 schemas.
#[test]
fn kubectl_reads_aggregated_discovery_and_explains() -> Result<()> {
    let cluster = Cluster::start()?;
    let out = cluster.kubectl(&["api-resources", "-v=8"])?;
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    let discovery: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("GET http") && (l.contains("/api?") || l.contains("/apis")))
        .collect();
    assert_eq!(discovery.len(), 2, "{discovery:#?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["pods", "po"])),
        "{table}"
    );
    let explained = cluster.kubectl_ok(&["explain", "pod.spec.containers.image"])?;
    assert!(explained.contains("FIELD: image <string>"), "{explained}");
    assert!(explained.contains("Container image name"), "{explained}");
    Ok(())
}
