//! Template hashes, revisions and the annotations a Deployment hands down to
//! its ReplicaSets.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use sha2::{Digest, Sha256};

pub const TEMPLATE_HASH: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// Deployment annotations that stay on the Deployment (kubectl's own
/// bookkeeping and the controller's).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// The `pod-template-hash` of a template: a digest of its JSON (fields in
/// a fixed order, maps sorted) and the collision count, in safe characters.
pub fn template_hash(template: &PodTemplateSpec, collision_count: i32) -> String {
    let mut digest = Sha256::new();
    digest.update(serde_json::to_vec(template).expect("a pod template serialises"));
    if collision_count > 0 {
        digest.update(collision_count.to_be_bytes());
    }
    let bytes = digest.finalize();
    crate::names::encode(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Whether the set runs the Deployment's template (ignoring the hash label
/// the controller added).
pub fn runs_template(rs: &ReplicaSet, template: &PodTemplateSpec) -> bool {
    let Some(mut theirs) = rs.spec.as_ref().and_then(|s| s.template.clone()) else {
        return false;
    };
    if let Some(labels) = theirs.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(TEMPLATE_HASH);
    }
    serde_json::to_value(&theirs).ok() == serde_json::to_value(template).ok()
}

pub fn revision_of(rs: &ReplicaSet) -> u64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The annotations the new ReplicaSet carries: the Deployment's own (so
/// `change-cause` shows in `rollout history`) plus revision and sizes.
pub fn replica_set_annotations(
    deployment: &Deployment,
    revision: u64,
    replicas: i32,
    max_surge: i32,
) -> BTreeMap<String, String> {
    let mut annotations: BTreeMap<String, String> = deployment
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .collect();
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.insert(DESIRED_REPLICAS.into(), replicas.to_string());
    annotations.insert(MAX_REPLICAS.into(), (replicas + max_surge).to_string());
    annotations
}
