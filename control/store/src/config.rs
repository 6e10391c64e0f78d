//! Store configuration: a plain struct, parsed elsewhere (the binary owns clap).

use std::path::PathBuf;
use std::time::Duration;

use crate::{Member, StoreError};

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// This member's Raft id (not 0).
    pub id: u64,
    /// The Raft ids of every voter of a new group, this one included; all members of a
    /// group must start with the same list. Ignored once the data directory has a group.
    /// Empty for a member that joins a running group: it waits, voting for no one,
    /// until the leader (after [`Store::add_member`](crate::Store::add_member)) sends it
    /// a snapshot of the group.
    pub members: Vec<u64>,
    /// Names and peer addresses of a new group's `members`, recorded with the group so
    /// every member can list them ([`Store::members`](crate::Store::members)). Empty
    /// for in-process groups; ignored once the data directory has a group.
    pub member_info: Vec<Member>,
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
    /// How long a write or a linearizable read may wait (for a leader, a quorum, the
    /// apply step) before failing with `StoreError::Timeout`, its outcome unknown.
    pub request_timeout: Duration,
    /// Applied entries kept in the Raft log before it is compacted; a member further
    /// behind than that catches up from a snapshot.
    pub log_compaction_entries: u64,
    /// Crashes at disk-write steps, for the fault harness.
    #[cfg(any(test, feature = "sim"))]
    pub failpoints: Option<std::sync::Arc<crate::sim::Failpoints>>,
    /// For the fault harness: seeds the request ids and Raft's election timeouts
    /// (otherwise random) so a run replays. Give each start of a member its own seed:
    /// request ids must not repeat those of an earlier run of the same member.
    #[cfg(any(test, feature = "sim"))]
    pub sim_seed: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            id: 1,
            members: vec![1],
            member_info: Vec::new(),
            data_dir: PathBuf::from("skiff-data/store"),
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 3,
            max_batch: 256,
            watch_buffer: 256,
            request_timeout: Duration::from_secs(5),
            log_compaction_entries: 10_000,
            #[cfg(any(test, feature = "sim"))]
            failpoints: None,
            #[cfg(any(test, feature = "sim"))]
            sim_seed: None,
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
        if self.id == 0 {
            return Err(StoreError::Config("id must not be 0".into()));
        }
        if !self.members.is_empty() && !self.members.contains(&self.id) {
            return Err(StoreError::Config(format!(
                "members {:?} must include this member's id {}",
                self.members, self.id
            )));
        }
        let mut members = self.members.clone();
        members.sort_unstable();
        members.dedup();
        if members.len() != self.members.len() || members.contains(&0) {
            return Err(StoreError::Config(format!(
                "members {:?} must be distinct and not 0",
                self.members
            )));
        }
        if let Some(stray) = self
            .member_info
            .iter()
            .find(|m| !self.members.contains(&m.id))
        {
            return Err(StoreError::Config(format!(
                "member_info names member {} ({}), which is not in members {:?}",
                stray.id, stray.name, self.members
            )));
        }
        if self.request_timeout.is_zero() {
            return Err(StoreError::Config(
                "request_timeout must be above zero".into(),
            ));
        }
        if self.log_compaction_entries == 0 {
            return Err(StoreError::Config(
                "log_compaction_entries must be at least 1".into(),
            ));
        }
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
        let config = StoreConfig {
            id: 4,
            members: vec![1, 2, 3],
            ..StoreConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("members"), "{err}");
    }
}
