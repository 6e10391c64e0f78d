//! Deployments under the real kubectl: rollout status, history, undo, scale,
//! self-healing and cascading deletion, against `skiff up` running the hello
//! guest.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, build_guests, manifest};

fn deployment(args: &str, cause: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    kubernetes.io/change-cause: {cause}
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  strategy:
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: hello
        image: file:///usr/local/share/skiff/examples/hello.wasm
        args: [{args}]
"
    )
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// Names of the pods labelled app=web that are not being deleted.
fn live_pods(cluster: &Cluster) -> Result<Vec<String>> {
    let out = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[?(@.metadata.deletionTimestamp)]}{.metadata.name} {end}",
    ])?;
    let deleting = words(&out);
    let all = words(&cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?);
    Ok(all.into_iter().filter(|p| !deleting.contains(p)).collect())
}

fn wait_running(cluster: &Cluster, count: usize) -> Result<()> {
    cluster.wait_for(
        Duration::from_secs(120),
        &format!("{count} running web pods"),
        |c| {
            let phases = c.kubectl_ok(&[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ])?;
            Ok(live_pods(c)?.len() == count
                && words(&phases).iter().filter(|p| *p == "Running").count() >= count)
        },
    )
}

#[test]
fn deployment_rollout_scale_heal_and_delete() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let v1 = manifest(dir.path(), "v1.yaml", &deployment("one", "first"));
    let v2 = manifest(dir.path(), "v2.yaml", &deployment("two", "second"));

    cluster.kubectl_ok(&["apply", "-f", v1.to_str().unwrap()])?;
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"])?;
    wait_running(&cluster, 3)?;
    cluster.wait_field(
        &["deployment", "web"],
        "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        "1",
    )?;

    cluster.kubectl_ok(&["apply", "-f", v2.to_str().unwrap()])?;
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"])?;
    cluster.wait_field(
        &["deployment", "web"],
        "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        "2",
    )?;
    let sets = words(&cluster.kubectl_ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.replicas}",
    ])?);
    let mut sets: Vec<i32> = sets.iter().map(|s| s.parse().unwrap()).collect();
    sets.sort();
    assert_eq!(sets, vec![0, 3], "old set scaled to 0, new set to 3");
    cluster.wait_for(Duration::from_secs(120), "only new pods", |c| {
        let args = c.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.containers[0].args[0]}",
        ])?;
        Ok(words(&args).iter().all(|a| a == "two"))
    })?;

    let history = cluster.kubectl_ok(&["rollout", "history", "deployment/web"])?;
    assert!(history.contains("first"), "{history}");
    assert!(history.contains("second"), "{history}");

    cluster.kubectl_ok(&["rollout", "undo", "deployment/web"])?;
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"])?;
    cluster.wait_field(
        &["deployment", "web"],
        "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        "3",
    )?;
    cluster.wait_field(
        &["deployment", "web"],
        "{.spec.template.spec.containers[0].args[0]}",
        "one",
    )?;
    assert_eq!(
        words(&cluster.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "name"])?).len(),
        2
    );

    cluster.kubectl_ok(&["scale", "deployment/web", "--replicas=1"])?;
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"])?;
    wait_running(&cluster, 1)?;

    let victim = live_pods(&cluster)?.remove(0);
    cluster.kubectl_ok(&["delete", "pod", &victim])?;
    cluster.wait_for(Duration::from_secs(120), "a replacement pod", |c| {
        let pods = live_pods(c)?;
        Ok(pods.len() == 1 && pods[0] != victim)
    })?;
    wait_running(&cluster, 1)?;

    cluster.kubectl_ok(&["delete", "deployment", "web"])?;
    cluster.wait_for(
        Duration::from_secs(120),
        "replicasets and pods collected",
        |c| {
            let sets = c.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "name"])?;
            let pods = c.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"])?;
            Ok(sets.trim().is_empty() && pods.trim().is_empty())
        },
    )?;
    Ok(())
}

/// `--cascade=orphan` keeps the dependents and strips their owner reference;
/// `--cascade=foreground` deletes dependents before the owner goes.
#[test]
fn cascade_orphan_and_foreground() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let web = manifest(dir.path(), "web.yaml", &deployment("\"one\"", "first"));
    cluster.kubectl_ok(&["apply", "-f", web.to_str().unwrap()])?;
    wait_running(&cluster, 3)?;

    cluster.kubectl_ok(&["delete", "deployment", "web", "--cascade=orphan"])?;
    let gone = cluster.kubectl_err(&["get", "deployment", "web"])?;
    assert!(gone.contains("NotFound"), "{gone}");
    let owners = cluster.kubectl_ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}|{.items[*].metadata.ownerReferences}",
    ])?;
    let (sets, refs) = owners.split_once('|').unwrap_or_default();
    assert_eq!(words(sets).len(), 1, "the ReplicaSet is kept: {owners}");
    assert_eq!(refs.trim(), "", "and no longer owned: {owners}");
    assert_eq!(live_pods(&cluster)?.len(), 3, "its pods keep running");

    cluster.kubectl_ok(&["delete", "rs", "-l", "app=web", "--cascade=foreground"])?;
    cluster.wait_for(
        Duration::from_secs(90),
        "the ReplicaSet and its pods to go",
        |c| {
            let sets = c.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "name"])?;
            let pods = c.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"])?;
            Ok(sets.trim().is_empty() && pods.trim().is_empty())
        },
    )?;
    Ok(())
}
