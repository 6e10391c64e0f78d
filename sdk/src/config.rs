//! Settings and secrets. Kubernetes hands them to a pod either as environment
//! variables or as files in a mounted volume; these functions look in both.

use std::path::{Path, PathBuf};

/// Where configMap volumes are looked for unless `SKIFF_CONFIG_DIR` says otherwise.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/config";
/// Where secret volumes are looked for unless `SKIFF_SECRETS_DIR` says otherwise.
pub const DEFAULT_SECRETS_DIR: &str = "/etc/secrets";

fn dir(variable: &str, default: &str) -> PathBuf {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// A file's content without its trailing newline; `None` when it cannot be read.
pub fn file(path: impl AsRef<Path>) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.strip_suffix('\n').unwrap_or(&text).to_string())
}

/// The setting `name`: the environment variable of that name, else the file
/// `name` in the config directory (`$SKIFF_CONFIG_DIR`, default `/etc/config`).
pub fn setting(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .or_else(|| file(dir("SKIFF_CONFIG_DIR", DEFAULT_CONFIG_DIR).join(name)))
}

/// The secret `name`: the file `name` in the secrets directory
/// (`$SKIFF_SECRETS_DIR`, default `/etc/secrets`), else the environment variable.
/// Files come first: a secret volume is refreshed when the pod restarts, and
/// its value never shows in the pod spec.
pub fn secret(name: &str) -> Option<String> {
    file(dir("SKIFF_SECRETS_DIR", DEFAULT_SECRETS_DIR).join(name)).or_else(|| std::env::var(name).ok())
}
