//! `skiff-store`: Skiff's etcd. A Raft-replicated MVCC key-value store on sled that
//! knows keys and bytes, not Kubernetes.
//!
//! Every write is a [`Txn`]: compares on keys' current state, then the `success` or
//! `failure` ops. A transaction that changes something gets the next [`Revision`]
//! (one per transaction, shared by all its ops); one that changes nothing leaves the
//! revision alone. An empty store is at revision 1, as in etcd. Keys carry create
//! and mod revisions and a version. [`Store::watch`] replays the history after a
//! revision and then follows live changes; [`Store::compact`] drops old history.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::StreamExt;
//! use skiff_store::{Compare, Op, Store, StoreConfig, Txn};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(StoreConfig::new(dir.path())).await?;
//! let start = store.revision();
//! let mut watch = store.watch("/registry/pods/", start)?;
//!
//! // Create only if absent: etcd's "mod revision 0" compare.
//! let created = store
//!     .txn(Txn {
//!         compare: vec![Compare::absent("/registry/pods/default/web")],
//!         success: vec![Op::put("/registry/pods/default/web", "{}")],
//!         failure: vec![],
//!     })
//!     .await?;
//! assert!(created.succeeded);
//! assert_eq!(created.revision, start + 1);
//!
//! let event = watch.next().await.expect("watch open")?;
//! assert_eq!(event.kv.mod_revision, created.revision);
//! assert_eq!(store.range("/registry/pods/").await?.kvs.len(), 1);
//! store.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! # How a write flows
//! [`Store::txn`] encodes the transaction with a request id into a Raft entry and
//! hands it to the task that owns the `raft::RawNode` (module `node`). That task
//! appends it to the log in sled and flushes (one flush per Raft `Ready`, however many
//! proposals it carries) before acting on it; committed entries go to the apply step
//! (module `apply`), which runs them (module `mvcc`) in one sled transaction together
//! with the applied index and wakes the proposer. With several members
//! ([`Store::open_member`] and a [`Transport`]), followers forward proposals to the
//! leader through Raft; reads are linearizable by ReadIndex (or serializable on request,
//! [`ReadConsistency`]); a member behind the compacted log catches up from a snapshot.
//! Module `sim` (tests and feature `sim`) runs groups over a faulty simulated network
//! and checks client histories for linearizability. See `docs/store.md`.
//! A failed disk write aborts the process rather than answer from state that may not
//! be on disk.
//!
//! # On-disk layout (sled, in `StoreConfig::data_dir`)
//! Integers are big-endian; revisions and indexes as `u64` so keys sort numerically.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `raft_log` | entry index (`u64`) | `eraftpb::Entry`, protobuf; the lowest key is a dataless marker (last compacted entry) |
//! | `raft_state` | `hard_state` / `conf_state` | `eraftpb::HardState` / `ConfState`, protobuf |
//! | `kv` | the key's UTF-8 bytes | format `1`, create revision, mod revision, version (`i64` each), then the value bytes |
//! | `events` | revision (`u64`) | format `1`, count (`u32`), then per event: kind (`1` put, `2` delete), the kv, a `0`/`1` marker and the previous kv |
//! | `meta` | `applied_index` / `revision` / `compacted` | `u64` / `i64` / `i64` |
//! | `meta` | `member/` + id (`u64`) | a [`Member`] as JSON |
//! | `meta` | `removed/` + id (`u64`) | empty: a member removed from the group |
//! | `requests` | request id (`u64`) | index (`u64`) of the entry that applied it, to skip a request delivered twice |
//!
//! In `events`, a kv is key and value as `u32` length + bytes, then create revision,
//! mod revision and version as `i64`. A Raft entry's data is format `1`, the request
//! id (`u64`), then `1` + a transaction (compares, success ops, failure ops) or `2` +
//! a compaction revision; see module `codec`. An empty entry is a new leader's no-op.
//! `kv`, `events`, `meta` and `requests` change only inside the apply transaction
//! (old `requests` records are pruned outside it, and a member learning of its own
//! removal records it directly); the `raft_*`
//! trees only in the Raft task. Compaction raises `compacted` in that transaction and
//! then removes the events at or below it (finished on the next open if cut short).

mod apply;
mod codec;
mod config;
mod disk;
mod error;
mod history;
mod logger;
mod mvcc;
mod net;
mod node;
mod raft_log;
mod ready;
#[cfg(test)]
mod replay_tests;
mod shared;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
mod snapshot;
mod store;
mod transport;
mod types;
mod watch;

pub use config::StoreConfig;

/// The longest key a transaction may name, in bytes (Kubernetes keys stay far below).
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// The largest value a put may write: etcd's default request limit (1.5 MiB), so
/// what etcd takes, this store takes.
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;
/// The most key and value bytes one transaction may carry in all: room for a
/// largest value both compared and written.
pub const MAX_TXN_BYTES: usize = 2 * MAX_VALUE_BYTES + 4 * MAX_KEY_BYTES;
pub use error::StoreError;
pub use net::{TcpTransport, serve_peers};
pub use store::{ReadConsistency, Store};
pub use transport::{RaftMessage, Transport};
pub use types::{
    Compare, CompareTarget, EventKind, KeyValue, Member, Op, OpResult, RangeOptions, RangeResponse,
    Revision, Txn, TxnResponse, WatchEvent,
};
pub use watch::Watch;
