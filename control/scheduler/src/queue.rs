//! The pods waiting for a node: an active queue in priority order (then
//! oldest first), and the pods that fit nowhere, parked until the cluster
//! changes or the retry interval passes.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::facts::PodInfo;

type Key = (String, String);
type Order = (Reverse<i32>, i64, Key);

#[derive(Default)]
pub struct Queue {
    pods: HashMap<Key, Arc<PodInfo>>,
    active: BTreeSet<Order>,
    parked: HashSet<Key>,
}

fn order(pod: &PodInfo) -> Order {
    (Reverse(pod.priority), pod.created, pod.key())
}

impl Queue {
    /// Add or refresh a pending pod; a new pod is tried at once, a parked
    /// one stays parked until [`Queue::unpark_all`].
    pub fn upsert(&mut self, pod: Arc<PodInfo>) {
        let key = pod.key();
        if let Some(old) = self.pods.insert(key.clone(), pod.clone()) {
            if self.active.remove(&order(&old)) {
                self.active.insert(order(&pod));
            }
        } else {
            self.active.insert(order(&pod));
        }
    }

    pub fn remove(&mut self, key: &Key) -> Option<Arc<PodInfo>> {
        let pod = self.pods.remove(key)?;
        self.active.remove(&order(&pod));
        self.parked.remove(key);
        Some(pod)
    }

    /// The next pod to try, taken out of the queue.
    pub fn pop(&mut self) -> Option<Arc<PodInfo>> {
        let (_, _, key) = self.active.pop_first()?;
        self.pods.remove(&key)
    }

    /// Put a pod that fits nowhere aside.
    pub fn park(&mut self, pod: Arc<PodInfo>) {
        let key = pod.key();
        self.parked.insert(key.clone());
        self.pods.insert(key, pod);
    }

    /// Retry every parked pod (the cluster changed, or time passed).
    pub fn unpark_all(&mut self) {
        for key in self.parked.drain() {
            if let Some(pod) = self.pods.get(&key) {
                self.active.insert(order(pod));
            }
        }
    }

    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.pods.contains_key(key)
    }

    pub fn clear(&mut self) {
        *self = Queue::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, priority: i32, created: i64) -> Arc<PodInfo> {
        Arc::new(PodInfo {
            namespace: "d".into(),
            name: name.into(),
            priority,
            created,
            ..PodInfo::default()
        })
    }

    #[test]
    fn higher_priority_first_then_oldest_and_parked_pods_wait() {
        let mut queue = Queue::default();
        queue.upsert(pod("late", 0, 20));
        queue.upsert(pod("early", 0, 10));
        queue.upsert(pod("vip", 1000, 30));
        let names: Vec<String> =
            std::iter::from_fn(|| queue.pop().map(|p| p.name.clone())).collect();
        assert_eq!(names, ["vip", "early", "late"]);

        queue.park(pod("stuck", 0, 1));
        assert!(!queue.has_active());
        queue.upsert(pod("stuck", 0, 1));
        assert!(!queue.has_active(), "an update does not unpark");
        queue.unpark_all();
        assert_eq!(queue.pop().unwrap().name, "stuck");
    }
}
