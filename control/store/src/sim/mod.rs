//! The in-process fault harness: members of one group in one process, talking over a
//! simulated network that drops, delays, duplicates, reorders and partitions
//! messages, with members crashed and restarted from their data directories; clients
//! whose histories are checked for linearizability.
//!
//! Built for the crate's tests and with the `sim` feature (for the `fault-seeds`
//! example). Runs are meant for a current-thread tokio runtime with a paused clock:
//! network and fault decisions come from one seeded generator, so a seed replays
//! closely (sled's own threads and disk timing are outside its control).

mod checker;
mod cluster;
mod failpoint;
mod history;
mod network;
mod rng;
mod run;
#[cfg(test)]
mod tests;

pub use checker::{Verdict, check};
pub use cluster::Cluster;
pub use failpoint::{FailPoint, Failpoints};
pub use history::{History, Kind, Operation};
pub use network::{Faults, Network};
pub use rng::Rng;
pub use run::{SeedReport, run_seed, run_seed_blocking};
