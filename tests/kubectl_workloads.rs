//! Jobs, CronJobs, DaemonSets and StatefulSets under the real kubectl,
//! against `skiff up` running the example guests (`exit-code` for pods
//! that finish, `hello` for pods that keep running).

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, build_guests, manifest};

const EXIT_CODE: &str = "file:///usr/local/share/skiff/examples/exit-code.wasm";
const HELLO: &str = "file:///usr/local/share/skiff/examples/hello.wasm";

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

fn job(name: &str, code: u8, extra_spec: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{extra_spec}
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: {EXIT_CODE}
        args: [\"{code}\"]
"
    )
}

/// Wait until `kubectl describe` of `object` shows every one of `lines`
/// among its Events (they are written just after the change they report).
fn described(cluster: &Cluster, object: &[&str], lines: &[&str]) -> Result<()> {
    let mut args = vec!["describe"];
    args.extend_from_slice(object);
    let mut text = String::new();
    let found = cluster.wait_for(Duration::from_secs(60), "events in describe", |c| {
        text = c.kubectl_ok(&args)?;
        Ok(lines.iter().all(|line| text.contains(line)))
    });
    found.map_err(|e| e.context(format!("{lines:?} in:\n{text}")))
}

fn apply(cluster: &Cluster, dir: &std::path::Path, name: &str, yaml: &str) -> Result<String> {
    let path = manifest(dir, name, yaml);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])
}

#[test]
fn jobs_complete_fail_and_expire() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    apply(
        &cluster,
        dir.path(),
        "ok.yaml",
        &job("ok", 0, "  completions: 3\n  parallelism: 2"),
    )?;
    apply(
        &cluster,
        dir.path(),
        "bad.yaml",
        &job("bad", 3, "  backoffLimit: 1"),
    )?;
    apply(
        &cluster,
        dir.path(),
        "idx.yaml",
        &job(
            "idx",
            0,
            "  completions: 3\n  parallelism: 3\n  completionMode: Indexed",
        ),
    )?;
    apply(
        &cluster,
        dir.path(),
        "ttl.yaml",
        &job("ttl", 0, "  ttlSecondsAfterFinished: 0"),
    )?;

    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/ok",
        "--timeout=120s",
    ])?;
    cluster.wait_field(&["job", "ok"], "{.status.succeeded}", "3")?;
    let pods = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "job-name=ok",
        "-o",
        "jsonpath={.items[*].status.phase}",
    ])?;
    assert_eq!(words(&pods), vec!["Succeeded"; 3], "{pods}");
    assert!(cluster.kubectl_ok(&["get", "jobs"])?.contains("3/3"));
    described(
        &cluster,
        &["job", "ok"],
        &[
            "SuccessfulCreate",
            "Created pod: ok-",
            "Completed",
            "Job completed",
        ],
    )?;

    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/idx",
        "--timeout=120s",
    ])?;
    cluster.wait_field(&["job", "idx"], "{.status.completedIndexes}", "0-2")?;
    let indexes = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "job-name=idx",
        "-o",
        "jsonpath={.items[*].metadata.labels.batch\\.kubernetes\\.io/job-completion-index}",
    ])?;
    let mut indexes = words(&indexes);
    indexes.sort();
    assert_eq!(indexes, vec!["0", "1", "2"]);

    // Exit code 3 twice: the first failure, a back-off, the second exceeds
    // backoffLimit 1.
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=failed",
        "job/bad",
        "--timeout=120s",
    ])?;
    cluster.wait_field(&["job", "bad"], "{.status.failed}", "2")?;
    cluster.wait_field(
        &["job", "bad"],
        "{.status.conditions[?(@.type==\"Failed\")].reason}",
        "BackoffLimitExceeded",
    )?;
    described(
        &cluster,
        &["job", "bad"],
        &[
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ],
    )?;

    cluster.wait_for(
        Duration::from_secs(120),
        "the ttl job and its pod to go",
        |c| {
            let jobs = c.kubectl_ok(&["get", "jobs", "-o", "name"])?;
            let pods = c.kubectl_ok(&["get", "pods", "-l", "job-name=ttl", "-o", "name"])?;
            Ok(!jobs.contains("job.batch/ttl") && pods.trim().is_empty())
        },
    )?;

    // Deleting a Job takes its pods with it.
    cluster.kubectl_ok(&["delete", "job", "ok"])?;
    cluster.wait_for(Duration::from_secs(120), "the job's pods collected", |c| {
        Ok(
            c.kubectl_ok(&["get", "pods", "-l", "job-name=ok", "-o", "name"])?
                .trim()
                .is_empty(),
        )
    })?;
    Ok(())
}

#[test]
fn cronjob_fires_every_minute_and_rejects_bad_schedules() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let cronjob = |schedule: &str| {
        format!(
            "apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: \"{schedule}\"
  successfulJobsHistoryLimit: 2
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: {EXIT_CODE}
            args: [\"0\"]
"
        )
    };
    let bad = manifest(dir.path(), "bad.yaml", &cronjob("61 * * * *"));
    let err = cluster.kubectl_err(&["apply", "-f", bad.to_str().unwrap()])?;
    assert!(
        err.contains("is invalid") && err.contains("spec.schedule"),
        "{err}"
    );
    assert!(
        cluster
            .kubectl_ok(&["get", "cronjobs", "-o", "name"])?
            .trim()
            .is_empty()
    );

    apply(&cluster, dir.path(), "tick.yaml", &cronjob("* * * * *"))?;
    // A manual run from the template, built by kubectl on the client.
    cluster.kubectl_ok(&["create", "job", "by-hand", "--from=cronjob/tick"])?;
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/by-hand",
        "--timeout=120s",
    ])?;

    // The first scheduled run starts within a minute and completes.
    let mut last = String::new();
    cluster.wait_for(Duration::from_secs(150), "a scheduled run", |c| {
        last = c.kubectl_ok(&[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.lastScheduleTime}",
        ])?;
        Ok(!last.trim().is_empty())
    })?;
    let minute = last.trim().parse::<jiff::Timestamp>()?.as_second() / 60;
    let scheduled = format!("job/tick-{minute}");
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        &scheduled,
        "--timeout=120s",
    ])?;
    cluster.wait_for(Duration::from_secs(60), "lastSuccessfulTime", |c| {
        let success = c.kubectl_ok(&[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.lastSuccessfulTime}",
        ])?;
        Ok(!success.trim().is_empty())
    })?;
    let run = scheduled.trim_start_matches("job/");
    described(
        &cluster,
        &["cronjob", "tick"],
        &[
            &format!("Created job {run}"),
            &format!("Saw completed job: {run}, condition: Complete"),
        ],
    )?;

    cluster.kubectl_ok(&["delete", "cronjob", "tick"])?;
    cluster.wait_for(Duration::from_secs(120), "its jobs collected", |c| {
        let jobs = words(&c.kubectl_ok(&["get", "jobs", "-o", "name"])?);
        Ok(jobs.iter().all(|j| !j.starts_with("job.batch/tick-")))
    })?;
    Ok(())
}

fn daemonset(greeting: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels:
      app: agent
  template:
    metadata:
      labels:
        app: agent
    spec:
      containers:
      - name: hello
        image: {HELLO}
        args: [\"{greeting}\"]
"
    )
}

#[test]
fn daemonset_runs_on_the_node_and_rolls() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    apply(&cluster, dir.path(), "v1.yaml", &daemonset("one"))?;
    cluster.kubectl_ok(&["rollout", "status", "ds/agent", "--timeout=120s"])?;
    let node = cluster.kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])?;
    let placed = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=agent",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ])?;
    assert_eq!(words(&placed), vec![node.clone()]);
    cluster.wait_field(&["ds", "agent"], "{.status.numberReady}", "1")?;
    described(
        &cluster,
        &["ds", "agent"],
        &["SuccessfulCreate", "Created pod: agent-"],
    )?;
    let first_hash = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=agent",
        "-o",
        "jsonpath={.items[0].metadata.labels.controller-revision-hash}",
    ])?;

    apply(&cluster, dir.path(), "v2.yaml", &daemonset("two"))?;
    cluster.kubectl_ok(&["rollout", "status", "ds/agent", "--timeout=120s"])?;
    cluster.wait_for(
        Duration::from_secs(120),
        "one pod of the new template",
        |c| {
            let args = c.kubectl_ok(&[
                "get",
                "pods",
                "-l",
                "app=agent",
                "-o",
                "jsonpath={.items[*].spec.containers[0].args[0]}",
            ])?;
            Ok(words(&args) == vec!["two"])
        },
    )?;
    let revisions = cluster.kubectl_ok(&[
        "get",
        "controllerrevisions",
        "-l",
        "app=agent",
        "-o",
        "name",
    ])?;
    assert_eq!(words(&revisions).len(), 2, "{revisions}");
    let history = cluster.kubectl_ok(&["rollout", "history", "ds/agent"])?;
    assert!(history.contains('1') && history.contains('2'), "{history}");
    let second_hash = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=agent",
        "-o",
        "jsonpath={.items[0].metadata.labels.controller-revision-hash}",
    ])?;
    assert_ne!(first_hash, second_hash);

    cluster.kubectl_ok(&["delete", "ds", "agent"])?;
    cluster.wait_for(
        Duration::from_secs(120),
        "daemon pods and revisions collected",
        |c| {
            let pods = c.kubectl_ok(&["get", "pods", "-l", "app=agent", "-o", "name"])?;
            let revisions = c.kubectl_ok(&[
                "get",
                "controllerrevisions",
                "-l",
                "app=agent",
                "-o",
                "name",
            ])?;
            Ok(pods.trim().is_empty() && revisions.trim().is_empty())
        },
    )?;
    Ok(())
}

fn statefulset(service: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  replicas: 3
{service}
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: hello
        image: {HELLO}
"
    )
}

#[test]
fn statefulset_ordered_names_survive_pod_deletion() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let nameless = manifest(dir.path(), "nameless.yaml", &statefulset(""));
    let err = cluster.kubectl_err(&["apply", "-f", nameless.to_str().unwrap()])?;
    assert!(err.contains("spec.serviceName"), "{err}");

    apply(
        &cluster,
        dir.path(),
        "db.yaml",
        &statefulset("  serviceName: db"),
    )?;
    cluster.kubectl_ok(&["rollout", "status", "sts/db", "--timeout=120s"])?;
    let names = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=db",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    let mut names = words(&names);
    names.sort();
    assert_eq!(names, vec!["db-0", "db-1", "db-2"]);
    let hostname = cluster.kubectl_ok(&[
        "get",
        "pod",
        "db-1",
        "-o",
        "jsonpath={.spec.hostname}.{.spec.subdomain}",
    ])?;
    assert_eq!(hostname, "db-1.db");

    let uid = cluster.kubectl_ok(&["get", "pod", "db-1", "-o", "jsonpath={.metadata.uid}"])?;
    cluster.kubectl_ok(&["delete", "pod", "db-1"])?;
    cluster.wait_for(
        Duration::from_secs(120),
        "db-1 to come back under its name",
        |c| {
            let out = c.kubectl(&[
                "get",
                "pod",
                "db-1",
                "-o",
                "jsonpath={.metadata.uid} {.status.phase}",
            ])?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            Ok(out.status.success() && !text.starts_with(&uid) && text.ends_with("Running"))
        },
    )?;
    cluster.kubectl_ok(&["rollout", "status", "sts/db", "--timeout=120s"])?;

    cluster.kubectl_ok(&["scale", "sts/db", "--replicas=1"])?;
    cluster.wait_for(Duration::from_secs(120), "only db-0 left", |c| {
        let names = c.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=db",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])?;
        Ok(words(&names) == vec!["db-0"])
    })?;
    described(
        &cluster,
        &["sts", "db"],
        &[
            "create Pod db-0 in StatefulSet db successful",
            "delete Pod db-1 in StatefulSet db successful",
        ],
    )?;
    Ok(())
}
