//! A pod's volumes as host directories, for drivers to hand to containers: the
//! Wasm driver preopens them at each `volumeMount`'s `mountPath`, an OCI driver
//! can bind-mount the very same directories.
//!
//! ```text
//! <data_dir>/volumes/<pod uid>/<volume name>/      one directory per volume
//! ```
//!
//! - `emptyDir`: created empty when the first container starts, kept across
//!   container restarts, removed with the pod. `sizeLimit` is checked by the pod
//!   worker ([`PodVolumes::usage`]): a pod over it is evicted, as kubelet does.
//! - `configMap`, `secret`, `downwardAPI`, `projected`: the files are (re)written
//!   before each container start, so a restarted container sees the current
//!   objects; always mounted read-only.
//! - `hostPath`: the host directory itself (`DirectoryOrCreate` creates it).
//! - `persistentVolumeClaim`: the bound PersistentVolume's `hostPath`/`local` path.
//!
//! Guests see directories only: a volume or `subPath` that is a file cannot be
//! preopened and fails the start.

mod files;

use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Volume};

use crate::driver::MountSpec;
use crate::sources::{PodFacts, SourceError, Sources};

/// Why a volume could not be set up or mounted. Shown (after kubelet's
/// `MountVolume.SetUp failed for volume "<name>" :`) in the pod's Events.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
    Source {
        volume: String,
        #[source]
        source: SourceError,
    },
    #[error("MountVolume.SetUp failed for volume {volume:?} : {what} {}: {source}", path.display())]
    Io {
        volume: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
    Invalid { volume: String, message: String },
    #[error("volumeMount {mount:?} names no volume of the pod")]
    UnknownVolume { mount: String },
    #[error("volumeMount {mount:?}: {message}")]
    BadMount { mount: String, message: String },
    #[error("workingDir {0:?} must be \"/\" or lie inside one of the container's volumeMounts")]
    WorkingDir(String),
    #[error("workingDir {0:?} must be an absolute path")]
    WorkingDirRelative(String),
}

/// A volume ready to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDir {
    pub host_path: PathBuf,
    /// Volumes the node writes (configMap, secret, ...) are never writable by the pod.
    pub read_only: bool,
}

/// The volumes of one pod, under `<data_dir>/volumes/<uid>`. Containers of the
/// pod start one at a time through [`PodVolumes::set_up`], so two never rewrite
/// the same files at once.
pub struct PodVolumes {
    root: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl PodVolumes {
    pub fn new(data_dir: &Path, pod_uid: &str) -> PodVolumes {
        PodVolumes {
            root: data_dir.join("volumes").join(pod_uid),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes every volume of the pod ready (creating, refreshing) and says where each is.
    pub async fn set_up(
        &self,
        volumes: &[Volume],
        facts: &PodFacts<'_>,
        sources: &mut Sources<'_>,
    ) -> Result<HashMap<String, VolumeDir>, VolumeError> {
        let _guard = self.lock.lock().await;
        let mut dirs = HashMap::new();
        for volume in volumes {
            let dir = self.set_up_one(volume, facts, sources).await?;
            dirs.insert(volume.name.clone(), dir);
        }
        Ok(dirs)
    }

    async fn set_up_one(
        &self,
        volume: &Volume,
        facts: &PodFacts<'_>,
        sources: &mut Sources<'_>,
    ) -> Result<VolumeDir, VolumeError> {
        let name = &volume.name;
        let own = self.root.join(name);
        let io_error = |what: &'static str, path: &Path| {
            let (volume, path) = (name.clone(), path.to_path_buf());
            move |source| VolumeError::Io {
                volume,
                what,
                path,
                source,
            }
        };
        if volume.empty_dir.is_some() {
            tokio::fs::create_dir_all(&own)
                .await
                .map_err(io_error("creating", &own))?;
            // World-writable as kubelet makes it: containers of the pod running
            // as other users (an OCI container's runAsUser) share it too.
            use std::os::unix::fs::PermissionsExt;
            tokio::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o777))
                .await
                .map_err(io_error("creating", &own))?;
            return Ok(VolumeDir {
                host_path: own,
                read_only: false,
            });
        }
        if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            match host.type_.as_deref().unwrap_or_default() {
                "DirectoryOrCreate" => tokio::fs::create_dir_all(&path)
                    .await
                    .map_err(io_error("creating", &path))?,
                "" | "Directory" => {
                    let meta = tokio::fs::metadata(&path)
                        .await
                        .map_err(io_error("reading", &path))?;
                    if !meta.is_dir() {
                        return Err(VolumeError::Invalid {
                            volume: name.clone(),
                            message: format!("hostPath {} is not a directory", host.path),
                        });
                    }
                }
                other => {
                    return Err(VolumeError::Invalid {
                        volume: name.clone(),
                        message: format!(
                            "hostPath type {other} is not supported on a Wasm node (guests see directories only)"
                        ),
                    });
                }
            }
            return Ok(VolumeDir {
                host_path: path,
                read_only: false,
            });
        }
        if let Some(claim) = &volume.persistent_volume_claim {
            let path = facts.claim_path(&claim.claim_name).ok_or_else(|| VolumeError::Invalid {
                volume: name.clone(),
                message: format!(
                    "persistentVolumeClaim {:?} is not bound to a volume with a local path on this node",
                    claim.claim_name
                ),
            })?;
            tokio::fs::create_dir_all(&path)
                .await
                .map_err(io_error("creating", &path))?;
            return Ok(VolumeDir {
                host_path: path,
                read_only: claim.read_only == Some(true),
            });
        }
        let files = files::projected_files(volume, facts, sources)
            .await
            .map_err(|error| match error {
                files::FilesError::Source(source) => VolumeError::Source {
                    volume: name.clone(),
                    source,
                },
                files::FilesError::Invalid(message) => VolumeError::Invalid {
                    volume: name.clone(),
                    message,
                },
            })?;
        let Some(files) = files else {
            return Err(VolumeError::Invalid {
                volume: name.clone(),
                message: "this volume type is not supported on a Wasm node".to_string(),
            });
        };
        files::write_all(&own, &files)
            .await
            .map_err(io_error("writing files into", &own))?;
        Ok(VolumeDir {
            host_path: own,
            read_only: true,
        })
    }

    /// Bytes used by each emptyDir that has a `sizeLimit`, with that limit:
    /// `(volume, used, limit)` for the ones over it.
    pub async fn over_limit(&self, volumes: &[Volume]) -> Vec<(String, u64, u64)> {
        let mut over = Vec::new();
        for volume in volumes {
            let Some(limit) = volume
                .empty_dir
                .as_ref()
                .and_then(|e| e.size_limit.as_ref())
                .and_then(|q| skiff_quantity::parse(&q.0).ok())
                .and_then(|q| u64::try_from(q.value()).ok())
            else {
                continue;
            };
            let dir = self.root.join(&volume.name);
            let used = tokio::task::spawn_blocking(move || files::disk_usage(&dir))
                .await
                .unwrap_or(0);
            if used > limit {
                over.push((volume.name.clone(), used, limit));
            }
        }
        over
    }

    /// Removes every volume directory the node made for the pod (emptyDirs,
    /// projected files); hostPath and PVC data stay.
    pub async fn remove(&self) {
        let _guard = self.lock.lock().await;
        match tokio::fs::remove_dir_all(&self.root).await {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(dir = %self.root.display(), %error, "removing the pod's volumes failed")
            }
        }
    }
}

/// The container's mounts: each `volumeMount` as its volume's directory (or a
/// `subPath` inside it, created as a directory if missing), read-only when
/// either says so. A `subPath` naming a file is mounted as that file when the
/// container has a root filesystem of its own (an OCI image); a Wasm guest
/// can only be given directories.
pub fn mounts(
    container: &Container,
    volumes: &HashMap<String, VolumeDir>,
    root_filesystem: bool,
) -> Result<Vec<MountSpec>, VolumeError> {
    let mut specs = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .get(&mount.name)
            .ok_or_else(|| VolumeError::UnknownVolume {
                mount: mount.name.clone(),
            })?;
        let bad = |message: String| VolumeError::BadMount {
            mount: mount.name.clone(),
            message,
        };
        if !mount.mount_path.starts_with('/') {
            return Err(bad(format!(
                "mountPath {:?} must be absolute",
                mount.mount_path
            )));
        }
        let mut host_path = volume.host_path.clone();
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if !is_relative_inside(sub) {
                return Err(bad(format!(
                    "subPath {sub:?} must be a relative path without '..'"
                )));
            }
            host_path.push(sub);
            if !host_path.exists() && !volume.read_only {
                std::fs::create_dir_all(&host_path)
                    .map_err(|e| bad(format!("creating subPath {sub:?}: {e}")))?;
            }
            let mountable = host_path.is_dir() || (root_filesystem && host_path.is_file());
            if !mountable {
                return Err(bad(if root_filesystem {
                    format!("subPath {sub:?} is neither a directory nor a file")
                } else {
                    format!(
                        "subPath {sub:?} is not a directory (Wasm guests mount directories only)"
                    )
                }));
            }
        }
        specs.push(MountSpec {
            host_path,
            container_path: mount.mount_path.clone(),
            read_only: volume.read_only || mount.read_only == Some(true),
        });
    }
    Ok(specs)
}

/// The container's `workingDir`, if it has one. With a root filesystem of its
/// own (an OCI image) any absolute path will do (the runtime creates it if
/// missing, as container runtimes do for Kubernetes); a Wasm guest sees only
/// its mounts, so it must be `/` or a directory inside one of them.
pub fn working_dir(
    container: &Container,
    mounts: &[MountSpec],
    root_filesystem: bool,
) -> Result<Option<String>, VolumeError> {
    let Some(dir) = container.working_dir.as_deref().filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    if root_filesystem {
        return if dir.starts_with('/') {
            Ok(Some(dir.to_string()))
        } else {
            Err(VolumeError::WorkingDirRelative(dir.to_string()))
        };
    }
    let inside = |mount: &MountSpec| {
        let base = mount.container_path.trim_end_matches('/');
        dir == base
            || dir
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if dir == "/" || (dir.starts_with('/') && mounts.iter().any(inside)) {
        Ok(Some(dir.to_string()))
    } else {
        Err(VolumeError::WorkingDir(dir.to_string()))
    }
}

/// True for `a/b`, false for `/a`, `../a`, `a/../../b`, ``.
pub(crate) fn is_relative_inside(path: &str) -> bool {
    let path = Path::new(path);
    !path.as_os_str().is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
