//! etcd, the peer: Debian's `etcd` started on loopback ports in a temp directory,
//! reached through its v3 gRPC-gateway JSON API over keep-alive HTTP/1.1.
//!
//! Why the gateway: the workspace has no gRPC stack, and the gateway is part of every
//! etcd 3.4 server. It is not free: each request is parsed from JSON and forwarded
//! over an in-process loopback gRPC connection inside etcd, so etcd pays more per
//! request here than under its own gRPC benchmark tool.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Deserialize;

use super::workload::{Backend, VALUE_BYTES};
use crate::process::{Managed, free_port};

/// A running etcd group; dropping it stops every member by PID.
pub struct EtcdCluster {
    members: Vec<Managed>,
    pub client_urls: Vec<String>,
    _dir: tempfile::TempDir,
}

/// `etcd --version`'s first line, e.g. `3.4.23`.
pub fn version() -> Result<String> {
    let out = Command::new("etcd")
        .arg("--version")
        .output()
        .context("running etcd --version (apt-get install -y etcd-server etcd-client)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("etcd Version: ").map(str::to_owned))
        .context("etcd --version printed no version")
}

/// Waits until every member answers `/health` with `"true"` (etcd: it has a leader).
pub async fn wait_healthy(
    members: &mut [Managed],
    urls: &[String],
    timeout: Duration,
) -> Result<()> {
    let http = reqwest::Client::new();
    let start = Instant::now();
    for (member, url) in members.iter_mut().zip(urls) {
        loop {
            member.check_running()?;
            let healthy = match http.get(format!("{url}/health")).send().await {
                Ok(resp) => resp.text().await.unwrap_or_default().contains("\"true\""),
                Err(_) => false,
            };
            if healthy {
                break;
            }
            if start.elapsed() > timeout {
                bail!("the member at {url} was not healthy within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

impl EtcdCluster {
    pub async fn start(size: usize) -> Result<EtcdCluster> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-bench-etcd-")
            .tempdir()?;
        let mut ports = Vec::new();
        for _ in 0..size {
            ports.push((free_port()?, free_port()?));
        }
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        let mut client_urls = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            members.push(spawn_member(
                dir.path(),
                &format!("m{i}"),
                &client_url,
                &peer_url,
                &initial_cluster,
            )?);
            client_urls.push(client_url);
        }
        let mut cluster = EtcdCluster {
            members,
            client_urls,
            _dir: dir,
        };
        cluster.wait_healthy(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    async fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        wait_healthy(&mut self.members, &self.client_urls, timeout).await
    }

    pub fn client(&self) -> GatewayClient {
        GatewayClient::new(self.client_urls.clone())
    }

    pub fn stop(mut self) {
        for member in &mut self.members {
            member.stop();
        }
    }
}

fn spawn_member(
    dir: &Path,
    name: &str,
    client_url: &str,
    peer_url: &str,
    initial_cluster: &str,
) -> Result<Managed> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new("etcd")
        .args(["--name", name, "--data-dir"])
        .arg(dir.join(name))
        .args(["--listen-client-urls", client_url])
        .args(["--advertise-client-urls", client_url])
        .args(["--listen-peer-urls", peer_url])
        .args(["--initial-advertise-peer-urls", peer_url])
        .args(["--initial-cluster", initial_cluster])
        .args(["--initial-cluster-state", "new"])
        .args(["--initial-cluster-token", "skiff-bench"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting etcd")?;
    Ok(Managed::new(
        child,
        format!("etcd member {name}"),
        Duration::from_secs(10),
    ))
}

/// A keep-alive HTTP client over every member's gateway (etcd's, or the same JSON
/// API served by `skiff-bench store-member`).
#[derive(Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    urls: Arc<Vec<String>>,
    /// The 1 KiB value, base64-encoded once.
    value: Arc<str>,
}

impl GatewayClient {
    pub fn new(urls: Vec<String>) -> GatewayClient {
        GatewayClient {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .expect("a plain HTTP client builds"),
            urls: Arc::new(urls),
            value: Arc::from(B64.encode(vec![b'v'; VALUE_BYTES])),
        }
    }

    async fn call(&self, member: usize, path: &str, body: String) -> Result<bytes::Bytes> {
        let url = format!("{}{path}", self.urls[member]);
        let resp = self
            .http
            .post(&url)
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            bail!("POST {url}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }
}

#[derive(Deserialize)]
struct WatchMessage {
    result: Option<WatchResult>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct WatchResult {
    #[serde(default)]
    created: bool,
    #[serde(default)]
    events: Vec<WatchEvent>,
}

#[derive(Deserialize)]
struct WatchEvent {
    kv: EventKv,
}

#[derive(Deserialize)]
struct EventKv {
    key: String,
}

/// etcd's range end for "every key with this prefix": the prefix with its last byte
/// incremented.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Backend for GatewayClient {
    fn members(&self) -> usize {
        self.urls.len()
    }

    async fn put(&self, member: usize, key: String) -> Result<()> {
        // base64 has no characters JSON must escape, so the body is built as text.
        let body = format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            B64.encode(key),
            self.value
        );
        self.call(member, "/v3/kv/put", body).await?;
        Ok(())
    }

    async fn get(&self, member: usize, key: String) -> Result<()> {
        // No "serializable": etcd's default range is linearizable.
        let body = format!(r#"{{"key":"{}"}}"#, B64.encode(&key));
        let answer = self.call(member, "/v3/kv/range", body).await?;
        if !answer.windows(6).any(|w| w == b"\"kvs\":") {
            bail!("etcd has no value at {key}");
        }
        Ok(())
    }

    async fn watch(
        &self,
        member: usize,
        prefix: String,
    ) -> Result<BoxStream<'static, Result<String>>> {
        let url = format!("{}/v3/watch", self.urls[member]);
        let body = serde_json::json!({"create_request": {
            "key": B64.encode(&prefix),
            "range_end": B64.encode(prefix_end(&prefix)),
        }});
        let resp = self
            .http
            .post(&url)
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        if !resp.status().is_success() {
            bail!("POST {url}: {}", resp.status());
        }
        let mut chunks = resp.bytes_stream();
        let mut buffer = Vec::new();
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<String>>();
        let (created_tx, created_rx) = tokio::sync::oneshot::channel();
        // The gateway streams one JSON object per message; read them as they arrive.
        tokio::spawn(async move {
            let mut created_tx = Some(created_tx);
            while let Some(chunk) = chunks.next().await {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(err) => {
                        let _ = tx.unbounded_send(Err(err.into()));
                        return;
                    }
                };
                buffer.extend_from_slice(&chunk);
                let mut messages =
                    serde_json::Deserializer::from_slice(&buffer).into_iter::<WatchMessage>();
                let mut parsed = Vec::new();
                let mut consumed = 0;
                while let Some(Ok(message)) = messages.next() {
                    consumed = messages.byte_offset();
                    parsed.push(message);
                }
                buffer.drain(..consumed);
                for message in parsed {
                    if let Some(error) = message.error {
                        let _ = tx.unbounded_send(Err(anyhow::anyhow!("watch error: {error}")));
                        return;
                    }
                    let Some(result) = message.result else {
                        continue;
                    };
                    if result.created
                        && let Some(created) = created_tx.take()
                    {
                        let _ = created.send(());
                    }
                    for event in result.events {
                        let key = B64
                            .decode(&event.kv.key)
                            .map(|k| String::from_utf8_lossy(&k).into_owned())
                            .map_err(anyhow::Error::from);
                        if tx.unbounded_send(key).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), created_rx)
            .await
            .context("etcd did not confirm the watch within 10 s")?
            .context("the watch stream ended before etcd confirmed it")?;
        Ok(rx.boxed())
    }
}
