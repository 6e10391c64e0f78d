//! Client histories: what each operation asked, when it was invoked and returned, and
//! what it saw. Times are one logical clock shared by every client, so "returned
//! before invoked" is exact even when the paused tokio clock shows equal instants.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Values are unique numbers, so a read tells which write it saw.
pub type Value = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A put (`Some`) or a delete (`None`).
    Write(Option<Value>),
    /// A read and what it returned.
    Read(Option<Value>),
    /// Put `new` if the key holds `expect`; `succeeded` is `None` when unknown.
    Cas {
        expect: Value,
        new: Value,
        succeeded: Option<bool>,
    },
}

#[derive(Clone, Debug)]
pub struct Operation {
    pub key: String,
    pub kind: Kind,
    pub call: u64,
    /// `u64::MAX` when the outcome is unknown (error or timeout): it may take effect
    /// at any point after `call`, or never.
    pub ret: u64,
}

impl Operation {
    pub fn acknowledged(&self) -> bool {
        self.ret != u64::MAX
    }
}

#[derive(Default)]
pub struct History {
    clock: AtomicU64,
    operations: Mutex<Vec<Operation>>,
}

impl History {
    /// The logical time of an invocation or return.
    pub fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    pub fn record(&self, operation: Operation) {
        self.operations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(operation);
    }

    pub fn operations(&self) -> Vec<Operation> {
        self.operations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
