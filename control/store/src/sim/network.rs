//! The simulated network: a [`Transport`] per member that routes through one shared
//! table of members, blocked links and fault rates.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::Rng;
use crate::{RaftMessage, Store, Transport};

/// How badly the network behaves; each batch of messages is judged on its own.
#[derive(Clone, Debug)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    /// Each copy is delayed by a uniform time below this, which reorders batches.
    pub max_delay: Duration,
}

impl Faults {
    pub fn none() -> Faults {
        Faults {
            drop: 0.0,
            duplicate: 0.0,
            max_delay: Duration::from_millis(1),
        }
    }
}

pub struct Network {
    state: Mutex<State>,
}

struct State {
    rng: Rng,
    faults: Faults,
    members: HashMap<u64, Store>,
    /// Directed links that deliver nothing.
    blocked: HashSet<(u64, u64)>,
}

impl Network {
    pub fn new(seed: u64, faults: Faults) -> Arc<Network> {
        Arc::new(Network {
            state: Mutex::new(State {
                rng: Rng::new(seed),
                faults,
                members: HashMap::new(),
                blocked: HashSet::new(),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The transport member `from` sends through.
    pub fn transport(self: &Arc<Self>, from: u64) -> Arc<dyn Transport> {
        Arc::new(SimTransport {
            from,
            network: Arc::downgrade(self),
        })
    }

    /// Makes `store` reachable under its id.
    pub fn attach(&self, store: Store) {
        self.state().members.insert(store.id(), store);
    }

    /// Makes member `id` unreachable and returns its handle.
    pub fn detach(&self, id: u64) -> Option<Store> {
        self.state().members.remove(&id)
    }

    pub fn member(&self, id: u64) -> Option<Store> {
        self.state().members.get(&id).cloned()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// Cuts every link between `side` and the other members of `all`, both ways.
    pub fn partition(&self, side: &[u64], all: &[u64]) {
        let mut state = self.state();
        for a in side {
            for b in all.iter().filter(|b| !side.contains(b)) {
                state.blocked.insert((*a, *b));
                state.blocked.insert((*b, *a));
            }
        }
    }

    pub fn heal(&self) {
        self.state().blocked.clear();
    }

    fn route(self: Arc<Self>, from: u64, to: u64, messages: Vec<RaftMessage>) {
        let delays: Vec<Duration> = {
            let mut state = self.state();
            let faults = state.faults.clone();
            if state.blocked.contains(&(from, to)) || state.rng.chance(faults.drop) {
                return;
            }
            let copies = if state.rng.chance(faults.duplicate) {
                2
            } else {
                1
            };
            let max = faults.max_delay.as_micros().max(1) as u64;
            (0..copies)
                .map(|_| Duration::from_micros(state.rng.below(max)))
                .collect()
        };
        for delay in delays {
            let network = self.clone();
            let messages = messages.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Some(store) = network.member(to) {
                    store.receive(messages);
                }
            });
        }
    }
}

struct SimTransport {
    from: u64,
    network: Weak<Network>,
}

impl Transport for SimTransport {
    fn send(&self, to: u64, messages: Vec<RaftMessage>) {
        if let Some(network) = self.network.upgrade() {
            network.route(self.from, to, messages);
        }
    }
}
