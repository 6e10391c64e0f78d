//! The peer transport between members on different machines: length-delimited frames
//! over TCP, one connection per direction and pair of members.
//!
//! A frame is a `u32` length, then a batch: a `u32` count and each Raft message as a
//! `u32` length and its protobuf encoding (big-endian integers). Each destination has
//! a bounded queue and one task that connects, writes and reconnects; the Raft task
//! only puts batches in that queue and never waits (a full queue drops the batch, as a
//! lossy network would, and Raft sends again what matters). The task writes every
//! batch already queued in one buffer, so a busy leader makes one `write` per turn.
//! Follower-forwarded proposals (`MsgPropose`) and ReadIndex requests are Raft
//! messages too and take the same path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use protobuf::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Member, RaftMessage, Store, Transport};

/// Batches queued per destination before new ones are dropped.
const QUEUE: usize = 1024;
/// The largest frame accepted or sent (a snapshot travels in one message).
const MAX_FRAME: usize = 512 << 20;
/// Bytes gathered into one write before it goes out.
const WRITE_BATCH: usize = 4 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A [`Transport`] over TCP to the peer addresses of the group's [`Member`]s.
pub struct TcpTransport {
    id: u64,
    links: Mutex<HashMap<u64, Link>>,
}

struct Link {
    addr: String,
    queue: mpsc::Sender<Vec<RaftMessage>>,
}

impl TcpTransport {
    /// A transport for member `id` with no peers yet; see [`TcpTransport::set_members`].
    pub fn new(id: u64) -> Arc<TcpTransport> {
        Arc::new(TcpTransport {
            id,
            links: Mutex::new(HashMap::new()),
        })
    }

    /// Points the transport at `members` (this member is skipped): starts a sender
    /// task for each new peer or changed address, ends those of peers no longer listed.
    /// Must be called inside a Tokio runtime.
    pub fn set_members(&self, members: &[Member]) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|id, link| {
            members
                .iter()
                .any(|m| m.id == *id && m.peer_addr == link.addr)
        });
        for member in members {
            if member.id == self.id || links.contains_key(&member.id) {
                continue;
            }
            let (queue, batches) = mpsc::channel(QUEUE);
            tokio::spawn(send_loop(member.id, member.peer_addr.clone(), batches));
            links.insert(
                member.id,
                Link {
                    addr: member.peer_addr.clone(),
                    queue,
                },
            );
        }
    }
}

impl Transport for TcpTransport {
    fn send(&self, to: u64, messages: Vec<RaftMessage>) {
        let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        match links.get(&to) {
            Some(link) => {
                if link.queue.try_send(messages).is_err() {
                    tracing::debug!(to, "peer queue full; dropping raft messages");
                }
            }
            None => tracing::debug!(to, "no address for member; dropping raft messages"),
        }
    }
}

/// Accepts connections from other members on `listener` and hands the messages they
/// carry to `store`, until `cancel` fires.
pub async fn serve_peers(listener: TcpListener, store: Store, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, from)) => {
                let store = store.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        result = receive_loop(stream, &store) => {
                            if let Err(error) = result {
                                tracing::debug!(%from, %error, "peer connection closed");
                            }
                        }
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a peer connection failed");
                tokio::time::sleep(BACKOFF_MIN).await;
            }
        }
    }
}

async fn receive_loop(mut stream: TcpStream, store: &Store) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut frame = Vec::new();
    loop {
        let len = stream.read_u32().await? as usize;
        if len > MAX_FRAME {
            return Err(invalid(format!("frame of {len} bytes exceeds {MAX_FRAME}")));
        }
        frame.resize(len, 0);
        stream.read_exact(&mut frame).await?;
        store.receive(decode_batch(&frame)?);
    }
}

async fn send_loop(to: u64, addr: String, mut batches: mpsc::Receiver<Vec<RaftMessage>>) {
    let mut stream: Option<TcpStream> = None;
    let mut backoff = BACKOFF_MIN;
    let mut buffer = BytesMut::new();
    while let Some(first) = batches.recv().await {
        if stream.is_none() {
            match connect(&addr).await {
                Ok(connected) => {
                    tracing::debug!(to, %addr, "connected to peer");
                    stream = Some(connected);
                    backoff = BACKOFF_MIN;
                }
                Err(error) => {
                    tracing::debug!(to, %addr, %error, "cannot reach peer; dropping messages");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    // What queued meanwhile is stale; Raft sends afresh.
                    while batches.try_recv().is_ok() {}
                    continue;
                }
            }
        }
        buffer.clear();
        encode_batch(&first, &mut buffer);
        while buffer.len() < WRITE_BATCH {
            match batches.try_recv() {
                Ok(batch) => encode_batch(&batch, &mut buffer),
                Err(_) => break,
            }
        }
        let connection = stream.as_mut().expect("connected above");
        if let Err(error) = connection.write_all(&buffer).await {
            tracing::debug!(to, %addr, %error, "peer connection lost; reconnecting");
            stream = None;
        }
    }
}

async fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn encode_batch(messages: &[RaftMessage], out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0);
    out.put_u32(messages.len() as u32);
    for message in messages {
        let bytes = message
            .write_to_bytes()
            .expect("encoding a raft message in memory cannot fail");
        out.put_u32(bytes.len() as u32);
        out.put_slice(&bytes);
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn decode_batch(mut frame: &[u8]) -> std::io::Result<Vec<RaftMessage>> {
    let take_u32 = |frame: &mut &[u8]| -> std::io::Result<usize> {
        if frame.remaining() < 4 {
            return Err(invalid("truncated frame".into()));
        }
        Ok(frame.get_u32() as usize)
    };
    let count = take_u32(&mut frame)?;
    let mut messages = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let len = take_u32(&mut frame)?;
        if frame.remaining() < len {
            return Err(invalid("truncated message".into()));
        }
        let message = RaftMessage::parse_from_bytes(&frame[..len])
            .map_err(|e| invalid(format!("undecodable raft message: {e}")))?;
        frame.advance(len);
        messages.push(message);
    }
    if frame.has_remaining() {
        return Err(invalid(format!("{} trailing bytes", frame.remaining())));
    }
    Ok(messages)
}

fn invalid(reason: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::{Entry, MessageType};

    #[test]
    fn batches_round_trip_and_bad_frames_are_refused() {
        let mut message = RaftMessage::default();
        message.set_msg_type(MessageType::MsgAppend);
        message.to = 2;
        message.from = 1;
        message.set_entries(vec![Entry::default()].into());
        let batch = vec![message.clone(), RaftMessage::default()];
        let mut out = BytesMut::new();
        encode_batch(&batch, &mut out);
        let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 4);
        assert_eq!(decode_batch(&out[4..]).unwrap(), batch);
        assert!(decode_batch(&out[4..out.len() - 1]).is_err());
    }
}
