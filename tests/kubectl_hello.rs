//! The walking skeleton end to end: `skiff up`, the real kubectl, the hello
//! example as a Wasm pod, logs, unchanged re-apply, delete, and a restart on
//! the same data directory.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::Result;
use common::{Cluster, build_guests, repo_root};

#[test]
fn hello_example_runs_under_kubectl() -> Result<()> {
    build_guests();
    let mut cluster = Cluster::start()?;
    let example = repo_root().join("examples/hello");
    let example = example.to_str().unwrap();

    // Default validation (strict) needs the OpenAPI v3 documents.
    let applied = cluster.kubectl_ok(&["apply", "-f", example])?;
    assert!(applied.contains("namespace/hello created"), "{applied}");
    assert!(applied.contains("pod/hello created"), "{applied}");

    cluster.wait_field(
        &["pod", "hello", "-n", "hello"],
        "{.status.phase}",
        "Running",
    )?;
    cluster.wait_for(std::time::Duration::from_secs(30), "the greeting", |c| {
        let logs = c.kubectl_ok(&["logs", "hello", "-n", "hello"])?;
        Ok(logs.contains("Hello from Skiff!") && logs.contains("tick 1"))
    })?;
    let logs = cluster.kubectl_ok(&["logs", "hello", "-n", "hello"])?;
    assert!(logs.contains("from"), "the args reach the guest: {logs}");
    assert!(
        logs.contains("GREETING=ahoy"),
        "the env reaches the guest: {logs}"
    );

    let table = cluster.kubectl_ok(&["get", "pods", "-n", "hello"])?;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..4], ["hello", "1/1", "Running", "0"], "{table}");

    let again = cluster.kubectl_ok(&["apply", "-f", example])?;
    assert!(again.contains("namespace/hello unchanged"), "{again}");
    assert!(again.contains("pod/hello unchanged"), "{again}");

    // Following the log sees new lines as the guest prints them.
    let mut follow = Command::new("kubectl")
        .args(["logs", "-f", "--tail=1", "hello", "-n", "hello"])
        .env("KUBECONFIG", cluster.kubeconfig())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut ticks = 0;
    for line in BufReader::new(follow.stdout.take().unwrap()).lines() {
        if line?.starts_with("tick") {
            ticks += 1;
        }
        if ticks == 3 {
            break;
        }
    }
    follow.kill()?;
    follow.wait()?;
    assert_eq!(ticks, 3);

    let deleted = cluster.kubectl_ok(&["delete", "pod", "hello", "-n", "hello"])?;
    assert!(deleted.contains("pod \"hello\" deleted"), "{deleted}");
    let gone = cluster.kubectl_err(&["get", "pod", "hello", "-n", "hello"])?;
    assert!(
        gone.contains("Error from server (NotFound): pods \"hello\" not found"),
        "{gone}"
    );

    // Everything applied survives a restart of the process.
    cluster.kubectl_ok(&["apply", "-f", example])?;
    cluster.restart()?;
    let namespaces = cluster.kubectl_ok(&["get", "namespaces"])?;
    assert!(
        namespaces.lines().any(|l| l.starts_with("hello ")),
        "{namespaces}"
    );
    cluster.wait_field(
        &["pod", "hello", "-n", "hello"],
        "{.status.phase}",
        "Running",
    )?;
    cluster.stop()?;
    Ok(())
}

#[test]
fn stale_updates_conflict_and_patches_apply() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let ns = common::manifest(
        dir.path(),
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels:\n    tier: one\n",
    );
    cluster.kubectl_ok(&["apply", "-f", ns.to_str().unwrap()])?;
    let stale = cluster.kubectl_ok(&["get", "namespace", "team-a", "-o", "json"])?;
    let stale_path = dir.path().join("stale.json");
    std::fs::write(&stale_path, &stale)?;
    cluster.kubectl_ok(&["label", "namespace", "team-a", "owner=me"])?;
    let conflict = cluster.kubectl_err(&["replace", "-f", stale_path.to_str().unwrap()])?;
    assert!(
        conflict.contains("the object has been modified"),
        "{conflict}"
    );

    // Merge patch and strategic merge patch through kubectl.
    cluster.kubectl_ok(&[
        "patch",
        "namespace",
        "team-a",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":null}}}"#,
    ])?;
    cluster.kubectl_ok(&[
        "patch",
        "namespace",
        "team-a",
        "-p",
        r#"{"metadata":{"annotations":{"note":"hi"}}}"#,
    ])?;
    let labels = cluster.kubectl_ok(&[
        "get",
        "namespace",
        "team-a",
        "-o",
        "jsonpath={.metadata.labels.tier}|{.metadata.labels.owner}|{.metadata.annotations.note}",
    ])?;
    assert_eq!(labels, "|me|hi");
    Ok(())
}
