//! The one error type of the store.

use crate::Revision;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configuration was rejected before anything was opened.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// sled failed while opening, reading or writing the data directory.
    #[error("store disk access failed while {context}")]
    Sled {
        context: &'static str,
        #[source]
        source: sled::Error,
    },
    /// The data directory could not be opened as a store, or what it holds does not
    /// add up (a truncated log, entries that do not decode, ...): found at start, so
    /// the member refuses to run rather than serve or replicate damaged state.
    #[error("the data directory {dir} is damaged: {problem}")]
    Damaged { dir: String, problem: String },
    /// The Raft library refused an operation.
    #[error("raft failed while {context}")]
    Raft {
        context: &'static str,
        #[source]
        source: raft::Error,
    },
    /// Bytes read from disk or from a Raft entry did not decode.
    #[error("decoding {what} failed: {reason}")]
    Codec { what: &'static str, reason: String },
    /// The transaction itself is malformed (empty key, the same key twice, ...).
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
    /// A key, a value or a whole transaction is above the store's limits
    /// ([`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES), [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES),
    /// [`MAX_TXN_BYTES`](crate::MAX_TXN_BYTES)); refused before it reaches the log.
    #[error("{what} is {size} bytes, above the limit of {limit} bytes")]
    TooLarge {
        what: String,
        size: usize,
        limit: usize,
    },
    /// The history needed to answer starts after `requested`: the caller must
    /// list again and watch from the revision of that list.
    #[error("revision {requested} has been compacted (history kept after revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// A revision newer than the store's current revision was asked for.
    #[error("revision {requested} is in the future (current revision is {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// No answer within `StoreConfig::request_timeout` (no leader, no quorum, or a lost
    /// message). For a write the outcome is unknown: it may still be applied.
    #[error("{what} timed out after {after:?} (no leader or no quorum reachable?)")]
    Timeout {
        what: &'static str,
        after: std::time::Duration,
    },
    /// A membership change was refused (unknown member, the last voter, a change
    /// already in progress, no leader to take it).
    #[error("membership change refused: {0}")]
    Membership(String),
    /// The store was closed (or its Raft task ended) before the request finished.
    #[error("the store is stopped")]
    Stopped,
}

impl StoreError {
    pub(crate) fn sled(context: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
        move |source| StoreError::Sled { context, source }
    }

    pub(crate) fn raft(context: &'static str) -> impl FnOnce(raft::Error) -> StoreError {
        move |source| StoreError::Raft { context, source }
    }

    pub(crate) fn codec(what: &'static str, reason: impl Into<String>) -> StoreError {
        StoreError::Codec {
            what,
            reason: reason.into(),
        }
    }
}
