//! Watches. Each watch is a task that reads the on-disk event history after the last
//! revision it delivered, then waits for the applied revision to move and reads again.
//! History and live events are therefore one path: no gap or duplicate where they meet,
//! and a slow reader is not dropped — its task waits on the bounded channel and resumes
//! from disk. Only compaction past its position ends it, with `StoreError::Compacted`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec;
use crate::shared::Shared;
use crate::{Revision, StoreError, WatchEvent};

/// Revisions read from disk per step, bounding what one step holds in memory.
const CHUNK: usize = 256;

/// A stream of changes under a prefix; dropping it ends the subscription.
pub struct Watch {
    events: mpsc::Receiver<Result<WatchEvent, StoreError>>,
}

impl Stream for Watch {
    type Item = Result<WatchEvent, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

pub(crate) fn spawn(
    shared: Arc<Shared>,
    prefix: String,
    after: Revision,
    buffer: usize,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Watch {
    let (tx, events) = mpsc::channel(buffer);
    tracker.spawn(async move {
        let stopped = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = feed(&shared, &prefix, after, &tx) => false,
        };
        if stopped {
            let _ = tx.try_send(Err(StoreError::Stopped));
        }
    });
    Watch { events }
}

/// Sends events after `last` until the reader goes away or an error ends the watch.
async fn feed(
    shared: &Shared,
    prefix: &str,
    mut last: Revision,
    tx: &mpsc::Sender<Result<WatchEvent, StoreError>>,
) {
    let mut applied = shared.subscribe();
    loop {
        // Marked seen before reading, so a revision applied during the read wakes us.
        applied.borrow_and_update();
        loop {
            let (events, scanned_to) = match read_after(shared, prefix, last) {
                Ok(read) => read,
                Err(error) => {
                    let _ = tx.send(Err(error)).await;
                    return;
                }
            };
            let compacted = shared.compacted();
            if compacted > last {
                let _ = tx
                    .send(Err(StoreError::Compacted {
                        requested: last,
                        compacted,
                    }))
                    .await;
                return;
            }
            for event in events {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            match scanned_to {
                Some(revision) => last = revision,
                None => break,
            }
        }
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}

/// Events under `prefix` in up to `CHUNK` revisions after `last`, and the last revision
/// scanned (`None` if there was nothing after `last`).
pub(crate) fn read_after(
    shared: &Shared,
    prefix: &str,
    last: Revision,
) -> Result<(Vec<WatchEvent>, Option<Revision>), StoreError> {
    let mut events = Vec::new();
    let mut scanned_to = None;
    let history = shared.trees.events.range(codec::revision_key(last + 1)..);
    for record in history.take(CHUNK) {
        let (key, value) = record.map_err(StoreError::sled("reading watch history"))?;
        scanned_to = Some(codec::decode_revision_key(&key)?);
        events.extend(
            codec::decode_events(&value)?
                .into_iter()
                .filter(|event| event.kv.key.starts_with(prefix)),
        );
    }
    Ok((events, scanned_to))
}
