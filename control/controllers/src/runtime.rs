//! The pieces every controller shares on top of `kube::runtime::Controller`:
//! per-object retry back-off, "expectations" that bridge the gap between a
//! write and the cache seeing it, and the loop that drives a controller until
//! shutdown.
//!
//! kube's `Controller` already gives one reconcile per object at a time,
//! debouncing, waiting for the main cache and a span per reconcile; what it
//! leaves to the caller is remembering how often an object has failed.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use kube::Resource;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;

/// First retry delay after a failed reconcile; doubles per failure.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// The longest a failing object waits between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long a controller trusts its own writes over a cache that has not
/// caught up yet; afterwards it acts on the cache again.
pub const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Exponential back-off per object key, reset by a success.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Record a failure of `key` and return how long to wait before retrying.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let count = failures.entry(key.to_string()).or_insert(0);
        let delay = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(*count));
        *count = count.saturating_add(1);
        delay.min(BACKOFF_MAX)
    }

    /// Forget the failures of `key` after it reconciled.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

/// `namespace/name` (or `name`) of an object, for logs and keys.
pub fn key_of<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    match meta.namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

/// What a controller is still waiting to see in its cache after writing:
/// objects it created (by name) and objects it deleted (by name). While an
/// owner has outstanding expectations its controller must not act on the
/// cache, or it would create or delete the same pods twice.
#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

#[derive(Debug)]
struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Instant,
}

impl Expectations {
    /// Remember that `owner` created `creates` and deleted `deletes`.
    pub fn expect(&self, owner: &str, creates: Vec<String>, deletes: Vec<String>) {
        if creates.is_empty() && deletes.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().expect("expectations lock");
        let entry = pending.entry(owner.to_string()).or_insert_with(|| Pending {
            creates: HashSet::new(),
            deletes: HashSet::new(),
            since: Instant::now(),
        });
        entry.creates.extend(creates);
        entry.deletes.extend(deletes);
        entry.since = Instant::now();
    }

    /// Forget what the cache now shows (`present` says whether a name is in
    /// it, alive); true when nothing is outstanding or the wait timed out.
    pub fn satisfied(&self, owner: &str, present: impl Fn(&str) -> bool) -> bool {
        let mut pending = self.pending.lock().expect("expectations lock");
        let Some(entry) = pending.get_mut(owner) else {
            return true;
        };
        entry.creates.retain(|name| !present(name));
        entry.deletes.retain(|name| present(name));
        let done = entry.creates.is_empty() && entry.deletes.is_empty();
        if done || entry.since.elapsed() > EXPECTATION_TIMEOUT {
            if !done {
                tracing::warn!(
                    owner,
                    "cache did not show our writes in time; acting anyway"
                );
            }
            pending.remove(owner);
            return true;
        }
        false
    }

    /// Drop what is expected for `owner` (a failed write will not show up).
    pub fn forget(&self, owner: &str) {
        self.pending
            .lock()
            .expect("expectations lock")
            .remove(owner);
    }
}

/// What every controller's error policy does: log the failed reconcile of
/// `object` (a `kind`) and retry it after the object's next back-off delay.
pub fn retry_failed<K: Resource>(
    kind: &str,
    object: &K,
    error: &impl std::fmt::Display,
    backoff: &Backoff,
) -> Action {
    let key = key_of(object);
    let delay = backoff.failed(&key);
    tracing::warn!(kind, object = %key, %error, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

/// Wait for a reflector store's first list. kube's `wait_until_ready` wakes
/// only the last of several tasks waiting at once, so each wait is short and
/// started again.
pub async fn cache_ready<K>(store: &kube::runtime::reflector::Store<K>) -> Result<(), crate::Error>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
            Ok(result) => return result.map_err(|_| crate::Error::CacheGone),
            Err(_) => continue,
        }
    }
}

/// A controller's context that keeps the per-object back-off.
pub trait HasBackoff {
    fn backoff(&self) -> &Backoff;
}

/// The one shape every controller runs in: `controller` (its watches and
/// triggers already set up) debounced by `debounce`, stopping when `cancel`
/// fires, `reconcile` one object at a time, and failures logged and retried
/// with the object's back-off ([`retry_failed`]) — driven until it stops.
/// `name` labels the controller's logs, `kind` the failed reconciles'.
pub async fn run_controller<K, Ctx, Fut>(
    name: &'static str,
    kind: &'static str,
    controller: controller::Controller<K>,
    debounce: Duration,
    cancel: tokio_util::sync::CancellationToken,
    reconcile: impl FnMut(std::sync::Arc<K>, std::sync::Arc<Ctx>) -> Fut + Send + 'static,
    context: std::sync::Arc<Ctx>,
) where
    K: Clone
        + Resource<DynamicType = ()>
        + serde::de::DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    Ctx: HasBackoff + Send + Sync + 'static,
    Fut: futures::TryFuture<Ok = Action, Error = crate::Error> + Send + 'static,
{
    let results = controller
        .with_config(controller::Config::default().debounce(debounce))
        .graceful_shutdown_on(cancel.cancelled_owned())
        .run(
            reconcile,
            move |object: std::sync::Arc<K>, error: &crate::Error, context: std::sync::Arc<Ctx>| {
                retry_failed(kind, object.as_ref(), error, context.backoff())
            },
            context,
        )
        .boxed();
    drive(name, results).await;
}

/// Drive a controller's result stream until it ends (the controller stops
/// after its graceful-shutdown trigger fires), logging failed reconciles.
pub async fn drive<K, E, S>(name: &'static str, stream: S)
where
    K: Resource,
    K::DynamicType: Debug + Clone + Eq + Hash,
    E: std::error::Error + 'static,
    S: futures::Stream<
            Item = Result<
                (ObjectRef<K>, Action),
                controller::Error<E, kube::runtime::watcher::Error>,
            >,
        >,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(result) = stream.next().await {
        match result {
            Ok((object, _)) => tracing::trace!(controller = name, %object, "reconciled"),
            Err(controller::Error::ObjectNotFound(_)) => {}
            Err(err) => tracing::warn!(controller = name, error = %err, "reconcile failed"),
        }
    }
    tracing::info!(controller = name, "stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps_and_resets() {
        let backoff = Backoff::default();
        assert_eq!(backoff.failed("a"), Duration::from_millis(250));
        assert_eq!(backoff.failed("a"), Duration::from_millis(500));
        assert_eq!(backoff.failed("a"), Duration::from_secs(1));
        assert_eq!(backoff.failed("b"), Duration::from_millis(250));
        for _ in 0..20 {
            backoff.failed("a");
        }
        assert_eq!(backoff.failed("a"), BACKOFF_MAX);
        backoff.succeeded("a");
        assert_eq!(backoff.failed("a"), Duration::from_millis(250));
    }

    #[test]
    fn expectations_wait_for_the_cache() {
        let expectations = Expectations::default();
        assert!(expectations.satisfied("rs", |_| false));
        expectations.expect("rs", vec!["p1".into(), "p2".into()], vec!["old".into()]);
        assert!(!expectations.satisfied("rs", |n| n == "p1" || n == "old"));
        assert!(!expectations.satisfied("rs", |n| n == "p1" || n == "p2" || n == "old"));
        assert!(expectations.satisfied("rs", |n| n == "p1" || n == "p2"));
        assert!(expectations.satisfied("rs", |_| false));
    }

    #[tokio::test(start_paused = true)]
    async fn expectations_time_out() {
        let expectations = Expectations::default();
        expectations.expect("rs", vec!["p1".into()], vec![]);
        assert!(!expectations.satisfied("rs", |_| false));
        tokio::time::sleep(EXPECTATION_TIMEOUT + Duration::from_secs(1)).await;
        assert!(expectations.satisfied("rs", |_| false));
    }
}
