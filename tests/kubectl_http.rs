//! HTTP functions end to end: `skiff up`, the real kubectl, the hello-http
//! example served on its hostPort, its ports listed by the node agent, and the
//! port closed when the pod is deleted.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::Result;
use common::{Cluster, build_guests, manifest, repo_root};

/// `GET path` from the server at `addr`, with `addr` as the Host header.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let addr = addr.to_string();
    common::http::get(&addr, &addr, path)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[test]
fn hello_http_is_served_on_its_host_port() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let yaml = std::fs::read_to_string(repo_root().join("examples/hello-http/manifest.yaml"))?
        .replace("hostPort: 18080", &format!("hostPort: {port}"));
    let path = manifest(dir.path(), "hello-http.yaml", &yaml);
    let applied = cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    assert!(applied.contains("pod/hello-http created"), "{applied}");
    let pod = ["pod", "hello-http", "-n", "hello-http"];
    cluster.wait_field(
        &pod,
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    )?;

    // Ready means the node port accepts connections: the first request works.
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let (status, body) = get(addr, "/some/path?q=1")?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "Hello from hello-http!\npath: /some/path\n");
    assert_eq!(get(addr, "/count")?.1, "requests in this instance: 1\n");
    assert_eq!(get(addr, "/count")?.1, "requests in this instance: 1\n");
    assert_eq!(get(addr, "/trap")?.0, 500);
    assert_eq!(get(addr, "/after-trap")?.0, 200);
    cluster.wait_for(Duration::from_secs(30), "the request log", |c| {
        let logs = c.kubectl_ok(&["logs", "hello-http", "-n", "hello-http"])?;
        Ok(logs.contains("GET /some/path") && logs.contains("request handler trapped"))
    })?;

    // The node agent lists where the pod is served.
    let kubelet_port = cluster.kubectl_ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.daemonEndpoints.kubeletEndpoint.Port}",
    ])?;
    let agent: SocketAddr = ([127, 0, 0, 1], kubelet_port.trim().parse()?).into();
    let (status, body) = get(agent, "/pods/hello-http/hello-http/ports")?;
    assert_eq!(status, 200, "{body}");
    let ports: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        ports,
        serde_json::json!([{"container": "hello-http", "name": "http", "containerPort": 8080,
            "hostIP": "127.0.0.1", "hostPort": port}])
    );

    cluster.kubectl_ok(&["delete", "pod", "hello-http", "-n", "hello-http"])?;
    cluster.wait_for(Duration::from_secs(60), "the port to close", |_| {
        Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err())
    })?;
    let (status, _) = get(agent, "/pods/hello-http/hello-http/ports")?;
    assert_eq!(status, 404);
    Ok(())
}
