//! Node-wide settings of the Wasm runtime and how they become a wasmtime `Config`.

use std::path::PathBuf;
use std::time::Duration;

use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::RuntimeError;

/// Settings of one node's Wasm runtime. Plain data: parse flags in the binary, then
/// call [`RuntimeConfig::validate`] (done by [`crate::WasmRuntime::new`]).
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where compiled artifacts are kept across restarts (see `docs/wasm-node.md`).
    /// Node-private: files here are loaded as native code.
    pub cache_dir: PathBuf,
    /// How many guest instances may be alive at once. Sizes the pooling allocator's
    /// stacks, memories, tables and instance slots; each slot reserves virtual
    /// address space, and very large values need `vm.max_map_count` raised.
    pub max_instances: u32,
    /// Largest linear memory any guest may grow to, in bytes.
    pub max_memory_bytes: u64,
    /// How often the epoch advances. A running guest yields to the async runtime at
    /// every tick, so this bounds how long a busy guest holds a worker thread and
    /// how fast cancellation takes effect.
    pub epoch_tick: Duration,
    /// Upper bound on a downloaded or read artifact, in bytes.
    pub max_artifact_bytes: u64,
    /// Total time allowed for one `https://` download.
    pub fetch_timeout: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: PathBuf::from("/var/lib/skiff/wasm-cache"),
            max_instances: 500,
            max_memory_bytes: 1 << 30,
            epoch_tick: Duration::from_millis(10),
            max_artifact_bytes: 256 << 20,
            fetch_timeout: Duration::from_secs(120),
        }
    }
}

impl RuntimeConfig {
    /// Checks the settings make sense together; names the field at fault.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let invalid = |field: &'static str, reason: String| {
            Err(RuntimeError::InvalidConfig { field, reason })
        };
        if self.cache_dir.as_os_str().is_empty() {
            return invalid("cache_dir", "must not be empty".into());
        }
        if self.max_instances == 0 || self.max_instances > 100_000 {
            return invalid(
                "max_instances",
                format!("must be in 1..=100000, got {}", self.max_instances),
            );
        }
        // Guests are 32-bit: a memory can never exceed 4 GiB.
        if self.max_memory_bytes < 1 << 16 || self.max_memory_bytes > 1 << 32 {
            return invalid(
                "max_memory_bytes",
                format!(
                    "must be between 64 KiB and 4 GiB, got {}",
                    self.max_memory_bytes
                ),
            );
        }
        if self.epoch_tick.is_zero() || self.epoch_tick > Duration::from_secs(1) {
            return invalid(
                "epoch_tick",
                format!("must be in (0, 1s], got {:?}", self.epoch_tick),
            );
        }
        if self.max_artifact_bytes == 0 {
            return invalid("max_artifact_bytes", "must be positive".into());
        }
        if self.fetch_timeout.is_zero() {
            return invalid("fetch_timeout", "must be positive".into());
        }
        Ok(())
    }

    /// The engine settings every artifact is compiled and run with. Anything changed
    /// here changes the engine's compatibility hash, so the disk cache starts afresh.
    pub(crate) fn engine_config(&self) -> Config {
        let n = self.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            // A Rust command component holds a few core instances (program, libc
            // shims); a preview-1 module holds one.
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(2))
            // Async instances keep their fiber stack while alive (DEPENDENCIES.md).
            .total_stacks(n)
            .max_memory_size(usize::try_from(self.max_memory_bytes).unwrap_or(usize::MAX));

        let mut config = Config::new();
        config
            .epoch_interruption(true)
            // WASIp3 concurrency costs ~25 % per call and no guest needs it yet.
            .concurrency_support(false)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        RuntimeConfig::default().validate().unwrap();
    }

    #[test]
    fn validate_names_the_field() {
        let config = RuntimeConfig {
            epoch_tick: Duration::ZERO,
            ..RuntimeConfig::default()
        };
        match config.validate() {
            Err(RuntimeError::InvalidConfig { field, .. }) => assert_eq!(field, "epoch_tick"),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
        let config = RuntimeConfig {
            max_instances: 0,
            ..RuntimeConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(RuntimeError::InvalidConfig {
                field: "max_instances",
                ..
            })
        ));
    }
}
