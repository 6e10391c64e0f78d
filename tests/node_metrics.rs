//! The node's Prometheus `/metrics`: `skiff up`, the real kubectl, a Wasm pod;
//! the figures a scrape shows move when the pod starts and when it goes.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::{Cluster, build_guests, manifest};

/// `GET /metrics` on the node agent: the content type and the samples by
/// their name with labels, as written (`name{a="b"}`).
fn scrape(agent: SocketAddr) -> Result<(String, HashMap<String, f64>)> {
    let mut stream = TcpStream::connect_timeout(&agent, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {agent}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("response without a header end")?;
    ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .context("no content type")?;
    let mut samples = HashMap::new();
    for line in body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').context("a sample without a value")?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            value => value
                .parse()
                .with_context(|| format!("the value of {line:?}"))?,
        };
        samples.insert(key.to_string(), value);
    }
    Ok((content_type, samples))
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[test]
fn node_metrics_follow_a_pod_through_its_life() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let port = cluster.kubectl_ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.daemonEndpoints.kubeletEndpoint.Port}",
    ])?;
    let agent: SocketAddr = ([127, 0, 0, 1], port.trim().parse()?).into();

    let (content_type, before) = scrape(agent)?;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let running = "skiff_node_pods{phase=\"Running\"}";
    assert_eq!(value(&before, running), 0.0, "{before:?}");
    assert!(before.contains_key("skiff_node_pods{phase=\"Pending\"}"));
    assert!(before.contains_key("skiff_wasm_compile_cache_misses_total"));

    let dir = tempfile::tempdir()?;
    let yaml = r#"apiVersion: v1
kind: Pod
metadata:
  name: metered
spec:
  containers:
    - name: hello
      image: file:///usr/local/share/skiff/examples/hello.wasm
"#;
    let path = manifest(dir.path(), "pod.yaml", yaml);
    cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
    cluster.wait_field(
        &["pod", "metered"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    )?;

    let (_, after) = scrape(agent)?;
    assert_eq!(value(&after, running), 1.0, "{after:?}");
    let starts = "skiff_node_container_starts_total";
    assert_eq!(value(&after, starts), value(&before, starts) + 1.0);
    let started = "skiff_node_pod_start_duration_seconds_count";
    assert_eq!(value(&after, started), value(&before, started) + 1.0);
    assert_eq!(
        value(
            &after,
            "skiff_node_pod_start_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        value(&after, started)
    );
    let compiled = value(&after, "skiff_wasm_compile_cache_misses_total")
        + value(
            &after,
            "skiff_wasm_compile_cache_hits_total{cache=\"disk\"}",
        )
        + value(
            &after,
            "skiff_wasm_compile_cache_hits_total{cache=\"memory\"}",
        );
    assert!(
        compiled >= 1.0,
        "the pod's artifact was looked up: {after:?}"
    );
    // The guest's instance holds linear memory while it runs.
    let memory = "pod_memory_working_set_bytes{namespace=\"default\",pod=\"metered\"}";
    assert!(value(&after, memory) > 0.0, "{after:?}");
    assert!(value(&after, "skiff_wasm_memory_bytes") >= value(&after, memory));
    assert!(after.contains_key(
        "container_cpu_usage_seconds_total{container=\"hello\",namespace=\"default\",pod=\"metered\"}"
    ));

    cluster.kubectl_ok(&["delete", "pod", "metered", "--wait=true"])?;
    cluster.wait_for(
        Duration::from_secs(60),
        "the pod to leave the metrics",
        |_| {
            let (_, gone) = scrape(agent)?;
            Ok(value(&gone, running) == 0.0 && !gone.contains_key(memory))
        },
    )?;
    Ok(())
}
