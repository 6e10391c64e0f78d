//! Every example in `examples/` runs under `skiff up` with the real kubectl
//! (hello is covered in depth by kubectl_hello.rs).

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, build_guests, repo_root};

#[test]
fn exit_code_example_ends_failed_with_its_code() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let example = repo_root().join("examples/exit-code");
    cluster.kubectl_ok(&["apply", "-f", example.to_str().unwrap()])?;
    let pod = ["pod", "exit-code", "-n", "exit-code"];
    cluster.wait_field(&pod, "{.status.phase}", "Failed")?;
    cluster.wait_field(
        &pod,
        "{.status.containerStatuses[0].state.terminated.exitCode}",
        "3",
    )?;
    let table = cluster.kubectl_ok(&["get", "pods", "-n", "exit-code"])?;
    assert!(table.contains("Error"), "{table}");
    let logs = cluster.kubectl_ok(&["logs", "exit-code", "-n", "exit-code"])?;
    assert!(
        !logs.trim().is_empty(),
        "the guest's output is kept after it exits"
    );
    Ok(())
}

/// One HTTP/1.0 exchange with the todo API on its hostPort; (status, body).
fn todo_call(method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect("127.0.0.1:18081")?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: todo-api\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The todo API keeps its todos on its claim across pods, and the report job
/// (run from its CronJob) reads them with its ConfigMap and Secret.
#[test]
fn todo_api_and_cron_report_share_a_claim() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let api = repo_root().join("examples/todo-api/manifest.yaml");
    cluster.kubectl_ok(&["apply", "-f", api.to_str().unwrap()])?;
    cluster.kubectl_ok(&[
        "rollout",
        "status",
        "deploy/todo-api",
        "-n",
        "todo",
        "--timeout=120s",
    ])?;
    cluster.wait_field(
        &["pvc", "todo-data", "-n", "todo"],
        "{.status.phase}",
        "Bound",
    )?;
    assert_eq!(
        todo_call("POST", "/todos", r#"{"title":"write docs"}"#)?,
        (201, r#"{"id":1,"title":"write docs","done":false}"#.into())
    );
    assert_eq!(todo_call("POST", "/todos", r#"{"title":"ship"}"#)?.0, 201);
    assert_eq!(todo_call("POST", "/todos", r#"{"title":""}"#)?.0, 400);
    assert_eq!(todo_call("PUT", "/todos/1", r#"{"done":true}"#)?.0, 200);

    // A new pod of the Deployment finds the todos on the claim.
    cluster.kubectl_ok(&["delete", "pods", "-n", "todo", "-l", "app=todo-api"])?;
    cluster.wait_for(Duration::from_secs(120), "the todos from a new pod", |_| {
        Ok(todo_call("GET", "/todos", "").is_ok_and(|(status, body)| {
            status == 200
                && body
                    == r#"[{"id":1,"title":"write docs","done":true},{"id":2,"title":"ship","done":false}]"#
        }))
    })?;

    let report = repo_root().join("examples/cron-report/manifest.yaml");
    cluster.kubectl_ok(&["apply", "-f", report.to_str().unwrap()])?;
    // Run the CronJob now: every minute instead of daily (kubectl's
    // `create job --from=cronjob/...` is not accepted by the API server yet).
    cluster.kubectl_ok(&[
        "patch",
        "cronjob",
        "cron-report",
        "-n",
        "todo",
        "--type=merge",
        "-p",
        r#"{"spec":{"schedule":"* * * * *"}}"#,
    ])?;
    let mut job = String::new();
    cluster.wait_for(Duration::from_secs(150), "a report job to succeed", |c| {
        let out = c.kubectl_ok(&[
            "get",
            "jobs",
            "-n",
            "todo",
            "-o",
            r#"jsonpath={range .items[?(@.status.succeeded==1)]}{.metadata.name}{"\n"}{end}"#,
        ])?;
        job = out.lines().next().unwrap_or_default().to_string();
        Ok(!job.is_empty())
    })?;
    let logs = cluster.kubectl_ok(&["logs", "-n", "todo", &format!("job/{job}")])?;
    for field in [
        r#""msg":"report""#,
        r#""title":"Daily todos""#,
        r#""total":"2""#,
        r#""done":"1""#,
        r#""open":"1""#,
    ] {
        assert!(logs.contains(field), "missing {field} in {logs}");
    }
    assert!(!logs.contains("not-for-the-logs"), "{logs}");
    Ok(())
}
