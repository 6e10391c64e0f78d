//! How members of a group reach each other. The Raft task hands each `Ready`'s
//! messages to a [`Transport`], batched per destination; whatever receives them on the
//! other side calls [`Store::receive`](crate::Store::receive). The simulated network of
//! the fault tests and a real network implement the same trait.

pub use raft::eraftpb::Message as RaftMessage;

/// Delivers Raft messages to other members. Delivery may fail silently (Raft retries
/// what matters); `send` must not block, since it runs inside the Raft task.
pub trait Transport: Send + Sync + 'static {
    /// Sends `messages`, all addressed to member `to`, in order.
    fn send(&self, to: u64, messages: Vec<RaftMessage>);
}

/// The transport of a one-member group: there is no one to send to.
pub(crate) struct NoPeers;

impl Transport for NoPeers {
    fn send(&self, to: u64, messages: Vec<RaftMessage>) {
        tracing::warn!(
            to,
            count = messages.len(),
            "dropping raft messages: this store has no transport to other members"
        );
    }
}
