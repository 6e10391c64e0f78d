//! The request and response types of the store's key-value API.

/// A point in the store's history: bumped by one for every transaction that writes.
pub type Revision = i64;

/// A key with its value and the revisions that describe its life, as etcd reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the put that created the key (since its last delete).
    pub create_revision: Revision,
    /// Revision of the last put (or, in a delete event, of the delete).
    pub mod_revision: Revision,
    /// Number of puts since creation; 1 right after creation, 0 in a delete event.
    pub version: i64,
}

/// Live keys under a prefix and the revision they were read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    pub revision: Revision,
    /// Keys were left out by [`RangeOptions::limit`]: ask again from the key after the
    /// last one returned (its key + `"\0"`) at the same `revision`.
    pub more: bool,
}

/// What [`Store::range_page`](crate::Store::range_page) reads beyond a prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Read the keys as they were at this revision (`None`: the latest). Below the
    /// compacted revision fails with `Compacted`, above the current with `FutureRevision`.
    pub revision: Option<Revision>,
    /// Return at most this many keys (`None`: all); `RangeResponse::more` tells whether
    /// some were left out.
    pub limit: Option<usize>,
    /// Start at this key (inclusive) rather than at the prefix: how a next page (a
    /// Kubernetes `continue`) resumes.
    pub start: Option<String>,
    pub consistency: crate::ReadConsistency,
}

/// If every compare holds, run `success`, otherwise `failure`; atomically, as one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

/// One equality test on a key's current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: String,
    pub target: CompareTarget,
}

/// What a [`Compare`] checks; all are equality. An absent key has mod and create
/// revision 0 and never equals any value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    ModRevision(Revision),
    CreateRevision(Revision),
    Value(Vec<u8>),
}

/// One write in a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// What a transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held (so `success` ran).
    pub succeeded: bool,
    /// The store revision after the transaction; unchanged if it wrote nothing.
    pub revision: Revision,
    /// One result per executed op, in order.
    pub results: Vec<OpResult>,
}

/// The outcome of one [`Op`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    Delete {
        prev: Option<KeyValue>,
    },
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For a delete: the key, an empty value, `mod_revision` = the delete's revision,
    /// create revision and version 0.
    pub kv: KeyValue,
    /// The key's state before this change (for a delete: the deleted kv).
    pub prev: Option<KeyValue>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

impl Txn {
    /// A transaction with no compares that runs `ops`.
    pub fn ops(ops: Vec<Op>) -> Txn {
        Txn {
            compare: Vec::new(),
            success: ops,
            failure: Vec::new(),
        }
    }
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }

    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

impl Compare {
    pub fn mod_revision(key: impl Into<String>, revision: Revision) -> Compare {
        Compare {
            key: key.into(),
            target: CompareTarget::ModRevision(revision),
        }
    }

    /// Holds only while `key` does not exist.
    pub fn absent(key: impl Into<String>) -> Compare {
        Compare::mod_revision(key, 0)
    }
}

/// A member of a replicated group as the group records it: its Raft id, a name for
/// people, and where other members reach its peer transport. Added with the group
/// (`StoreConfig::member_info`) or by [`Store::add_member`](crate::Store::add_member).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub id: u64,
    pub name: String,
    /// `HOST:PORT` of the member's peer listener (empty for in-process groups).
    pub peer_addr: String,
}
