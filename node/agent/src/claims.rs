//! PersistentVolumeClaims on this node, and the node-local path provisioner.
//!
//! A pod's `persistentVolumeClaim` volume becomes a host directory:
//!
//! - a claim bound to a PersistentVolume (`spec.volumeName`) uses that volume's
//!   `local.path` or `hostPath.path`, if the volume's `nodeAffinity` allows this
//!   node;
//! - an unbound claim of the StorageClass [`STORAGE_CLASS`] (or of no class: that
//!   class is the default) is provisioned here, by the node the pod was bound to,
//!   which is what the class's `WaitForFirstConsumer` binding mode asks for: a
//!   PersistentVolume `pvc-<claim uid>` with `local.path` =
//!   `<data_dir>/local-path/<namespace>_<claim>_pvc-<claim uid>`, pinned to this node
//!   by `nodeAffinity` (`kubernetes.io/hostname In [node]`), `claimRef` to the claim,
//!   reclaim policy `Delete`, capacity = the claim's request; then the claim gets
//!   `spec.volumeName` and `status.phase: Bound` (guarded by its resourceVersion, so
//!   two nodes racing for one claim cannot both bind it).
//!
//! The capacity is not enforced (as with other local-path provisioners). A
//! deleted claim's volume is reclaimed by [`crate::reclaim`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    LocalVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, PersistentVolumeStatus, Volume,
    VolumeNodeAffinity,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use crate::cluster::{Cluster, ClusterError};
use crate::driver::error_chain;

/// The StorageClass this node provisions (`skiff up` creates it as the default class).
pub const STORAGE_CLASS: &str = "local-path";
/// The class's `provisioner`, and the `pv.kubernetes.io/provisioned-by` annotation.
pub const PROVISIONER: &str = "skiff.dev/local-path";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Why a claim cannot be mounted on this node (shown in `FailedMount` events).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("persistentvolumeclaim {0:?} not found")]
    ClaimNotFound(String),
    #[error("persistentvolumeclaim {0:?} is being deleted")]
    ClaimDeleting(String),
    #[error(
        "persistentvolumeclaim {claim:?} is bound to persistentvolume {volume:?}, which does not exist"
    )]
    VolumeNotFound { claim: String, volume: String },
    #[error(
        "persistentvolumeclaim {claim:?} is not bound, and its StorageClass {class:?} is not provisioned by this node (only {STORAGE_CLASS:?} is)"
    )]
    NotProvisioned { claim: String, class: String },
    #[error(
        "persistentvolume {volume:?} has node affinity for other nodes (volume node affinity conflict)"
    )]
    NodeAffinity { volume: String },
    #[error(
        "persistentvolume {volume:?} has no local or hostPath source (the only kinds a Wasm node mounts)"
    )]
    NoLocalPath { volume: String },
    #[error("persistentvolume {volume:?} is bound to another claim")]
    ClaimedElsewhere { volume: String },
    #[error("creating the directory {} for persistentvolumeclaim {claim:?}: {source}", path.display())]
    Directory {
        claim: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", error_chain(.0))]
    Api(#[from] ClusterError),
}

/// Where this node keeps provisioned volumes, and under which name it runs.
pub struct LocalPath<'a> {
    pub node_name: &'a str,
    /// `<data_dir>/local-path`.
    pub root: PathBuf,
}

impl<'a> LocalPath<'a> {
    pub fn new(node_name: &'a str, data_dir: &Path) -> LocalPath<'a> {
        LocalPath {
            node_name,
            root: data_dir.join("local-path"),
        }
    }

    /// The host directory of each claim the pod's volumes name, by claim name,
    /// binding (and provisioning) unbound claims on the way.
    pub async fn claim_dirs(
        &self,
        cluster: &dyn Cluster,
        namespace: &str,
        volumes: &[Volume],
    ) -> Result<HashMap<String, PathBuf>, ClaimError> {
        let mut dirs = HashMap::new();
        for claim in volumes
            .iter()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
        {
            if dirs.contains_key(&claim.claim_name) {
                continue;
            }
            let dir = self
                .claim_dir(cluster, namespace, &claim.claim_name)
                .await?;
            dirs.insert(claim.claim_name.clone(), dir);
        }
        Ok(dirs)
    }

    async fn claim_dir(
        &self,
        cluster: &dyn Cluster,
        namespace: &str,
        name: &str,
    ) -> Result<PathBuf, ClaimError> {
        let claim = cluster
            .get_claim(namespace, name)
            .await?
            .ok_or_else(|| ClaimError::ClaimNotFound(name.to_string()))?;
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(ClaimError::ClaimDeleting(name.to_string()));
        }
        let bound = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty());
        let volume = match bound {
            Some(volume_name) => cluster.get_volume(&volume_name).await?.ok_or_else(|| {
                ClaimError::VolumeNotFound {
                    claim: name.to_string(),
                    volume: volume_name,
                }
            })?,
            None => self.provision(cluster, &claim).await?,
        };
        let path = self.local_path(&volume, &claim)?;
        tokio::fs::create_dir_all(&path)
            .await
            .map_err(|source| ClaimError::Directory {
                claim: name.to_string(),
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }

    /// The volume's directory, if the volume may be used on this node by this claim.
    fn local_path(
        &self,
        volume: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> Result<PathBuf, ClaimError> {
        let name = volume.metadata.name.clone().unwrap_or_default();
        let spec = volume.spec.clone().unwrap_or_default();
        if let Some(other) = &spec.claim_ref
            && (other.uid.is_some() && other.uid != claim.metadata.uid
                || other.name.is_some() && other.name != claim.metadata.name)
        {
            return Err(ClaimError::ClaimedElsewhere { volume: name });
        }
        if !affinity_allows(&spec, self.node_name) {
            return Err(ClaimError::NodeAffinity { volume: name });
        }
        let path = spec
            .local
            .map(|l| l.path)
            .or(spec.host_path.map(|h| h.path))
            .ok_or(ClaimError::NoLocalPath { volume: name })?;
        Ok(PathBuf::from(path))
    }

    /// Creates this node's volume for an unbound claim and binds the claim to it.
    async fn provision(
        &self,
        cluster: &dyn Cluster,
        claim: &PersistentVolumeClaim,
    ) -> Result<PersistentVolume, ClaimError> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let namespace = claim.metadata.namespace.clone().unwrap_or_default();
        let spec = claim.spec.clone().unwrap_or_default();
        match spec.storage_class_name.as_deref() {
            None | Some(STORAGE_CLASS) => {}
            Some(other) => {
                return Err(ClaimError::NotProvisioned {
                    claim: name,
                    class: other.to_string(),
                });
            }
        }
        let uid = claim.metadata.uid.clone().unwrap_or_default();
        let volume_name = format!("pvc-{uid}");
        let path = self.root.join(format!("{namespace}_{name}_{volume_name}"));
        let capacity = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage").cloned())
            .unwrap_or_else(|| Quantity("0".into()));
        let access_modes = spec.access_modes.clone();
        let volume = PersistentVolume {
            metadata: ObjectMeta {
                name: Some(volume_name.clone()),
                annotations: Some(BTreeMap::from([(
                    "pv.kubernetes.io/provisioned-by".to_string(),
                    PROVISIONER.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeSpec {
                access_modes: access_modes.clone(),
                capacity: Some(BTreeMap::from([("storage".to_string(), capacity.clone())])),
                claim_ref: Some(ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("PersistentVolumeClaim".into()),
                    namespace: Some(namespace.clone()),
                    name: Some(name.clone()),
                    uid: Some(uid),
                    ..ObjectReference::default()
                }),
                local: Some(LocalVolumeSource {
                    path: path.to_string_lossy().into_owned(),
                    fs_type: None,
                }),
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: HOSTNAME_LABEL.into(),
                                operator: "In".into(),
                                values: Some(vec![self.node_name.to_string()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                }),
                persistent_volume_reclaim_policy: Some("Delete".into()),
                storage_class_name: Some(STORAGE_CLASS.into()),
                volume_mode: Some("Filesystem".into()),
                ..PersistentVolumeSpec::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some("Bound".into()),
                ..PersistentVolumeStatus::default()
            }),
        };
        tokio::fs::create_dir_all(&path)
            .await
            .map_err(|source| ClaimError::Directory {
                claim: name.clone(),
                path: path.clone(),
                source,
            })?;
        let volume = if cluster.create_volume(&volume).await? {
            tracing::info!(claim = %format!("{namespace}/{name}"), volume = %volume_name, path = %path.display(), "provisioned a local-path volume");
            volume
        } else {
            // Made by an earlier attempt (or another node): use what is stored.
            cluster
                .get_volume(&volume_name)
                .await?
                .ok_or_else(|| ClaimError::VolumeNotFound {
                    claim: name.clone(),
                    volume: volume_name.clone(),
                })?
        };
        let patch = json!({
            "metadata": {
                "resourceVersion": claim.metadata.resource_version,
                "annotations": {
                    "pv.kubernetes.io/bind-completed": "yes",
                    "pv.kubernetes.io/bound-by-controller": "yes",
                    "volume.kubernetes.io/selected-node": self.node_name,
                    "volume.kubernetes.io/storage-provisioner": PROVISIONER,
                },
            },
            "spec": { "volumeName": volume_name },
        });
        let status = json!({
            "phase": "Bound",
            "accessModes": access_modes,
            "capacity": { "storage": capacity },
        });
        cluster
            .patch_claim(&namespace, &name, patch, status)
            .await?;
        Ok(volume)
    }
}

/// True when the volume has no required node affinity or one of its terms
/// matches this node by `kubernetes.io/hostname` (the only label a provisioned
/// volume uses; terms on other labels are taken to match nothing).
pub(crate) fn affinity_allows(spec: &PersistentVolumeSpec, node_name: &str) -> bool {
    let Some(required) = spec
        .node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required.node_selector_terms.iter().any(|term| {
        let expressions = term.match_expressions.as_deref().unwrap_or_default();
        !expressions.is_empty()
            && expressions.iter().all(|e| {
                let listed = e.values.iter().flatten().any(|v| v == node_name);
                e.key == HOSTNAME_LABEL
                    && match e.operator.as_str() {
                        "In" => listed,
                        "NotIn" => !listed,
                        _ => false,
                    }
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(node: &str) -> PersistentVolumeSpec {
        PersistentVolumeSpec {
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![node.into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            ..PersistentVolumeSpec::default()
        }
    }

    #[test]
    fn node_affinity_pins_a_volume_to_its_node() {
        assert!(affinity_allows(&pinned("n1"), "n1"));
        assert!(!affinity_allows(&pinned("n1"), "n2"));
        assert!(affinity_allows(&PersistentVolumeSpec::default(), "n2"));
    }
}
