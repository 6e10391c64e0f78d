//! Kubelet's restart back-off: 10 s, doubling up to 300 s, forgotten once an
//! attempt has run for 10 minutes without a problem.

use std::time::Duration;

pub const INITIAL_DELAY: Duration = Duration::from_secs(10);
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// An attempt that ran this long counts as healthy and resets the back-off.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: INITIAL_DELAY,
        }
    }
}

impl Backoff {
    /// The delay before the next attempt, given how long the failed one ran
    /// (pass zero for failures that never started, like a failed pull).
    pub fn next_delay(&mut self, ran: Duration) -> Duration {
        if ran >= RESET_AFTER {
            self.reset();
        }
        let delay = self.next;
        self.next = (delay * 2).min(MAX_DELAY);
        delay
    }

    pub fn reset(&mut self) {
        self.next = INITIAL_DELAY;
    }
}

/// Formats a delay the way kubelet prints it in back-off messages (`20s`, `5m0s`).
pub fn format_delay(delay: Duration) -> String {
    let secs = delay.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn doubles_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..8)
            .map(|_| backoff.next_delay(secs(1)).as_secs())
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn a_long_healthy_run_resets_it() {
        let mut backoff = Backoff::default();
        for _ in 0..4 {
            backoff.next_delay(secs(5));
        }
        assert_eq!(backoff.next_delay(secs(599)), secs(160));
        assert_eq!(backoff.next_delay(secs(600)), secs(10));
        assert_eq!(backoff.next_delay(secs(0)), secs(20));
    }

    #[test]
    fn formats_like_kubelet() {
        assert_eq!(format_delay(secs(20)), "20s");
        assert_eq!(format_delay(secs(300)), "5m0s");
        assert_eq!(format_delay(secs(160)), "2m40s");
    }
}
