//! Store configuration: a plain struct, parsed elsewhere (the binary owns clap).

use std::path::PathBuf;
use std::time::Duration;

use crate::StoreError;

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Directory holding the sled database (created if missing).
    pub data_dir: PathBuf,
    /// Period of one Raft logical clock tick.
    pub tick_interval: Duration,
    /// Ticks without a leader before a member campaigns.
    pub election_ticks: usize,
    /// Ticks between leader heartbeats; must be below `election_ticks`.
    pub heartbeat_ticks: usize,
    /// Most proposals taken into one Raft `Ready`, so one fsync covers many writes.
    pub max_batch: usize,
    /// Events buffered per watch before the watcher task waits for its reader.
    pub watch_buffer: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("skiff-data/store"),
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 3,
            max_batch: 256,
            watch_buffer: 256,
        }
    }
}

impl StoreConfig {
    /// A default configuration storing its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            ..StoreConfig::default()
        }
    }

    /// Rejects values the Raft task cannot run with.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(StoreError::Config("data_dir is empty".into()));
        }
        if self.tick_interval.is_zero() {
            return Err(StoreError::Config(
                "tick_interval must be above zero".into(),
            ));
        }
        if self.heartbeat_ticks == 0 || self.heartbeat_ticks >= self.election_ticks {
            return Err(StoreError::Config(format!(
                "heartbeat_ticks ({}) must be at least 1 and below election_ticks ({})",
                self.heartbeat_ticks, self.election_ticks
            )));
        }
        if self.max_batch == 0 {
            return Err(StoreError::Config("max_batch must be at least 1".into()));
        }
        if self.watch_buffer == 0 {
            return Err(StoreError::Config("watch_buffer must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_are_named() {
        assert!(StoreConfig::default().validate().is_ok());
        let config = StoreConfig {
            heartbeat_ticks: 10,
            ..StoreConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("heartbeat_ticks"), "{err}");
        let config = StoreConfig::new("");
        assert!(config.validate().is_err());
    }
}
