//! Watch streams: `?watch=true` answers with one JSON event per line
//! (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`) over a chunked body.
//!
//! Selectors are applied to both the old and the new state of each change,
//! so an object that starts matching arrives as `ADDED` and one that stops
//! matching leaves as `DELETED` (how a node sees a pod bound to it).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use skiff_store::{EventKind, Revision, Store, StoreError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::objects::{Objects, from_kv};
use crate::resources::Resource;
use crate::selectors::Selectors;
use crate::table;

/// How watch events are written.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub namespace: Option<String>,
    pub selectors: Selectors,
    /// None, "" or "0": start with the current state as ADDED events.
    pub resource_version: Option<String>,
    pub timeout: Option<Duration>,
    pub bookmarks: bool,
    /// Send each object as a one-row Table (kubectl get -w), with this `includeObject`.
    pub table: Option<String>,
}

const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

/// Start a watch; the returned channel yields the encoded lines. The
/// producer task stops when the client goes away, the timeout passes, or the
/// server shuts down.
pub async fn start(
    store: Store,
    resource: &'static Resource,
    request: WatchRequest,
    cancel: CancellationToken,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let (tx, rx) = mpsc::channel(64);
    let objects = Objects::new(&store, resource);
    let mut initial = Vec::new();
    let from: Revision = match request.resource_version.as_deref() {
        None | Some("") | Some("0") => {
            let (items, revision) = objects
                .list(request.namespace.as_deref(), &request.selectors)
                .await?;
            initial = items;
            revision
        }
        Some(rv) => rv.parse().map_err(|_| {
            ApiError::BadRequest(format!("invalid resourceVersion {rv:?} for watch"))
        })?,
    };
    let prefix = resource.prefix(request.namespace.as_deref());
    let watch = store.watch(&prefix, from);
    tokio::spawn(async move {
        let encode = Encoder {
            resource,
            table: request.table.clone(),
        };
        for object in initial {
            if tx.send(encode.event("ADDED", &object)).await.is_err() {
                return;
            }
        }
        let mut watch = match watch {
            Ok(watch) => watch,
            Err(StoreError::Compacted { .. }) => {
                let gone = ApiError::Gone {
                    requested: from,
                    current: store.revision(),
                };
                let _ = tx
                    .send(line(&json!({"type": "ERROR", "object": gone.status()})))
                    .await;
                return;
            }
            Err(err) => {
                let err = ApiError::internal(err);
                let _ = tx
                    .send(line(&json!({"type": "ERROR", "object": err.status()})))
                    .await;
                return;
            }
        };
        let deadline = tokio::time::sleep(request.timeout.unwrap_or(Duration::MAX / 4));
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(BOOKMARK_EVERY);
        bookmark.tick().await;
        let mut last_revision = from;
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = bookmark.tick(), if request.bookmarks => {
                    if tx.send(encode.bookmark(last_revision)).await.is_err() {
                        return;
                    }
                    continue;
                }
                event = watch.next() => event,
            };
            let event = match event {
                Some(Ok(event)) => event,
                Some(Err(err)) => {
                    // A watcher that fell behind relists, as with 410 from etcd.
                    tracing::warn!(%err, prefix, "watch ended");
                    let gone = ApiError::Gone {
                        requested: last_revision,
                        current: store.revision(),
                    };
                    let _ = tx
                        .send(line(&json!({"type": "ERROR", "object": gone.status()})))
                        .await;
                    return;
                }
                None => return,
            };
            last_revision = event.kv.mod_revision;
            let Some((kind, object)) = classify(&event, &request.selectors) else {
                continue;
            };
            let object = Objects::new(&store, resource).present(object);
            if tx.send(encode.event(kind, &object)).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Decide the event type a watcher with `selectors` sees for a store change.
fn classify(
    event: &skiff_store::WatchEvent,
    selectors: &Selectors,
) -> Option<(&'static str, Value)> {
    let prev = event.prev.as_ref().and_then(|kv| from_kv(kv).ok());
    let was = prev.as_ref().is_some_and(|p| selectors.matches(p));
    match event.kind {
        EventKind::Put => {
            let object = from_kv(&event.kv).ok()?;
            let is = selectors.matches(&object);
            match (was, is) {
                (true, true) => Some(("MODIFIED", object)),
                (false, true) => Some(("ADDED", object)),
                (true, false) => Some(("DELETED", object)),
                (false, false) => None,
            }
        }
        EventKind::Delete => {
            let mut object = prev.filter(|_| was)?;
            object["metadata"]["resourceVersion"] = json!(event.kv.mod_revision.to_string());
            Some(("DELETED", object))
        }
    }
}

struct Encoder {
    resource: &'static Resource,
    table: Option<String>,
}

impl Encoder {
    fn event(&self, kind: &str, object: &Value) -> Bytes {
        let object = match &self.table {
            Some(include) => {
                let rv = object["metadata"]["resourceVersion"].as_str().unwrap_or("");
                table::table(
                    self.resource,
                    std::slice::from_ref(object),
                    rv,
                    None,
                    include,
                )
            }
            None => object.clone(),
        };
        line(&json!({"type": kind, "object": object}))
    }

    fn bookmark(&self, revision: Revision) -> Bytes {
        line(&json!({"type": "BOOKMARK", "object": {
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version(),
            "metadata": {"resourceVersion": revision.to_string()},
        }}))
    }
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).expect("JSON values always serialize");
    bytes.push(b'\n');
    Bytes::from(bytes)
}
