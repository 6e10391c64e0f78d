//! Keep-alive HTTP/1.1 connections to backends, kept per address and reused,
//! so a request does not pay a TCP connect, a handshake and a new connection
//! on the backend (a node's Wasm HTTP server accepts each one on its own task).
//!
//! A connection goes back to the pool when its response body has been read to
//! the end (hyper's `SendRequest` is ready again); one the backend closed is
//! dropped when taken. A request sent on a pooled connection that the backend
//! closed before the request was written comes back unsent
//! ([`Sent::NotSent`]), so the caller can send it on a fresh connection
//! without any risk of sending it twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::gateway::Body;

/// Idle connections kept per backend address at most.
const IDLE_PER_ADDRESS: usize = 64;
/// Connections returned between two sweeps of closed ones.
const SWEEP_EVERY: usize = 1024;

/// One connection to a backend, ready for a request.
pub struct Connection {
    address: String,
    sender: SendRequest<Body>,
    /// From the pool: it may have been closed by the backend since.
    pub reused: bool,
}

/// What became of a request on a [`Connection`].
pub enum Sent {
    Response(Response<Incoming>),
    /// The connection closed before the request was written: it is whole again.
    NotSent(Request<Body>),
    Failed(hyper::Error),
}

#[derive(Default, Clone)]
pub struct Pool {
    idle: Arc<Mutex<Idle>>,
    /// Whether connections go back to the pool after their response; when
    /// not, each one closes once its response has been read.
    keep: bool,
}

#[derive(Default)]
struct Idle {
    by_address: HashMap<String, Vec<SendRequest<Body>>>,
    /// Returns since closed connections were last swept out.
    returns: usize,
}

impl Pool {
    /// A pool that keeps connections for reuse when `keep` is set.
    pub fn keeping(keep: bool) -> Pool {
        Pool {
            keep,
            ..Pool::default()
        }
    }

    /// An idle connection to `address` that still looks open.
    pub fn take(&self, address: &str) -> Option<Connection> {
        let mut idle = self.idle.lock().expect("pool lock");
        let senders = idle.by_address.get_mut(address)?;
        while let Some(sender) = senders.pop() {
            if sender.is_ready() && !sender.is_closed() {
                return Some(Connection {
                    address: address.to_string(),
                    sender,
                    reused: true,
                });
            }
        }
        idle.by_address.remove(address);
        None
    }

    /// An HTTP/1.1 connection over a stream just connected to `address`.
    pub async fn open(&self, address: &str, stream: TcpStream) -> Result<Connection, hyper::Error> {
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "backend connection ended");
            }
        });
        Ok(Connection {
            address: address.to_string(),
            sender,
            reused: false,
        })
    }

    /// Send `request`; the connection returns to the pool once the response
    /// has been read to the end.
    pub async fn send(&self, mut connection: Connection, request: Request<Body>) -> Sent {
        match connection.sender.try_send_request(request).await {
            Ok(response) if !self.keep => Sent::Response(response),
            Ok(response) => {
                let pool = self.clone();
                tokio::spawn(async move {
                    // Ready again = the response body is done; an error = closed.
                    if connection.sender.ready().await.is_ok() {
                        pool.give_back(connection);
                    }
                });
                Sent::Response(response)
            }
            Err(mut failed) => match failed.take_message() {
                Some(request) => Sent::NotSent(request),
                None => Sent::Failed(failed.into_error()),
            },
        }
    }

    fn give_back(&self, connection: Connection) {
        let mut idle = self.idle.lock().expect("pool lock");
        idle.returns += 1;
        // Backends come and go (each pod serves on a port of its own): now
        // and then drop what they closed, so the pool does not grow with them.
        if idle.returns >= SWEEP_EVERY {
            idle.returns = 0;
            idle.by_address.retain(|_, senders| {
                senders.retain(|s| !s.is_closed());
                !senders.is_empty()
            });
        }
        let senders = idle.by_address.entry(connection.address).or_default();
        if senders.len() < IDLE_PER_ADDRESS {
            senders.push(connection.sender);
        }
    }
}
