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

/// The text without terminal colour sequences (`ESC [ … m`).
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// curl through the gateway with this Host header: (status, body).
fn curl_gateway(cluster: &Cluster, host: &str, path: &str) -> Result<(u16, String)> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "60", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Host: {host}"))
        .arg(format!("http://{}{path}", cluster.gateway))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((status.trim().parse().unwrap_or(0), body.to_string()))
}

/// greeter calls hello-http by its short Service name and hello-http calls
/// greeter back by its full name, through the gateway: with no allow-list,
/// under a NetworkPolicy that admits only the greeter's pods (the runtime
/// names the calling pod), and waking hello-http from zero replicas.
#[test]
fn greeter_and_hello_http_call_each_other_by_name() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let example = repo_root().join("examples/greeter/manifest.yaml");
    cluster.kubectl_ok(&["apply", "-f", example.to_str().unwrap()])?;
    for deployment in ["deploy/greeter", "deploy/hello-http"] {
        cluster.kubectl_ok(&[
            "rollout",
            "status",
            deployment,
            "-n",
            "greeter",
            "--timeout=120s",
        ])?;
    }
    let mut last = (0, String::new());
    cluster.wait_for(Duration::from_secs(60), "the greeter to answer", |c| {
        last = curl_gateway(c, "greeter.greeter", "/")?;
        Ok(last.0 == 200)
    })?;
    assert_eq!(
        last.1,
        "Greeter greeter here. http://hello-http/greeter answered 200 OK:\n\
         Hello from hello-http!\npath: /greeter\n"
    );
    let (status, body) = curl_gateway(
        &cluster,
        "hello-http.greeter.svc.cluster.local",
        "/outbound",
    )?;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "outbound request answered 200 OK\nGreeter greeter here.\n"
        )
    );
    // Both calls went through the gateway, as requests to the Services.
    let (_, metrics) = curl_gateway(&cluster, "gateway", "/_skiff/metrics")?;
    for route in ["service/greeter/hello-http", "service/greeter/greeter"] {
        let line = format!("skiff_gateway_requests_total{{route=\"{route}\",code=\"200\"}} 2");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    // ... and the access log has a line for each, with route, status and time.
    let log = strip_colours(&std::fs::read_to_string(cluster.log_path())?);
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("skiff_proxy::access") && l.contains("service/greeter/hello-http"))
        .collect();
    assert!(
        access
            .iter()
            .any(|l| l.contains("status=200") && l.contains("micros=")),
        "{access:?}"
    );

    // Only the greeter's pods may call hello-http: the greeter still can,
    // a client outside cannot.
    let policy = common::manifest(
        &cluster.data_dir,
        "policy.yaml",
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: hello-from-greeter, namespace: greeter}
spec:
  podSelector: {matchLabels: {app: hello-http}}
  ingress:
    - from:
        - podSelector: {matchLabels: {app: greeter}}
"#,
    );
    cluster.kubectl_ok(&["apply", "-f", policy.to_str().unwrap()])?;
    cluster.wait_for(
        Duration::from_secs(30),
        "the policy to deny outsiders",
        |c| Ok(curl_gateway(c, "hello-http.greeter", "/")?.0 == 403),
    )?;
    let (status, body) = curl_gateway(&cluster, "greeter.greeter", "/")?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Hello from hello-http!"), "{body}");
    cluster.kubectl_ok(&[
        "delete",
        "networkpolicy",
        "hello-from-greeter",
        "-n",
        "greeter",
    ])?;

    // hello-http at zero replicas: the greeter's call is held while it starts.
    cluster.kubectl_ok(&[
        "annotate",
        "deploy/hello-http",
        "-n",
        "greeter",
        "skiff.dev/scale-to-zero-after=1h",
    ])?;
    cluster.kubectl_ok(&[
        "scale",
        "deploy/hello-http",
        "-n",
        "greeter",
        "--replicas=0",
    ])?;
    cluster.wait_for(Duration::from_secs(60), "hello-http to have no pod", |c| {
        let pods = c.kubectl_ok(&[
            "get",
            "pods",
            "-n",
            "greeter",
            "-l",
            "app=hello-http",
            "-o",
            "name",
        ])?;
        Ok(pods.trim().is_empty())
    })?;
    let (status, body) = curl_gateway(&cluster, "greeter.greeter", "/")?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Hello from hello-http!"), "{body}");
    cluster.wait_field(
        &["deploy", "hello-http", "-n", "greeter"],
        "{.spec.replicas}",
        "1",
    )?;
    Ok(())
}
