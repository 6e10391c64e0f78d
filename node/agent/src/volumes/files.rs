//! The files of configMap, secret, downwardAPI and projected volumes, and
//! writing them into a volume directory.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, Volume, VolumeProjection,
};

use super::is_relative_inside;
use crate::sources::{PodFacts, SourceError, Sources, container_resource, pod_field};

/// Kubernetes' default file mode for projected files.
const DEFAULT_MODE: i32 = 0o644;

/// One file of a volume, relative to the volume's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

pub enum FilesError {
    Source(SourceError),
    Invalid(String),
}

impl From<SourceError> for FilesError {
    fn from(error: SourceError) -> FilesError {
        FilesError::Source(error)
    }
}

/// The files of a volume the node writes itself, or `None` for any other kind.
pub async fn projected_files(
    volume: &Volume,
    facts: &PodFacts<'_>,
    sources: &mut Sources<'_>,
) -> Result<Option<Vec<File>>, FilesError> {
    let mut files = Vec::new();
    if let Some(source) = &volume.config_map {
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        let entries = sources.config_map_entries(&source.name).await?;
        let optional = source.optional == Some(true);
        match entries {
            Some(entries) => select(
                "configmap",
                &entries,
                source.items.as_deref(),
                mode,
                &mut files,
            )?,
            None if optional => {}
            None => return Err(SourceError::ConfigMapNotFound(source.name.clone()).into()),
        }
    } else if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        let optional = source.optional == Some(true);
        match sources.secret_entries(&name).await? {
            Some(entries) => select(
                "secret",
                &entries,
                source.items.as_deref(),
                mode,
                &mut files,
            )?,
            None if optional => {}
            None => return Err(SourceError::SecretNotFound(name).into()),
        }
    } else if let Some(source) = &volume.downward_api {
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        downward(source.items.iter().flatten(), facts, mode, &mut files)?;
    } else if let Some(source) = &volume.projected {
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        for projection in source.sources.iter().flatten() {
            project(projection, facts, sources, mode, &mut files).await?;
        }
    } else {
        return Ok(None);
    }
    Ok(Some(files))
}

async fn project(
    projection: &VolumeProjection,
    facts: &PodFacts<'_>,
    sources: &mut Sources<'_>,
    mode: i32,
    files: &mut Vec<File>,
) -> Result<(), FilesError> {
    if let Some(source) = &projection.config_map {
        match sources.config_map_entries(&source.name).await? {
            Some(entries) => select("configmap", &entries, source.items.as_deref(), mode, files)?,
            None if source.optional == Some(true) => {}
            None => return Err(SourceError::ConfigMapNotFound(source.name.clone()).into()),
        }
    }
    if let Some(source) = &projection.secret {
        match sources.secret_entries(&source.name).await? {
            Some(entries) => select("secret", &entries, source.items.as_deref(), mode, files)?,
            None if source.optional == Some(true) => {}
            None => return Err(SourceError::SecretNotFound(source.name.clone()).into()),
        }
    }
    if let Some(source) = &projection.downward_api {
        downward(source.items.iter().flatten(), facts, mode, files)?;
    }
    // serviceAccountToken: Skiff issues no tokens yet; the source is skipped
    // (docs/node-agent.md) rather than failing pods that kubectl creates with one.
    Ok(())
}

/// Every entry as a file named by its key, or only the `items`, each at its path.
fn select(
    kind: &str,
    entries: &[(String, Vec<u8>)],
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    files: &mut Vec<File>,
) -> Result<(), FilesError> {
    let mode = |m: Option<i32>| (m.unwrap_or(default_mode) & 0o777) as u32;
    match items {
        None => {
            for (key, bytes) in entries {
                push(files, key, bytes.clone(), mode(None))?;
            }
        }
        Some(items) => {
            for item in items {
                let bytes = entries
                    .iter()
                    .find(|(k, _)| *k == item.key)
                    .map(|(_, b)| b.clone())
                    .ok_or_else(|| {
                        FilesError::Invalid(format!(
                            "{kind} references non-existent config key: {}",
                            item.key
                        ))
                    })?;
                push(files, &item.path, bytes, mode(item.mode))?;
            }
        }
    }
    Ok(())
}

fn downward<'f>(
    items: impl Iterator<Item = &'f DownwardAPIVolumeFile>,
    facts: &PodFacts<'_>,
    default_mode: i32,
    files: &mut Vec<File>,
) -> Result<(), FilesError> {
    let first = facts
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .cloned()
        .unwrap_or_else(Container::default);
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            pod_field(facts, &field.field_path)?
        } else if let Some(resource) = &item.resource_field_ref {
            container_resource(facts.pod, &first, resource, facts.allocatable)?
        } else {
            String::new()
        };
        let mode = (item.mode.unwrap_or(default_mode) & 0o777) as u32;
        push(files, &item.path, value.into_bytes(), mode)?;
    }
    Ok(())
}

fn push(files: &mut Vec<File>, path: &str, bytes: Vec<u8>, mode: u32) -> Result<(), FilesError> {
    if !is_relative_inside(path) {
        return Err(FilesError::Invalid(format!(
            "file path {path:?} must be relative and must not contain '..'"
        )));
    }
    files.retain(|f| f.path != path);
    files.push(File {
        path: path.to_string(),
        bytes,
        mode,
    });
    Ok(())
}

/// Makes `dir` hold exactly `files`: writes each (through a temporary name and a
/// rename, so a reader never sees half a file) and removes any other file.
pub async fn write_all(dir: &Path, files: &[File]) -> io::Result<()> {
    let dir = dir.to_path_buf();
    let files = files.to_vec();
    tokio::task::spawn_blocking(move || write_all_blocking(&dir, &files))
        .await
        .map_err(io::Error::other)?
}

fn write_all_blocking(dir: &Path, files: &[File]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let temp = path.with_file_name(format!(
            ".{}.tmp",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        std::fs::write(&temp, &file.bytes)?;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(file.mode))?;
        std::fs::rename(&temp, &path)?;
    }
    remove_others(dir, dir, files)
}

/// Removes files (and then empty directories) under `dir` that are not in `files`.
fn remove_others(root: &Path, dir: &Path, files: &[File]) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap_or(&path);
        if entry.file_type()?.is_dir() {
            remove_others(root, &path, files)?;
            if std::fs::read_dir(&path)?.next().is_none() {
                std::fs::remove_dir(&path)?;
            }
        } else if !files.iter().any(|f| Path::new(&f.path) == relative) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Bytes of the regular files under `dir` (0 when it cannot be read).
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => disk_usage(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
