//! Namespace deletion: a namespace marked for deletion loses its contents
//! (pods through their node's graceful stop), then goes itself.
//!
//! This is the one controller that lives in the API server for now; the
//! controllers crate will take it over.

use std::time::Duration;

use serde_json::Value;

use crate::objects::{DeleteOptions, Objects};
use std::sync::Arc;

use crate::AppState;
use crate::selectors::Selectors;

const RECHECK: Duration = Duration::from_secs(1);

pub async fn run(state: Arc<AppState>) {
    let (store, cancel) = (&state.store, &state.cancel);
    let namespaces = crate::kinds::namespace::resource();
    loop {
        let terminating: Vec<Value> = match Objects::new(store, &namespaces)
            .list(None, &Selectors::default())
            .await
        {
            Ok((items, _)) => items
                .into_iter()
                .filter(|ns| !ns["metadata"]["deletionTimestamp"].is_null())
                .collect(),
            Err(err) => {
                tracing::warn!(%err, "listing namespaces");
                Vec::new()
            }
        };
        // While a namespace empties, any change may be the one that finishes
        // it; otherwise only namespace changes matter (not every pod status
        // or node heartbeat).
        let watched = if terminating.is_empty() {
            namespaces.prefix(None)
        } else {
            "/registry/".to_string()
        };
        for ns in terminating {
            let name = crate::meta::name(&ns).to_string();
            if let Err(err) = finalize(&state, &name).await {
                tracing::warn!(namespace = %name, %err, "finalizing namespace");
            }
        }
        // Re-check after a change or a short pause; the store's watch wakes us.
        let mut watch = store.watch(&watched, store.revision()).ok();
        let changed = async {
            match watch.as_mut() {
                Some(w) => {
                    futures::StreamExt::next(w).await;
                }
                None => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = changed => tokio::time::sleep(Duration::from_millis(50)).await,
            _ = tokio::time::sleep(RECHECK * 10) => {}
        }
    }
}

/// Delete everything in the namespace; remove it once nothing is left.
async fn finalize(state: &AppState, namespace: &str) -> Result<(), crate::error::ApiError> {
    let store = &state.store;
    let mut remaining = 0;
    for resource in state.registry().all().filter(|r| r.namespaced) {
        let objects = Objects::new(store, resource);
        let (items, _) = objects.list(Some(namespace), &Selectors::default()).await?;
        remaining += items.len();
        for item in items
            .iter()
            .filter(|i| i["metadata"]["deletionTimestamp"].is_null())
        {
            objects
                .delete(
                    Some(namespace),
                    crate::meta::name(item),
                    &DeleteOptions::default(),
                )
                .await
                .ok();
        }
    }
    if remaining == 0 {
        let namespaces = crate::kinds::namespace::resource();
        let key = namespaces.key(None, namespace);
        store
            .txn(skiff_store::Txn {
                compare: vec![],
                success: vec![skiff_store::Op::Delete { key }],
                failure: vec![],
            })
            .await?;
        tracing::info!(namespace, "namespace deleted");
    }
    Ok(())
}
