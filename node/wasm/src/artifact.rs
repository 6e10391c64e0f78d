//! Artifacts: recognising the binary format, naming it by digest, compiling it and
//! keeping the compiled code on disk.
//!
//! Disk layout (also in `docs/wasm-node.md`):
//! `<cache_dir>/<engine hash>/<sha256 hex of the .wasm>.cwasm`, where the engine hash
//! is the sha256 of [`Engine::precompile_compatibility_hash`]: a different wasmtime
//! version, feature set or engine setting gets a fresh directory, because
//! precompiled code only loads into a matching engine. Files are written to a
//! temporary name and renamed, so a crash never leaves a torn `.cwasm` behind.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::ProgramKind;

/// Magic and version words of the two binary formats. A core module carries version
/// 1, layer 0; a component carries version 0x0d, layer 1.
const MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
const COMPONENT_LAYER: [u8; 2] = [0x01, 0x00];

/// Says whether `bytes` look like a component or a core module, from the header
/// alone; validation happens when compiling.
pub(crate) fn detect_kind(bytes: &[u8]) -> Result<ProgramKind, String> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err("not a WebAssembly binary (missing the \\0asm header)".into());
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        Ok(ProgramKind::Module)
    } else if bytes[6..8] == COMPONENT_LAYER {
        Ok(ProgramKind::Component)
    } else {
        Err(format!(
            "unsupported WebAssembly version/layer {:02x?}",
            &bytes[4..8]
        ))
    }
}

/// `sha256:<hex>`, the name of an artifact everywhere in the node.
pub(crate) fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Compiled code of either kind.
pub(crate) enum Compiled {
    Component(Component),
    Module(Module),
}

impl Compiled {
    pub(crate) fn compile(
        engine: &Engine,
        kind: ProgramKind,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        Ok(match kind {
            ProgramKind::Component | ProgramKind::HttpProxy => {
                Compiled::Component(Component::new(engine, bytes)?)
            }
            ProgramKind::Module => Compiled::Module(Module::new(engine, bytes)?),
        })
    }

    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            Compiled::Component(c) => c.serialize(),
            Compiled::Module(m) => m.serialize(),
        }
    }
}

/// The on-disk half of the compile cache, for one engine configuration.
pub(crate) struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    pub(crate) fn open(root: &Path, engine: &Engine) -> std::io::Result<DiskCache> {
        let dir = root.join(engine_hash(engine));
        std::fs::create_dir_all(&dir)?;
        Ok(DiskCache { dir })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join(format!("{hex}.cwasm"))
    }

    /// Loads previously compiled code, or `None` when there is none usable. A file
    /// that fails to load (written by an older build, truncated by a full disk) is
    /// removed so the caller's fresh compile replaces it.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        kind: ProgramKind,
        digest: &str,
    ) -> Option<Compiled> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // SAFETY: wasmtime requires that deserialized files came from its own
        // `serialize` for a compatible engine. This directory is private to the node,
        // written only by `store` below (temp file + rename) and keyed by the engine
        // compatibility hash; wasmtime also checks the header and engine settings.
        let loaded = match kind {
            ProgramKind::Component | ProgramKind::HttpProxy => {
                unsafe { Component::deserialize_file(engine, &path) }.map(Compiled::Component)
            }
            ProgramKind::Module => {
                unsafe { Module::deserialize_file(engine, &path) }.map(Compiled::Module)
            }
        };
        match loaded {
            Ok(compiled) => Some(compiled),
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "discarding unusable compiled artifact");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Saves compiled code for the next start. Failing to save only costs a compile
    /// later, so it is logged, not returned.
    pub(crate) fn store(&self, compiled: &Compiled, digest: &str) {
        let path = self.path(digest);
        if let Err(error) = self.try_store(compiled, &path) {
            tracing::warn!(path = %path.display(), %error, "cannot save compiled artifact");
        }
    }

    fn try_store(
        &self,
        compiled: &Compiled,
        path: &Path,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let bytes = compiled.serialize()?;
        let tmp = path.with_extension(format!("cwasm.tmp-{}", std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        let written = file.write_all(&bytes).and_then(|()| file.sync_all());
        if let Err(error) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(error.into());
        }
        Ok(())
    }
}

/// Hex sha256 of the engine's compatibility hash: stable across restarts of the same
/// build, unlike `DefaultHasher`, whose algorithm may change between Rust releases.
fn engine_hash(engine: &Engine) -> String {
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            let digest = self.0.clone().finalize();
            u64::from_le_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"))
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(hasher.0.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_kind_from_header() {
        let module = b"\0asm\x01\0\0\0";
        let component = b"\0asm\x0d\0\x01\0";
        assert_eq!(detect_kind(module).unwrap(), ProgramKind::Module);
        assert_eq!(detect_kind(component).unwrap(), ProgramKind::Component);
        assert!(detect_kind(b"#!/bin/sh\necho hi\n").is_err());
        assert!(detect_kind(b"\0asm").is_err());
        assert!(detect_kind(b"\0asm\x02\0\x02\0").is_err());
    }

    #[test]
    fn digest_is_prefixed_sha256() {
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn engine_hash_is_stable_and_config_dependent() {
        let a = Engine::default();
        let b = Engine::default();
        assert_eq!(engine_hash(&a), engine_hash(&b));
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let c = Engine::new(&config).unwrap();
        assert_ne!(engine_hash(&a), engine_hash(&c));
    }
}
