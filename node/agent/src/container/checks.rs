//! The runner's [`Checker`]: performs probe actions against a running container.
//! HTTP and TCP checks go to where the node serves the container's port (the
//! node port of a `wasi:http` container, else the node's address and the port
//! itself); an exec check runs the probe's command in the container through
//! [`ContainerDriver::exec`] (for Wasm: the container's own program with the
//! command as argv, its env, mounts and limits; for OCI: `docker exec`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::probe::{Action, CheckFuture, Checker};
use crate::driver::{
    ContainerDriver, ContainerTemplate, ExecSpec, ExitStatus, ServedPort, error_chain,
};

/// Everything an exec probe needs to run a command in the container.
pub struct ExecTemplate {
    pub driver: Arc<dyn ContainerDriver>,
    pub container: ContainerTemplate,
}

pub struct ContainerChecks {
    /// The node's address: pods share it.
    pub host_ip: String,
    /// Filled in by the driver once the container serves.
    pub served: Arc<Mutex<Vec<ServedPort>>>,
    pub exec: ExecTemplate,
}

impl ContainerChecks {
    fn address(&self, host: Option<&str>, port: u16) -> Result<SocketAddr, String> {
        if host.is_none() {
            let served = self.served.lock().expect("lock poisoned");
            if let Some(found) = served.iter().find(|p| p.container_port == port) {
                return Ok(found.address);
            }
        }
        let pod_ip = match (host, &self.exec.container.context) {
            (None, Some(context)) => self
                .exec
                .driver
                .pod_ip(&context.pod.uid)
                .map(|ip| ip.to_string()),
            _ => None,
        };
        let host = host.or(pod_ip.as_deref()).unwrap_or(&self.host_ip);
        format!("{host}:{port}")
            .parse()
            .or_else(|_| format!("[{host}]:{port}").parse())
            .map_err(|_| format!("cannot probe host {host:?}: not an IP address"))
    }

    async fn http(
        &self,
        addr: SocketAddr,
        path: &str,
        headers: &[(String, String)],
    ) -> Result<(), String> {
        let url = format!("http://{addr}{path}");
        let failed = |e: std::io::Error| format!("Get {url:?}: {e}");
        let mut stream = TcpStream::connect(addr).await.map_err(failed)?;
        let mut request = format!(
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.map_err(failed)?;
        // Only the status line matters; kubelet reads at most 10 KiB of the body.
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.contains(&b'\n') && head.len() < 10 * 1024 {
            let n = stream.read(&mut buf).await.map_err(failed)?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("Get {url:?}: malformed HTTP response"))?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    }

    async fn exec(&self, command: &[String]) -> Result<(), String> {
        let template = &self.exec;
        let exec = ExecSpec {
            command: command.to_vec(),
            stdin: None,
            stdout: Box::new(tokio::io::sink()),
            stderr: Box::new(tokio::io::sink()),
            tty: false,
        };
        let cancel = CancellationToken::new();
        let _stop = cancel.clone().drop_guard();
        match template
            .driver
            .exec(&template.container, exec, cancel)
            .await
        {
            Ok(ExitStatus::Code(0)) => Ok(()),
            Ok(ExitStatus::Code(code)) => Err(format!("command {command:?} exited with {code}")),
            Ok(ExitStatus::Trap(message)) => Err(format!("command {command:?} trapped: {message}")),
            Ok(ExitStatus::OomKilled) => Err(format!("command {command:?} ran out of memory")),
            Ok(ExitStatus::Killed) => Err(format!("command {command:?} was killed")),
            Err(error) => Err(format!(
                "command {command:?} could not run: {}",
                error_chain(&error)
            )),
        }
    }
}

impl Checker for ContainerChecks {
    fn check<'a>(&'a self, action: &'a Action, timeout: Duration) -> CheckFuture<'a> {
        Box::pin(async move {
            let check = async {
                match action {
                    Action::Http {
                        host,
                        port,
                        path,
                        headers,
                    } => {
                        let addr = self.address(host.as_deref(), *port)?;
                        self.http(addr, path, headers).await
                    }
                    Action::Tcp { host, port } => {
                        let addr = self.address(host.as_deref(), *port)?;
                        TcpStream::connect(addr)
                            .await
                            .map(drop)
                            .map_err(|e| format!("dial tcp {addr}: {e}"))
                    }
                    Action::Exec { command } => self.exec(command).await,
                    Action::Unsupported(why) => Err(why.clone()),
                }
            };
            match tokio::time::timeout(timeout, check).await {
                Ok(result) => result,
                Err(_) => Err(format!("probe timed out after {timeout:?}")),
            }
        })
    }
}
