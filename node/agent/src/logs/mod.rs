//! Container logs: one file per container attempt, written by a pump that
//! merges the process's stdout and stderr, and read by the HTTP server
//! (whole, tailed, or followed live).
//!
//! On disk: `<data_dir>/pods/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`,
//! the raw bytes of both streams in the order they arrived (no per-line
//! timestamps or stream tags yet). Each attempt's writer publishes its length and
//! a finished flag through a `tokio::sync::watch` channel, so followers wake on
//! new bytes instead of polling the file.

mod pump;
mod reader;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::sync::watch;

pub use pump::{AttemptLog, LogPump};
pub use reader::{LogSource, tail_offset};

/// How far an attempt's log file has been written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogProgress {
    pub len: u64,
    /// The attempt ended and every byte it wrote is in the file.
    pub finished: bool,
}

/// Why a log could not be served; the first two are "not found" to a client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogLookupError {
    #[error("pod {namespace}/{pod} is not on this node")]
    PodNotFound { namespace: String, pod: String },
    #[error("container {container:?} is not in pod {namespace}/{pod}")]
    ContainerNotFound {
        namespace: String,
        pod: String,
        container: String,
    },
    #[error("container {container:?} in pod {namespace}/{pod} has not started yet")]
    NotStarted {
        namespace: String,
        pod: String,
        container: String,
    },
    #[error("previous terminated container {container:?} in pod {namespace}/{pod} not found")]
    NoPrevious {
        namespace: String,
        pod: String,
        container: String,
    },
}

impl LogLookupError {
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            LogLookupError::PodNotFound { .. } | LogLookupError::ContainerNotFound { .. }
        )
    }
}

struct PodLogs {
    uid: String,
    dir: PathBuf,
    /// container name → attempts (restart count → progress of that attempt).
    containers: HashMap<String, BTreeMap<u32, watch::Receiver<LogProgress>>>,
}

/// The index of every container log on this node, shared by the pod workers
/// (writers) and the HTTP server (readers).
pub struct LogBook {
    root: PathBuf,
    pods: Mutex<HashMap<(String, String), PodLogs>>,
}

impl LogBook {
    /// `root` is `<data_dir>/pods`.
    pub fn new(root: PathBuf) -> LogBook {
        LogBook {
            root,
            pods: Mutex::new(HashMap::new()),
        }
    }

    pub fn pod_dir(&self, namespace: &str, pod: &str, uid: &str) -> PathBuf {
        self.root.join(format!("{namespace}_{pod}_{uid}"))
    }

    /// Makes the pod's containers known (so a log request for one that has not
    /// started yet gets a precise answer). A newer pod of the same name replaces an older one.
    pub fn register_pod(&self, namespace: &str, pod: &str, uid: &str, containers: &[String]) {
        let logs = PodLogs {
            uid: uid.to_string(),
            dir: self.pod_dir(namespace, pod, uid),
            containers: containers
                .iter()
                .map(|name| (name.clone(), BTreeMap::new()))
                .collect(),
        };
        self.lock()
            .insert((namespace.to_string(), pod.to_string()), logs);
    }

    /// Drops the pod from the index and returns its log directory for removal,
    /// unless a newer pod of the same name has taken its place.
    pub fn forget_pod(&self, namespace: &str, pod: &str, uid: &str) -> Option<PathBuf> {
        let mut pods = self.lock();
        let key = (namespace.to_string(), pod.to_string());
        match pods.get(&key) {
            Some(logs) if logs.uid == uid => pods.remove(&key).map(|logs| logs.dir),
            _ => None,
        }
    }

    /// Creates the log file of one attempt and the pipes that feed it. The
    /// returned pump must be run until it finishes (it ends when both write
    /// ends are dropped).
    pub async fn start_attempt(
        &self,
        namespace: &str,
        pod: &str,
        uid: &str,
        container: &str,
        restart: u32,
    ) -> io::Result<AttemptLog> {
        let dir = self.pod_dir(namespace, pod, uid).join(container);
        tokio::fs::create_dir_all(&dir).await?;
        let path = dir.join(format!("{restart}.log"));
        let (attempt, progress) = AttemptLog::create(&path).await?;
        let mut pods = self.lock();
        if let Some(logs) = pods.get_mut(&(namespace.to_string(), pod.to_string()))
            && logs.uid == uid
        {
            logs.containers
                .entry(container.to_string())
                .or_default()
                .insert(restart, progress);
        }
        Ok(attempt)
    }

    /// Finds the log of the container's newest attempt, or of the one before it
    /// when `previous` is set.
    pub fn find(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogSource, LogLookupError> {
        let pods = self.lock();
        let logs = pods
            .get(&(namespace.to_string(), pod.to_string()))
            .ok_or_else(|| LogLookupError::PodNotFound {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
            })?;
        let names = || {
            (
                namespace.to_string(),
                pod.to_string(),
                container.to_string(),
            )
        };
        let attempts = logs.containers.get(container).ok_or_else(|| {
            let (namespace, pod, container) = names();
            LogLookupError::ContainerNotFound {
                namespace,
                pod,
                container,
            }
        })?;
        let mut newest_first = attempts.iter().rev();
        let chosen = if previous {
            newest_first.nth(1).ok_or_else(|| {
                let (namespace, pod, container) = names();
                LogLookupError::NoPrevious {
                    namespace,
                    pod,
                    container,
                }
            })?
        } else {
            newest_first.next().ok_or_else(|| {
                let (namespace, pod, container) = names();
                LogLookupError::NotStarted {
                    namespace,
                    pod,
                    container,
                }
            })?
        };
        let (restart, progress) = chosen;
        Ok(LogSource::new(
            attempt_path(&logs.dir, container, *restart),
            progress.clone(),
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), PodLogs>> {
        // The map stays consistent even if a holder panicked: every update is one insert/remove.
        self.pods
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn attempt_path(pod_dir: &Path, container: &str, restart: u32) -> PathBuf {
    pod_dir.join(container).join(format!("{restart}.log"))
}

#[cfg(test)]
mod tests;
