//! Ranges at an older revision, with a start key and a limit.
//!
//! `kv` holds only each key's latest state, and `events` every change after the
//! compacted revision with the key's state before it (`prev`). The state at revision
//! R is therefore the latest state with the changes after R undone, newest first: each
//! undone change puts back its `prev`, or removes the key if it had none. That needs
//! every event after R, which exists exactly when R is at or above the compacted
//! revision. The caller holds the readers' gate, so the applied state and the
//! compacted revision do not move underneath.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::disk::Trees;
use crate::{KeyValue, RangeOptions, RangeResponse, Revision, StoreError, codec};

pub(crate) fn range(
    trees: &Trees,
    current: Revision,
    compacted: Revision,
    prefix: &str,
    options: &RangeOptions,
) -> Result<RangeResponse, StoreError> {
    let revision = match options.revision {
        None => current,
        Some(requested) if requested > current => {
            return Err(StoreError::FutureRevision { requested, current });
        }
        Some(requested) if requested < compacted => {
            return Err(StoreError::Compacted {
                requested,
                compacted,
            });
        }
        Some(requested) => requested,
    };
    let from = match &options.start {
        Some(start) if start.as_str() > prefix => start.clone(),
        _ => prefix.to_owned(),
    };
    let in_range = |key: &str| key.starts_with(prefix) && key >= from.as_str();
    let limit = options.limit.unwrap_or(usize::MAX);

    let latest = trees
        .kv
        .range(from.as_bytes()..)
        .map(|item| -> Result<KeyValue, StoreError> {
            let (key, value) = item.map_err(StoreError::sled("scanning keys"))?;
            let key = String::from_utf8(key.to_vec())
                .map_err(|e| StoreError::codec("stored key", e.to_string()))?;
            Ok(codec::decode_kv(&value)?.into_key_value(key))
        })
        .take_while(|kv| kv.as_ref().map_or(true, |kv| kv.key.starts_with(prefix)));

    if revision == current {
        // Latest state: stream and stop one past the limit.
        let mut kvs = Vec::new();
        for kv in latest {
            if kvs.len() == limit {
                return Ok(RangeResponse {
                    kvs,
                    revision,
                    more: true,
                });
            }
            kvs.push(kv?);
        }
        return Ok(RangeResponse {
            kvs,
            revision,
            more: false,
        });
    }

    let mut state: BTreeMap<String, KeyValue> = BTreeMap::new();
    for kv in latest {
        let kv = kv?;
        state.insert(kv.key.clone(), kv);
    }
    let after = codec::revision_key(revision);
    for record in trees
        .events
        .range((Bound::Excluded(after), Bound::Unbounded))
        .values()
        .rev()
    {
        let record = record.map_err(StoreError::sled("reading history"))?;
        for event in codec::decode_events(&record)? {
            if !in_range(&event.kv.key) {
                continue;
            }
            match event.prev {
                Some(prev) => state.insert(prev.key.clone(), prev),
                None => state.remove(&event.kv.key),
            };
        }
    }
    let more = state.len() > limit;
    Ok(RangeResponse {
        kvs: state.into_values().take(limit).collect(),
        revision,
        more,
    })
}
