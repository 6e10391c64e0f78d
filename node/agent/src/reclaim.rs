//! Reclaiming the volumes this node provisioned (see [`crate::claims`]) once
//! their claims are gone, by the volume's `persistentVolumeReclaimPolicy`, as
//! Kubernetes' PV controller and a local-path provisioner do together:
//!
//! - `Delete` (what the `local-path` class gives): the volume's directory is
//!   removed from this node's disk, then the PersistentVolume is deleted;
//! - `Retain` (or `Recycle`, which no local volume supports): the volume and its
//!   data stay; its `status.phase` becomes `Released`, so it is not bound again
//!   until an administrator clears its `claimRef`.
//!
//! A claim is gone when no claim of its namespace and name exists, or one with
//! another uid (it was deleted and made again). While a container on this node
//! still has the directory mounted (the claim was deleted under a running pod:
//! Skiff has no `kubernetes.io/pvc-protection` finalizer yet), the directory is
//! kept and the volume checked again every [`IN_USE_RETRY`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::claims::{LocalPath, PROVISIONER, affinity_allows};
use crate::cluster::{Cluster, ClusterError, StorageChange};
use crate::driver::error_chain;
use crate::running::RunningTable;

/// How often a released volume that is still mounted, or whose reclaim
/// failed, is tried again.
pub const IN_USE_RETRY: Duration = Duration::from_secs(5);

/// What became of a volume when it was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaimed {
    /// Its claim is still there (or it never had one): nothing to do.
    InUse,
    /// Its claim is gone but a container here still mounts it: try again later.
    Mounted,
    /// Directory removed and volume deleted (`Delete`).
    Deleted,
    /// Marked `Released`, data kept (`Retain`).
    Released,
}

/// Watches volumes and claims, and reclaims this node's volumes.
pub struct Reclaimer {
    pub cluster: Arc<dyn Cluster>,
    pub node_name: String,
    pub data_dir: PathBuf,
    pub running: Arc<RunningTable>,
}

impl Reclaimer {
    /// Runs until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let mut changes = self.cluster.watch_storage();
        let mut volumes: HashMap<String, PersistentVolume> = HashMap::new();
        let mut again: HashSet<String> = HashSet::new();
        let mut retry = tokio::time::interval(IN_USE_RETRY);
        loop {
            let check: Vec<String> = tokio::select! {
                _ = cancel.cancelled() => return,
                change = changes.next() => match change {
                    None => return,
                    Some(Err(error)) => {
                        tracing::warn!(error = %error_chain(&error), "volume watch failed; retrying");
                        continue;
                    }
                    Some(Ok(StorageChange::Volume(volume))) => {
                        let name = volume.metadata.name.clone().unwrap_or_default();
                        if !self.owns(&volume) {
                            continue;
                        }
                        volumes.insert(name.clone(), *volume);
                        vec![name]
                    }
                    Some(Ok(StorageChange::VolumeDeleted(name))) => {
                        volumes.remove(&name);
                        again.remove(&name);
                        continue;
                    }
                    Some(Ok(StorageChange::ClaimDeleted { uid, .. })) => volumes
                        .iter()
                        .filter(|(_, v)| claim_uid(v) == Some(uid.as_str()))
                        .map(|(name, _)| name.clone())
                        .collect(),
                },
                _ = retry.tick(), if !again.is_empty() => again.drain().collect(),
            };
            for name in check {
                let Some(volume) = volumes.get(&name) else {
                    continue;
                };
                match self.reclaim(volume).await {
                    Ok(Reclaimed::Mounted) => drop(again.insert(name)),
                    Ok(Reclaimed::Deleted) => drop(volumes.remove(&name)),
                    Ok(Reclaimed::InUse | Reclaimed::Released) => {}
                    Err(error) => {
                        tracing::warn!(volume = %name, error = %error, "reclaiming a volume failed; will retry");
                        again.insert(name);
                    }
                }
            }
        }
    }

    /// A volume this node provisioned: the local-path provisioner's, pinned
    /// here, its directory under this node's `local-path/`.
    fn owns(&self, volume: &PersistentVolume) -> bool {
        let provisioner = volume
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("pv.kubernetes.io/provisioned-by"));
        let Some(spec) = &volume.spec else {
            return false;
        };
        let root = LocalPath::new(&self.node_name, &self.data_dir).root;
        provisioner.map(String::as_str) == Some(PROVISIONER)
            && spec.node_affinity.is_some()
            && affinity_allows(spec, &self.node_name)
            && local_dir(volume).is_some_and(|dir| dir.starts_with(&root) && dir != root)
    }

    /// Checks one of this node's volumes and reclaims it if its claim is gone.
    pub async fn reclaim(&self, volume: &PersistentVolume) -> Result<Reclaimed, ReclaimError> {
        let name = volume.metadata.name.clone().unwrap_or_default();
        let spec = volume.spec.clone().unwrap_or_default();
        let Some(claim) = spec.claim_ref.as_ref() else {
            return Ok(Reclaimed::InUse);
        };
        let (namespace, claim_name) = (
            claim.namespace.clone().unwrap_or_default(),
            claim.name.clone().unwrap_or_default(),
        );
        let current = self.cluster.get_claim(&namespace, &claim_name).await?;
        if current.is_some_and(|c| c.metadata.uid == claim.uid) {
            return Ok(Reclaimed::InUse);
        }
        let dir = local_dir(volume).ok_or(ReclaimError::NoPath)?;
        let policy = spec
            .persistent_volume_reclaim_policy
            .as_deref()
            .unwrap_or("Delete");
        if policy != "Delete" {
            let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref());
            if phase != Some("Released") {
                self.cluster
                    .patch_volume_status(&name, json!({ "phase": "Released" }))
                    .await?;
                tracing::info!(volume = %name, claim = %format!("{namespace}/{claim_name}"), policy, "claim deleted; volume released, its data kept");
            }
            return Ok(Reclaimed::Released);
        }
        if self.mounted(&dir) {
            tracing::info!(volume = %name, "claim deleted while a container still mounts the volume; deleting it later");
            return Ok(Reclaimed::Mounted);
        }
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ReclaimError::Directory { path: dir, source }),
        }
        self.cluster.delete_volume(&name).await?;
        tracing::info!(volume = %name, claim = %format!("{namespace}/{claim_name}"), path = %dir.display(), "claim deleted; volume and its directory deleted");
        Ok(Reclaimed::Deleted)
    }

    /// Whether a running container mounts the directory or anything in it.
    fn mounted(&self, dir: &Path) -> bool {
        self.running.pods().iter().any(|pod| {
            pod.containers.values().any(|c| {
                c.template
                    .mounts
                    .iter()
                    .any(|m| m.host_path.starts_with(dir))
            })
        })
    }
}

/// Why a volume could not be reclaimed (it is tried again).
#[derive(Debug, thiserror::Error)]
pub enum ReclaimError {
    #[error("{}", error_chain(.0))]
    Api(#[from] ClusterError),
    #[error("the volume has no local path")]
    NoPath,
    #[error("removing {}: {source}", path.display())]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn claim_uid(volume: &PersistentVolume) -> Option<&str> {
    volume.spec.as_ref()?.claim_ref.as_ref()?.uid.as_deref()
}

fn local_dir(volume: &PersistentVolume) -> Option<PathBuf> {
    let local = volume.spec.as_ref()?.local.as_ref()?;
    Some(PathBuf::from(&local.path))
}
