//! What a container's instances use, for `kubectl top`: the bytes of linear
//! memory and tables its live instances hold, and the time spent running guest
//! code.
//!
//! Memory is counted by the store's resource limiter, which sees every growth
//! (the initial size at instantiation included) and gives the bytes back when
//! the store is dropped. CPU time is the wall-clock time spent inside polls of
//! the guest's future: wasmtime runs guest code only there, and the epoch
//! ticker makes a busy guest yield every tick, so the figure tracks the time the
//! guest had a thread. On a loaded machine a thread descheduled mid-poll still
//! counts, so it is an upper bound on the guest's CPU time.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// Bytes per table element the meter counts (a function reference).
const TABLE_ELEMENT_BYTES: u64 = 8;

/// A running total for one container, shared by all of its instances (the main
/// process, exec'd commands, one per HTTP request). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Meter {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    memory_bytes: AtomicU64,
    cpu_nanos: AtomicU64,
}

/// One reading of a [`Meter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Linear memory plus tables of the live instances, in bytes.
    pub memory_bytes: u64,
    /// Time spent running guest code since the meter was made, in nanoseconds.
    pub cpu_nanos: u64,
}

impl Meter {
    pub fn new() -> Meter {
        Meter::default()
    }

    pub fn read(&self) -> Usage {
        Usage {
            memory_bytes: self.inner.memory_bytes.load(Ordering::Relaxed),
            cpu_nanos: self.inner.cpu_nanos.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add_memory(&self, bytes: u64) {
        self.inner.memory_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn table_bytes(elements: u64) -> u64 {
        elements.saturating_mul(TABLE_ELEMENT_BYTES)
    }

    pub(crate) fn release_memory(&self, bytes: u64) {
        // Never below zero, even if a growth was counted twice by mistake.
        let _ =
            self.inner
                .memory_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                    Some(current.saturating_sub(bytes))
                });
    }

    /// `future`, with the time spent in its polls added to this meter.
    pub(crate) fn timed<F: Future>(&self, future: F) -> Timed<F> {
        Timed {
            future: Box::pin(future),
            meter: self.clone(),
        }
    }
}

/// A future whose poll time is counted as guest CPU time.
pub(crate) struct Timed<F> {
    future: Pin<Box<F>>,
    meter: Meter,
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let started = Instant::now();
        let result = self.future.as_mut().poll(cx);
        let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.meter
            .inner
            .cpu_nanos
            .fetch_add(spent, Ordering::Relaxed);
        result
    }
}

/// The node's meters by pod and container, so the agent can read every
/// container's usage. A meter lives while anything runs with it.
#[derive(Debug, Default)]
pub struct MeterBook {
    meters: Mutex<HashMap<(String, String), Meter>>,
}

impl MeterBook {
    /// The meter of `container` in the pod with uid `pod_uid`, made if it has none.
    pub fn open(&self, pod_uid: &str, container: &str) -> Meter {
        let mut meters = self.meters.lock().expect("meters lock");
        meters
            .entry((pod_uid.to_string(), container.to_string()))
            .or_default()
            .clone()
    }

    /// What every container with something running uses, together: the Wasm
    /// guests' share of the node.
    pub fn total(&self) -> Usage {
        let mut meters = self.meters.lock().expect("meters lock");
        meters.retain(|_, meter| Arc::strong_count(&meter.inner) > 1);
        meters.values().fold(Usage::default(), |sum, meter| {
            let usage = meter.read();
            Usage {
                cpu_nanos: sum.cpu_nanos + usage.cpu_nanos,
                memory_bytes: sum.memory_bytes + usage.memory_bytes,
            }
        })
    }

    /// Each container of the pod that has something running, with its usage.
    /// Meters nothing uses any more are dropped here.
    pub fn pod_usage(&self, pod_uid: &str) -> Vec<(String, Usage)> {
        let mut meters = self.meters.lock().expect("meters lock");
        meters.retain(|_, meter| Arc::strong_count(&meter.inner) > 1);
        let mut found: Vec<(String, Usage)> = meters
            .iter()
            .filter(|((uid, _), _)| uid == pod_uid)
            .map(|((_, container), meter)| (container.clone(), meter.read()))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_comes_and_goes_and_idle_meters_are_dropped() {
        let book = MeterBook::default();
        let meter = book.open("u1", "app");
        meter.add_memory(65536);
        meter.add_memory(Meter::table_bytes(10));
        assert_eq!(book.open("u1", "app").read().memory_bytes, 65536 + 80);
        meter.release_memory(80);
        meter.release_memory(1 << 20);
        assert_eq!(book.pod_usage("u1"), vec![("app".into(), Usage::default())]);
        assert!(book.pod_usage("u2").is_empty());
        let other = book.open("u2", "web");
        other.add_memory(100);
        assert_eq!(book.total().memory_bytes, 100);
        drop(meter);
        assert!(
            book.pod_usage("u1").is_empty(),
            "nothing runs with it any more"
        );
    }

    #[tokio::test]
    async fn poll_time_counts_as_cpu() {
        let meter = Meter::new();
        meter
            .timed(async {
                let started = Instant::now();
                while started.elapsed() < std::time::Duration::from_millis(5) {
                    std::hint::spin_loop();
                }
            })
            .await;
        assert!(meter.read().cpu_nanos >= 5_000_000);
    }
}
