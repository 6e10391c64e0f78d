//! kubectl commands scripts lean on: `wait` (jsonpath, delete, condition),
//! `edit` with `EDITOR` set to a script, `diff` and its exit codes,
//! `get -w`, and `apply --prune`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{Cluster, manifest};

fn config_map(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{set: cli}}\ndata:\n  a: \"{value}\"\n"
    )
}

#[test]
fn wait_edit_diff_watch_and_prune() -> Result<()> {
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let c1 = manifest(dir.path(), "c1.yaml", &config_map("c1", "1"));
    let c1 = c1.to_str().unwrap();
    cluster.kubectl_ok(&["apply", "-f", c1])?;

    // wait --for=jsonpath
    cluster.kubectl_ok(&[
        "wait",
        "--for=jsonpath={.data.a}=1",
        "configmap/c1",
        "--timeout=30s",
    ])?;

    // diff: 0 when the live object matches, 1 (with the diff) when not.
    let same = cluster.kubectl(&["diff", "-f", c1])?;
    assert_eq!(same.status.code(), Some(0), "{:?}", same);
    let changed = manifest(dir.path(), "c1-changed.yaml", &config_map("c1", "9"));
    let differs = cluster.kubectl(&["diff", "-f", changed.to_str().unwrap()])?;
    let shown = String::from_utf8_lossy(&differs.stdout);
    assert_eq!(differs.status.code(), Some(1), "{differs:?}");
    assert!(
        shown.contains("-  a: \"1\"") && shown.contains("+  a: \"9\""),
        "{shown}"
    );
    // diff is a dry run: nothing changed.
    assert_eq!(
        cluster.kubectl_ok(&["get", "cm", "c1", "-o", "jsonpath={.data.a}"])?,
        "1"
    );

    // edit with EDITOR set to a script that rewrites the value.
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/a: \"1\"/a: \"2\"/' \"$1\"\n")?;
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let edit = Command::new("kubectl")
        .args(["edit", "configmap", "c1"])
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("EDITOR", &editor)
        .stdin(Stdio::null())
        .output()?;
    assert!(edit.status.success(), "{edit:?}");
    assert!(
        String::from_utf8_lossy(&edit.stdout).contains("configmap/c1 edited"),
        "{edit:?}"
    );
    assert_eq!(
        cluster.kubectl_ok(&["get", "cm", "c1", "-o", "jsonpath={.data.a}"])?,
        "2"
    );

    // get -w prints the current state, then each change.
    let mut watch = Command::new("kubectl")
        .args([
            "get",
            "configmap",
            "c1",
            "-w",
            "-o",
            "jsonpath={.data.a}{\"\\n\"}",
        ])
        .env("KUBECONFIG", cluster.kubeconfig())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = watch.stdout.take().context("piped stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Safety nets only: the events come as soon as the server sends them.
    let first = rx.recv_timeout(Duration::from_secs(60))?;
    assert_eq!(first, "2");
    cluster.kubectl_ok(&[
        "patch",
        "cm",
        "c1",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"3"}}"#,
    ])?;
    let next = rx.recv_timeout(Duration::from_secs(60))?;
    watch.kill()?;
    watch.wait()?;
    assert_eq!(next, "3");

    // Client-side apply, then server-side apply of a change: kubectl moves
    // the fields to its server-side manager, so there is no conflict.
    let migrate = manifest(dir.path(), "m.yaml", &config_map("m1", "1"));
    let migrate = migrate.to_str().unwrap();
    cluster.kubectl_ok(&["apply", "-f", migrate])?;
    manifest(dir.path(), "m.yaml", &config_map("m1", "2"));
    cluster.kubectl_ok(&["apply", "--server-side", "-f", migrate])?;
    let managers = cluster.kubectl_ok(&[
        "get",
        "cm",
        "m1",
        "--show-managed-fields",
        "-o",
        "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation} {end}",
    ])?;
    // kubectl keeps the last-applied annotation current under its own manager.
    assert_eq!(
        managers.trim(),
        "kubectl/Apply kubectl-last-applied/Apply",
        "{managers}"
    );
    assert_eq!(
        cluster.kubectl_ok(&["get", "cm", "m1", "-o", "jsonpath={.data.a}"])?,
        "2"
    );

    // A HorizontalPodAutoscaler written as autoscaling/v1 reads back as v2
    // (its CPU target a metric) and as v1.
    let hpa = manifest(
        dir.path(),
        "hpa.yaml",
        "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\n\
         spec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  \
         maxReplicas: 4\n  targetCPUUtilizationPercentage: 50\n",
    );
    cluster.kubectl_ok(&["apply", "-f", hpa.to_str().unwrap()])?;
    assert_eq!(
        cluster.kubectl_ok(&[
            "get",
            "hpa.v2.autoscaling",
            "web",
            "-o",
            "jsonpath={.apiVersion} {.spec.metrics[0].resource.target.averageUtilization} {.spec.minReplicas}",
        ])?,
        "autoscaling/v2 50 1"
    );
    let v1: serde_json::Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web",
    ])?)?;
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
    assert!(
        v1.get("status").is_none() && v1["spec"].get("metrics").is_none(),
        "{v1}"
    );
    let table = cluster.kubectl_ok(&["get", "hpa", "web"])?;
    assert!(
        table.contains("Deployment/web") && table.contains("/50%"),
        "{table}"
    );

    // wait --for=delete
    cluster.kubectl_ok(&["delete", "cm", "c1", "--wait=false"])?;
    cluster.kubectl_ok(&["wait", "--for=delete", "configmap/c1", "--timeout=30s"])?;

    // apply --prune removes what left the directory.
    let set = dir.path().join("set");
    std::fs::create_dir(&set)?;
    manifest(&set, "p1.yaml", &config_map("p1", "1"));
    let p2 = manifest(&set, "p2.yaml", &config_map("p2", "2"));
    let set = set.to_str().unwrap();
    cluster.kubectl_ok(&["apply", "-f", set, "--prune", "-l", "set=cli"])?;
    std::fs::remove_file(p2)?;
    let out = cluster.kubectl_ok(&["apply", "-f", set, "--prune", "-l", "set=cli"])?;
    assert!(out.contains("configmap/p2 pruned"), "{out}");
    assert_eq!(
        cluster.kubectl_ok(&["get", "cm", "-l", "set=cli", "-o", "name"])?,
        "configmap/p1\n"
    );
    Ok(())
}

/// `label` and `annotate` (set, refuse to overwrite without `--overwrite`,
/// remove with `key-`), and the `get` forms that show them: `--show-labels`,
/// `-l`, `-o name`, `-A`.
#[test]
fn label_annotate_and_get_forms() -> Result<()> {
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let c1 = manifest(dir.path(), "c1.yaml", &config_map("c1", "1"));
    cluster.kubectl_ok(&["apply", "-f", c1.to_str().unwrap()])?;

    let labeled = cluster.kubectl_ok(&["label", "configmap", "c1", "tier=web"])?;
    assert!(labeled.contains("configmap/c1 labeled"), "{labeled}");
    let refused = cluster.kubectl_err(&["label", "configmap", "c1", "tier=db"])?;
    assert!(refused.contains("--overwrite"), "{refused}");
    cluster.kubectl_ok(&["label", "configmap", "c1", "tier=db", "--overwrite"])?;

    let shown = cluster.kubectl_ok(&["get", "configmap", "c1", "--show-labels"])?;
    let header = shown.lines().next().context("a header line")?;
    assert!(header.contains("LABELS"), "{shown}");
    assert!(shown.contains("set=cli,tier=db"), "{shown}");
    assert_eq!(
        cluster
            .kubectl_ok(&["get", "configmap", "-l", "tier=db", "-o", "name"])?
            .trim(),
        "configmap/c1"
    );

    let annotated = cluster.kubectl_ok(&["annotate", "configmap", "c1", "note=hello"])?;
    assert!(annotated.contains("configmap/c1 annotated"), "{annotated}");
    assert_eq!(
        cluster.kubectl_ok(&[
            "get",
            "configmap",
            "c1",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ])?,
        "hello"
    );
    cluster.kubectl_ok(&["annotate", "configmap", "c1", "note-"])?;
    cluster.kubectl_ok(&["label", "configmap", "c1", "tier-"])?;
    let object = cluster.kubectl_ok(&["get", "configmap", "c1", "-o", "json"])?;
    let object: serde_json::Value = serde_json::from_str(&object)?;
    assert_eq!(
        object["metadata"]["labels"],
        serde_json::json!({"set": "cli"})
    );
    assert!(
        object["metadata"]["annotations"].get("note").is_none(),
        "{object}"
    );
    assert_eq!(
        cluster
            .kubectl_ok(&["get", "configmap", "-l", "tier", "-o", "name"])?
            .trim(),
        ""
    );

    let everywhere = cluster.kubectl_ok(&["get", "configmap", "-A"])?;
    let header = everywhere.lines().next().context("a header line")?;
    assert!(header.starts_with("NAMESPACE"), "{everywhere}");
    assert!(
        everywhere
            .lines()
            .any(|line| line.starts_with("default") && line.contains(" c1 ")),
        "{everywhere}"
    );
    Ok(())
}
