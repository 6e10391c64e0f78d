//! Plain HTTP exchanges over one fresh TCP connection each, as HTTP/1.0 so a
//! body is never chunked. No retries: callers wait with `Cluster::wait_for`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};

/// Sends `request` as written to `addr` (`host:port`) and reads the answer
/// to its end: status code and body.
pub fn exchange(addr: &str, request: &str) -> Result<(u16, String)> {
    let addr: SocketAddr = addr.parse()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("response without a header end: {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .context("no status code")?
        .parse()?;
    Ok((status, body.to_string()))
}

/// `GET path` with this `Host` header: status code and body.
pub fn get(addr: &str, host: &str, path: &str) -> Result<(u16, String)> {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n"),
    )
}
