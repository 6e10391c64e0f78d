//! Crashes at chosen disk-write steps of the Raft task. An armed failpoint fires on its
//! n-th hit: the Raft task stops right there, writing nothing more and sending
//! nothing more, as if the process died between two disk writes. (sled still keeps
//! what it was handed before that point; losing unflushed writes is not simulated.)

use std::sync::Mutex;

/// The steps a crash can interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailPoint {
    /// New log entries written, the hard state that goes with them not yet.
    BetweenEntriesAndHardState,
    /// Committed entries applied (their transaction done), the rest of the `Ready`
    /// (persisting, sending, advancing) not.
    AfterApply,
    /// A snapshot installed in sled, not yet flushed nor taken into Raft's memory.
    MidSnapshotInstall,
    /// A membership change applied in sled, the rest of the `Ready` not.
    AfterMembershipChange,
}

impl FailPoint {
    pub const ALL: [FailPoint; 4] = [
        FailPoint::BetweenEntriesAndHardState,
        FailPoint::AfterApply,
        FailPoint::MidSnapshotInstall,
        FailPoint::AfterMembershipChange,
    ];
}

/// The failpoints of one member: at most one armed at a time.
#[derive(Debug, Default)]
pub struct Failpoints {
    armed: Mutex<Option<(FailPoint, u64)>>,
    fired: Mutex<Vec<FailPoint>>,
}

impl Failpoints {
    /// Crash at the `after`-th next time (1 = the next) `point` is reached.
    pub fn arm(&self, point: FailPoint, after: u64) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = Some((point, after.max(1)));
    }

    pub fn disarm(&self) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Which failpoints have fired so far, in order.
    pub fn fired(&self) -> Vec<FailPoint> {
        self.fired.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Called by the Raft task at `point`: true means crash now.
    pub(crate) fn hit(&self, point: FailPoint) -> bool {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        match armed.as_mut() {
            Some((at, remaining)) if *at == point => {
                *remaining -= 1;
                if *remaining > 0 {
                    return false;
                }
                *armed = None;
                self.fired
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(point);
                true
            }
            _ => false,
        }
    }
}
