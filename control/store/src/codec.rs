//! The store's own small binary encoding, for Raft entry payloads, key records and
//! event records. Integers are fixed-width big-endian; strings and byte strings are
//! a `u32` length and the bytes. Every top-level record starts with a format byte so
//! a later layout can be told apart from this one.

use crate::{
    Compare, CompareTarget, EventKind, KeyValue, Op, Revision, StoreError, Txn, WatchEvent,
};

const FORMAT: u8 = 1;

/// What one Raft entry asks the state machine to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Txn(Txn),
    Compact(Revision),
}

/// The payload of a normal Raft entry: a command and the id its proposer waits on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub id: u64,
    pub command: Command,
}

/// A key's latest state as stored in the `kv` tree (the key is the tree key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KvRecord {
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub version: i64,
    pub value: Vec<u8>,
}

impl KvRecord {
    pub fn into_key_value(self, key: String) -> KeyValue {
        KeyValue {
            key,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }
}

/// Encodes a revision as a key that sorts numerically (revisions are never negative).
pub(crate) fn revision_key(revision: Revision) -> [u8; 8] {
    (revision.max(0) as u64).to_be_bytes()
}

pub(crate) fn decode_revision_key(bytes: &[u8]) -> Result<Revision, StoreError> {
    let raw: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::codec("event key", format!("{} bytes, want 8", bytes.len())))?;
    Ok(u64::from_be_bytes(raw) as Revision)
}

pub(crate) fn encode_request(request: &Request) -> Vec<u8> {
    let mut w = Writer(vec![FORMAT]);
    w.u64(request.id);
    match &request.command {
        Command::Txn(txn) => {
            w.u8(1);
            w.len(txn.compare.len());
            for compare in &txn.compare {
                w.str(&compare.key);
                match &compare.target {
                    CompareTarget::ModRevision(r) => (w.u8(1), w.i64(*r)),
                    CompareTarget::CreateRevision(r) => (w.u8(2), w.i64(*r)),
                    CompareTarget::Value(v) => (w.u8(3), w.bytes(v)),
                };
            }
            w.ops(&txn.success);
            w.ops(&txn.failure);
        }
        Command::Compact(revision) => {
            w.u8(2);
            w.i64(*revision);
        }
    }
    w.0
}

pub(crate) fn decode_request(bytes: &[u8]) -> Result<Request, StoreError> {
    let mut r = Reader::new("raft entry", bytes)?;
    let id = r.u64()?;
    let command = match r.u8()? {
        1 => {
            let compare = (0..r.len()?)
                .map(|_| {
                    let key = r.string()?;
                    let target = match r.u8()? {
                        1 => CompareTarget::ModRevision(r.i64()?),
                        2 => CompareTarget::CreateRevision(r.i64()?),
                        3 => CompareTarget::Value(r.bytes()?),
                        tag => return Err(r.bad(format!("compare target tag {tag}"))),
                    };
                    Ok(Compare { key, target })
                })
                .collect::<Result<_, _>>()?;
            let success = r.ops()?;
            let failure = r.ops()?;
            Command::Txn(Txn {
                compare,
                success,
                failure,
            })
        }
        2 => Command::Compact(r.i64()?),
        tag => return Err(r.bad(format!("command tag {tag}"))),
    };
    r.finish()?;
    Ok(Request { id, command })
}

pub(crate) fn encode_kv(record: &KvRecord) -> Vec<u8> {
    let mut w = Writer(vec![FORMAT]);
    w.i64(record.create_revision);
    w.i64(record.mod_revision);
    w.i64(record.version);
    w.0.extend_from_slice(&record.value);
    w.0
}

pub(crate) fn decode_kv(bytes: &[u8]) -> Result<KvRecord, StoreError> {
    let mut r = Reader::new("kv record", bytes)?;
    Ok(KvRecord {
        create_revision: r.i64()?,
        mod_revision: r.i64()?,
        version: r.i64()?,
        value: r.rest().to_vec(),
    })
}

pub(crate) fn encode_events(events: &[WatchEvent]) -> Vec<u8> {
    let mut w = Writer(vec![FORMAT]);
    w.len(events.len());
    for event in events {
        w.u8(match event.kind {
            EventKind::Put => 1,
            EventKind::Delete => 2,
        });
        w.key_value(&event.kv);
        match &event.prev {
            Some(prev) => {
                w.u8(1);
                w.key_value(prev);
            }
            None => w.u8(0),
        }
    }
    w.0
}

pub(crate) fn decode_events(bytes: &[u8]) -> Result<Vec<WatchEvent>, StoreError> {
    let mut r = Reader::new("event record", bytes)?;
    let events = (0..r.len()?)
        .map(|_| {
            let kind = match r.u8()? {
                1 => EventKind::Put,
                2 => EventKind::Delete,
                tag => return Err(r.bad(format!("event kind {tag}"))),
            };
            let kv = r.key_value()?;
            let prev = match r.u8()? {
                0 => None,
                1 => Some(r.key_value()?),
                tag => return Err(r.bad(format!("prev marker {tag}"))),
            };
            Ok(WatchEvent { kind, kv, prev })
        })
        .collect::<Result<_, _>>()?;
    r.finish()?;
    Ok(events)
}

/// The applied state as a Raft snapshot carries it: raw `kv` and `events` records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SnapshotData {
    pub revision: Revision,
    pub compacted: Revision,
    pub kv: Records,
    pub events: Records,
    /// The `member/` records of `meta`.
    pub members: Records,
    /// The `requests` records (ids applied lately, to skip duplicates).
    pub requests: Records,
    /// The `removed/` records of `meta`.
    pub removed: Records,
}

/// Raw (key, value) pairs of one sled tree.
pub(crate) type Records = Vec<(Vec<u8>, Vec<u8>)>;

pub(crate) fn encode_snapshot(data: &SnapshotData) -> Vec<u8> {
    let mut w = Writer(vec![FORMAT]);
    w.i64(data.revision);
    w.i64(data.compacted);
    let sections = [
        &data.kv,
        &data.events,
        &data.members,
        &data.requests,
        &data.removed,
    ];
    for records in sections {
        w.u64(records.len() as u64);
        for (key, value) in records {
            w.bytes(key);
            w.bytes(value);
        }
    }
    w.0
}

pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<SnapshotData, StoreError> {
    let mut r = Reader::new("raft snapshot", bytes)?;
    let revision = r.i64()?;
    let compacted = r.i64()?;
    let mut records = || -> Result<Records, StoreError> {
        let count = r.u64()?;
        let mut out = Vec::new();
        for _ in 0..count {
            out.push((r.bytes()?, r.bytes()?));
        }
        Ok(out)
    };
    let kv = records()?;
    let events = records()?;
    let members = records()?;
    let requests = records()?;
    let removed = records()?;
    r.finish()?;
    Ok(SnapshotData {
        revision,
        compacted,
        kv,
        events,
        members,
        requests,
        removed,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn len(&mut self, n: usize) {
        let n = u32::try_from(n).expect("a store record field is larger than 4 GiB");
        self.0.extend_from_slice(&n.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.0.extend_from_slice(v);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn ops(&mut self, ops: &[Op]) {
        self.len(ops.len());
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    self.u8(1);
                    self.str(key);
                    self.bytes(value);
                }
                Op::Delete { key } => {
                    self.u8(2);
                    self.str(key);
                }
            }
        }
    }
    fn key_value(&mut self, kv: &KeyValue) {
        self.str(&kv.key);
        self.bytes(&kv.value);
        self.i64(kv.create_revision);
        self.i64(kv.mod_revision);
        self.i64(kv.version);
    }
}

struct Reader<'a> {
    what: &'static str,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(what: &'static str, bytes: &'a [u8]) -> Result<Self, StoreError> {
        let mut r = Reader { what, bytes };
        match r.u8()? {
            FORMAT => Ok(r),
            other => Err(r.bad(format!("unknown format {other}"))),
        }
    }
    fn bad(&self, reason: String) -> StoreError {
        StoreError::codec(self.what, reason)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.bytes.len() < n {
            return Err(self.bad(format!(
                "truncated: need {n} bytes, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.array::<1>()?[0])
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, StoreError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn len(&mut self) -> Result<usize, StoreError> {
        Ok(u32::from_be_bytes(self.array()?) as usize)
    }
    fn bytes(&mut self) -> Result<Vec<u8>, StoreError> {
        let n = self.len()?;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String, StoreError> {
        String::from_utf8(self.bytes()?).map_err(|e| self.bad(format!("key is not UTF-8: {e}")))
    }
    fn ops(&mut self) -> Result<Vec<Op>, StoreError> {
        (0..self.len()?)
            .map(|_| match self.u8()? {
                1 => Ok(Op::Put {
                    key: self.string()?,
                    value: self.bytes()?,
                }),
                2 => Ok(Op::Delete {
                    key: self.string()?,
                }),
                tag => Err(self.bad(format!("op tag {tag}"))),
            })
            .collect()
    }
    fn key_value(&mut self) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: self.string()?,
            value: self.bytes()?,
            create_revision: self.i64()?,
            mod_revision: self.i64()?,
            version: self.i64()?,
        })
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
    fn finish(&self) -> Result<(), StoreError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.bad(format!("{} trailing bytes", self.bytes.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, rev: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: b"v".to_vec(),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
        }
    }

    #[test]
    fn requests_round_trip() {
        let request = Request {
            id: u64::MAX - 3,
            command: Command::Txn(Txn {
                compare: vec![
                    Compare::absent("/a"),
                    Compare {
                        key: "/b".into(),
                        target: CompareTarget::Value(vec![0, 1, 2]),
                    },
                    Compare {
                        key: "/c".into(),
                        target: CompareTarget::CreateRevision(7),
                    },
                ],
                success: vec![Op::put("/a", "x"), Op::delete("/b")],
                failure: vec![Op::put("/ü", Vec::new())],
            }),
        };
        let bytes = encode_request(&request);
        assert_eq!(decode_request(&bytes).unwrap(), request);
        let compact = Request {
            id: 1,
            command: Command::Compact(42),
        };
        assert_eq!(decode_request(&encode_request(&compact)).unwrap(), compact);
        assert!(decode_request(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn records_round_trip() {
        let record = KvRecord {
            create_revision: 2,
            mod_revision: 9,
            version: 4,
            value: b"{\"kind\":\"Pod\"}".to_vec(),
        };
        assert_eq!(decode_kv(&encode_kv(&record)).unwrap(), record);
        let events = vec![
            WatchEvent {
                kind: EventKind::Put,
                kv: kv("/a", 3),
                prev: None,
            },
            WatchEvent {
                kind: EventKind::Delete,
                kv: kv("/b", 3),
                prev: Some(kv("/b", 2)),
            },
        ];
        assert_eq!(decode_events(&encode_events(&events)).unwrap(), events);
    }

    #[test]
    fn snapshot_data_round_trips() {
        let data = SnapshotData {
            revision: 9,
            compacted: 3,
            kv: vec![(b"/a".to_vec(), b"x".to_vec())],
            events: vec![(revision_key(4).to_vec(), vec![1, 2])],
            members: vec![(b"member/1".to_vec(), b"{}".to_vec())],
            requests: vec![(7u64.to_be_bytes().to_vec(), 3u64.to_be_bytes().to_vec())],
            removed: vec![(b"removed/4".to_vec(), Vec::new())],
        };
        assert_eq!(decode_snapshot(&encode_snapshot(&data)).unwrap(), data);
        assert!(decode_snapshot(&encode_snapshot(&data)[..10]).is_err());
    }

    #[test]
    fn revision_keys_sort_numerically() {
        assert!(revision_key(255) < revision_key(256));
        assert_eq!(decode_revision_key(&revision_key(77)).unwrap(), 77);
    }
}
