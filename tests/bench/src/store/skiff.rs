//! The Skiff store, ours: each member a separate `skiff-bench store-member` process
//! (this very binary) on its own sled directory, the members joined by the store's TCP
//! peer transport on loopback, clients reaching them over loopback HTTP/1.1 with the
//! same etcd-gateway JSON as etcd's side (see `member.rs`).

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::etcd::{GatewayClient, wait_healthy};
use crate::process::{Managed, free_port};

/// A running group; [`SkiffCluster::stop`] (or dropping it) stops every member by PID.
pub struct SkiffCluster {
    members: Vec<Managed>,
    client_urls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl SkiffCluster {
    pub async fn start(size: usize) -> Result<SkiffCluster> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-bench-store-")
            .tempdir()?;
        let exe = std::env::current_exe().context("finding skiff-bench's own binary")?;
        let mut ports = Vec::new();
        for _ in 0..size {
            ports.push((free_port()?, free_port()?));
        }
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("{}=127.0.0.1:{peer}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        let mut client_urls = Vec::new();
        for (i, (client, _)) in ports.iter().enumerate() {
            let id = i + 1;
            let log = std::fs::File::create(dir.path().join(format!("m{id}.log")))?;
            let child = Command::new(&exe)
                .arg("store-member")
                .args(["--id", &id.to_string()])
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{id}")))
                .args(["--client-addr", &format!("127.0.0.1:{client}")])
                .args(["--peers", &peers])
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .context("starting a skiff-store member process")?;
            members.push(Managed::new(
                child,
                format!("skiff-store member {id}"),
                Duration::from_secs(10),
            ));
            client_urls.push(format!("http://127.0.0.1:{client}"));
        }
        let mut cluster = SkiffCluster {
            members,
            client_urls,
            _dir: dir,
        };
        wait_healthy(
            &mut cluster.members,
            &cluster.client_urls,
            Duration::from_secs(30),
        )
        .await?;
        Ok(cluster)
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
