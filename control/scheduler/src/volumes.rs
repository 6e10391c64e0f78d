//! Where a pod's PersistentVolumes let it run: a local volume (the node-local
//! path provisioner's) is pinned to its node by the volume's `nodeAffinity`, and
//! a pod using it must be bound to that node.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::Api;

/// The nodes the pod's bound PersistentVolumes allow, or `None` when no volume
/// pins the pod. A claim that cannot be read or is not bound yet pins nothing
/// (the node-local provisioner binds it on the node the pod lands on).
pub async fn allowed_nodes(
    client: &kube::Client,
    namespace: &str,
    claims: &[String],
) -> Option<Vec<String>> {
    let mut allowed: Option<Vec<String>> = None;
    for claim in claims {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
        let volume_name = match api.get_opt(claim).await {
            Ok(found) => found.and_then(|c| c.spec?.volume_name),
            Err(err) => {
                tracing::warn!(%err, claim, "reading the claim failed");
                None
            }
        };
        let Some(volume_name) = volume_name.filter(|v| !v.is_empty()) else {
            continue;
        };
        let api: Api<PersistentVolume> = Api::all(client.clone());
        let Ok(Some(volume)) = api.get_opt(&volume_name).await else {
            continue;
        };
        if let Some(nodes) = volume_hostnames(&volume) {
            allowed = Some(match allowed {
                Some(before) => before.into_iter().filter(|n| nodes.contains(n)).collect(),
                None => nodes,
            });
        }
    }
    allowed
}

/// The node names a PersistentVolume's required `nodeAffinity` allows through
/// `kubernetes.io/hostname In [...]` (a node's hostname label is its name here),
/// or `None` when it does not restrict nodes that way.
pub fn volume_hostnames(volume: &PersistentVolume) -> Option<Vec<String>> {
    let required = volume
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?;
    let mut names = Vec::new();
    for term in &required.node_selector_terms {
        for expression in term.match_expressions.iter().flatten() {
            if expression.key == "kubernetes.io/hostname" && expression.operator == "In" {
                names.extend(expression.values.iter().flatten().cloned());
            }
        }
    }
    (!names.is_empty()).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_local_volume_names_its_node() {
        let volume: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pvc-1"},
            "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}}
        }))
        .unwrap();
        assert_eq!(volume_hostnames(&volume), Some(vec!["n2".to_string()]));
        let free: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "pv"}, "spec": {}})).unwrap();
        assert_eq!(volume_hostnames(&free), None);
    }
}
