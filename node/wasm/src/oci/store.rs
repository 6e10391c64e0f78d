//! What the node has pulled, kept across restarts so `IfNotPresent` and `Never`
//! work without the registry:
//!
//! ```text
//! <cache_dir>/images/index.json        {"tags": {"reg/repo:tag": "sha256:<manifest>"},
//!                                       "manifests": {"sha256:<manifest>": "sha256:<wasm>"}}
//! <cache_dir>/images/blobs/<hex>.wasm  the wasm layer, named by its digest
//! ```
//!
//! The wasm bytes are kept (not only the compiled code) because compiled code
//! only loads into an identical engine; after an upgrade the node recompiles.
//! Both files are written to a temporary name and renamed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::reference::Reference;
use crate::artifact;

#[derive(Default, Serialize, Deserialize)]
struct Index {
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    manifests: BTreeMap<String, String>,
}

/// A reference resolved from the index: the manifest digest and the wasm digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) manifest: String,
    pub(crate) content: String,
}

pub(crate) struct ImageStore {
    dir: PathBuf,
    index: Mutex<Index>,
}

impl ImageStore {
    pub(crate) fn open(cache_dir: &Path) -> std::io::Result<ImageStore> {
        let dir = cache_dir.join("images");
        std::fs::create_dir_all(dir.join("blobs"))?;
        let index = match std::fs::read(dir.join("index.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                // Losing the index only costs pulls; refusing to start would cost more.
                tracing::warn!(%error, dir = %dir.display(), "ignoring unreadable image index");
                Index::default()
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Index::default(),
            Err(error) => return Err(error),
        };
        Ok(ImageStore {
            dir,
            index: Mutex::new(index),
        })
    }

    /// What `reference` resolved to when last pulled, if its wasm is still on disk.
    pub(crate) fn lookup(&self, reference: &Reference) -> Option<Entry> {
        let index = self.index.lock().expect("lock poisoned");
        let manifest = match &reference.digest {
            Some(digest) => digest.clone(),
            None => index.tags.get(&tag_key(reference))?.clone(),
        };
        let content = index.manifests.get(&manifest)?.clone();
        self.has_blob(&content)
            .then_some(Entry { manifest, content })
    }

    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).exists()
    }

    /// Reads a stored wasm layer, checking it still has its digest.
    pub(crate) fn read_blob(&self, digest: &str) -> std::io::Result<Vec<u8>> {
        let bytes = std::fs::read(self.blob_path(digest))?;
        if artifact::digest(&bytes) != digest {
            let _ = std::fs::remove_file(self.blob_path(digest));
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("stored layer {digest} is damaged; it was removed"),
            ));
        }
        Ok(bytes)
    }

    /// Remembers a pull: the layer (when given and not already stored) and the
    /// reference → manifest → content mapping.
    pub(crate) fn record(
        &self,
        reference: &Reference,
        entry: &Entry,
        layer: Option<&[u8]>,
    ) -> std::io::Result<()> {
        if let Some(bytes) = layer
            && !self.has_blob(&entry.content)
        {
            write_atomically(&self.blob_path(&entry.content), bytes)?;
        }
        let mut index = self.index.lock().expect("lock poisoned");
        if reference.digest.is_none() {
            index
                .tags
                .insert(tag_key(reference), entry.manifest.clone());
        }
        index
            .manifests
            .insert(entry.manifest.clone(), entry.content.clone());
        let bytes = serde_json::to_vec_pretty(&*index).map_err(std::io::Error::other)?;
        // Written under the lock so two pulls cannot interleave their renames.
        write_atomically(&self.dir.join("index.json"), &bytes)
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs").join(format!("{hex}.wasm"))
    }
}

fn tag_key(reference: &Reference) -> String {
    let tag = reference.tag.as_deref().unwrap_or("latest");
    format!("{}/{}:{tag}", reference.registry, reference.repository)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(error) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_tags_across_reopen_and_checks_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = b"\0asm\x01\0\0\0";
        let entry = Entry {
            manifest: artifact::digest(b"manifest"),
            content: artifact::digest(wasm),
        };
        let tagged = Reference::parse("127.0.0.1:5000/a/b:v1").unwrap();
        {
            let store = ImageStore::open(dir.path()).unwrap();
            assert_eq!(store.lookup(&tagged), None);
            store.record(&tagged, &entry, Some(wasm)).unwrap();
        }
        let store = ImageStore::open(dir.path()).unwrap();
        assert_eq!(store.lookup(&tagged), Some(entry.clone()));
        let pinned = Reference::parse(&format!("127.0.0.1:5000/a/b@{}", entry.manifest)).unwrap();
        assert_eq!(store.lookup(&pinned), Some(entry.clone()));
        let other_tag = Reference::parse("127.0.0.1:5000/a/b:v2").unwrap();
        assert_eq!(store.lookup(&other_tag), None);
        assert_eq!(store.read_blob(&entry.content).unwrap(), wasm);

        // A damaged layer is refused and forgotten.
        std::fs::write(store.blob_path(&entry.content), b"other").unwrap();
        assert!(store.read_blob(&entry.content).is_err());
        assert_eq!(store.lookup(&tagged), None);
    }
}
