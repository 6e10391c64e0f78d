//! `resources.limits.cpu` as a share of one core's time, enforced at epoch ticks.
//!
//! Every store is interrupted at each epoch tick. A store of a container with a
//! CPU limit then measures how long it ran since it last resumed (at most one
//! tick: anything longer was time spent waiting in the host) and charges it to
//! the container's [`CpuShare`], which says when the container may run again:
//! running `ran` at a share `s` costs `ran / s` of wall-clock time. A container at
//! `100m` thus runs ~10 ms and then sleeps ~90 ms; its tokio worker is free for
//! other guests meanwhile. All instances of one container (every HTTP request's
//! instance) charge the same share, so concurrency does not multiply the limit.
//!
//! A guest at or above one core is never paused (a guest is single-threaded).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use wasmtime::{Store, UpdateDeadline};

/// The CPU time one container may use, shared by all of its instances.
#[derive(Clone, Debug)]
pub(crate) struct CpuShare {
    /// Fraction of one core, in (0, 1).
    share: f64,
    /// The longest stretch one charge may count (an epoch tick).
    tick: Duration,
    /// When the time charged so far has been paid for: the container may run
    /// again from then on.
    paid_until: Arc<Mutex<Instant>>,
}

impl CpuShare {
    /// `None` when `millicores` does not limit anything (absent, or a core or more).
    pub(crate) fn new(millicores: Option<u64>, tick: Duration) -> Option<CpuShare> {
        let millicores = millicores?;
        if millicores >= 1000 {
            return None;
        }
        Some(CpuShare {
            // 0m would never run: treat it as the smallest share Kubernetes knows (1m).
            share: millicores.max(1) as f64 / 1000.0,
            tick,
            paid_until: Arc::new(Mutex::new(Instant::now())),
        })
    }

    /// Charges `ran` of CPU time that ended `now`; returns when the container may run again.
    fn charge(&self, now: Instant, ran: Duration) -> Instant {
        let cost = ran.div_f64(self.share);
        let mut paid = self.paid_until.lock().unwrap_or_else(|p| p.into_inner());
        // Time the container did not use is not saved up beyond the stretch just run.
        let from = (*paid).max(now - ran);
        *paid = from + cost;
        *paid
    }

    /// Makes `store` pay for its CPU time at every epoch tick.
    pub(crate) fn install<T: 'static>(&self, store: &mut Store<T>) {
        let share = self.clone();
        let resumed = Arc::new(Mutex::new(Instant::now()));
        store.epoch_deadline_callback(move |_| {
            let now = Instant::now();
            let since = *resumed.lock().unwrap_or_else(|p| p.into_inner());
            let ran = now.saturating_duration_since(since).min(share.tick);
            let wake = share.charge(now, ran);
            let resumed = Arc::clone(&resumed);
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    if wake > Instant::now() {
                        tokio::time::sleep_until(wake).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                    *resumed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                }),
            ))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_or_more_is_not_limited() {
        let tick = Duration::from_millis(10);
        assert!(CpuShare::new(None, tick).is_none());
        assert!(CpuShare::new(Some(1000), tick).is_none());
        assert!(CpuShare::new(Some(2500), tick).is_none());
        assert!(CpuShare::new(Some(0), tick).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn running_at_a_tenth_costs_ten_times_the_wall_clock() {
        let tick = Duration::from_millis(10);
        let share = CpuShare::new(Some(100), tick).unwrap();
        let start = Instant::now();
        tokio::time::advance(tick).await;
        let wake = share.charge(Instant::now(), tick);
        assert_eq!(wake - start, Duration::from_millis(100));
        // A second instance of the same container queues behind the first.
        let wake = share.charge(Instant::now(), tick);
        assert_eq!(wake - start, Duration::from_millis(200));
        // After a long idle spell only the stretch just run is owed, nothing saved up.
        tokio::time::advance(Duration::from_secs(5)).await;
        let now = Instant::now();
        assert_eq!(share.charge(now, tick) - now, Duration::from_millis(90));
    }
}
