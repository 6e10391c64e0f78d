//! Publishes this node's gateway address on its Node object (annotation
//! [`GATEWAY_ANNOTATION`]), so other nodes' gateways can forward to it.
//! The Node may not exist yet when the gateway starts, and may be created
//! again later: the annotation is (re)written whenever the cached Node lacks it.

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cache::Caches;
use crate::upstream::GATEWAY_ANNOTATION;

pub async fn run(
    client: kube::Client,
    caches: Caches,
    node_name: String,
    address: String,
    cancel: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client);
    let mut changes = caches.changes();
    if !caches.ready().await {
        return;
    }
    loop {
        let current = caches.node(&node_name).and_then(|n| {
            n.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(GATEWAY_ANNOTATION).cloned())
        });
        let exists = caches.node(&node_name).is_some();
        if exists && current.as_deref() != Some(address.as_str()) {
            let patch = json!({"metadata": {"annotations": {GATEWAY_ANNOTATION: address}}});
            match nodes
                .patch(&node_name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => tracing::info!(node = node_name, address, "published the gateway address"),
                Err(err) => {
                    tracing::warn!(node = node_name, %err, "publishing the gateway address failed")
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}
