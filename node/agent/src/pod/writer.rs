//! Writes a pod's status in the background, always the newest: kubelet's status
//! manager. The pod worker hands over each status it computes and goes on
//! driving the containers; a status that is superseded while an earlier write
//! is in flight is never written, so a pod that starts at once costs one write.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::PodStatus;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::PodIdentity;
use crate::cluster::Cluster;
use crate::driver::error_chain;

/// How long to wait before writing a status again after the write failed.
pub const STATUS_RETRY: Duration = Duration::from_secs(2);

/// How long a pod's first status is held back while the pod is `Pending` (its
/// containers being created): a pod whose image is cached runs within
/// milliseconds, and then its first write is already `Running`, not a
/// `Pending` that the `Running` write would have to wait behind.
pub const FIRST_STATUS_HOLD: Duration = Duration::from_millis(100);

/// The newest status handed over, numbered.
type Latest = (u64, Option<PodStatus>);

/// The worker's end: hand over statuses, wait for them to be written.
pub struct StatusWriter {
    latest: watch::Sender<Latest>,
    /// The number of the newest status whose write was tried (or given up on
    /// at shutdown).
    tried: watch::Receiver<u64>,
}

impl StatusWriter {
    /// Starts the writing task for `pod`. It stops when the writer is dropped
    /// (after finishing the write in flight) or when `shutdown` fires (the API
    /// server may be gone: nothing more is written).
    pub fn start(
        cluster: Arc<dyn Cluster>,
        pod: PodIdentity,
        shutdown: CancellationToken,
    ) -> StatusWriter {
        let (latest, statuses) = watch::channel((0, None));
        let (tried_tx, tried) = watch::channel(0);
        let span = tracing::info_span!("pod", pod = %pod, uid = %pod.uid);
        tokio::spawn(write_statuses(cluster, pod, statuses, tried_tx, shutdown).instrument(span));
        StatusWriter { latest, tried }
    }

    /// Hands over the pod's newest status; returns at once.
    pub fn set(&self, status: PodStatus) {
        self.latest.send_modify(|(number, latest)| {
            *number += 1;
            *latest = Some(status);
        });
    }

    /// Returns once the newest status handed over was written, or its write
    /// failed once (it is retried in the background), or the writer gave up at
    /// shutdown.
    pub async fn flush(&mut self) {
        let target = self.latest.borrow().0;
        // An error means the task ended: nothing more will be written.
        let _ = self.tried.wait_for(|tried| *tried >= target).await;
    }
}

fn pending(status: &Option<PodStatus>) -> bool {
    status
        .as_ref()
        .is_some_and(|s| s.phase.as_deref() == Some("Pending"))
}

async fn write_statuses(
    cluster: Arc<dyn Cluster>,
    pod: PodIdentity,
    mut statuses: watch::Receiver<Latest>,
    tried: watch::Sender<u64>,
    shutdown: CancellationToken,
) {
    let mut first = true;
    loop {
        let more = tokio::select! {
            biased;
            _ = shutdown.cancelled() => false,
            changed = statuses.changed() => changed.is_ok(),
        };
        if std::mem::take(&mut first) && more {
            // Until the pod leaves Pending, the hold runs out, or the worker
            // ends (the status it handed over is still written then).
            let hold = tokio::time::sleep(FIRST_STATUS_HOLD);
            tokio::pin!(hold);
            while pending(&statuses.borrow().1) {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    changed = statuses.changed() => if changed.is_err() { break },
                    _ = &mut hold => break,
                }
            }
        }
        if shutdown.is_cancelled() {
            tried.send_replace(u64::MAX);
            return;
        }
        // `changed` reports a value handed over just before the worker dropped
        // its end, so this ends only once there is nothing left to write.
        if !more {
            return;
        }
        let (number, status) = statuses.borrow_and_update().clone();
        let Some(status) = status else { continue };
        let began = Instant::now();
        let result = cluster
            .patch_pod_status(&pod.namespace, &pod.name, &status)
            .await;
        tried.send_replace(number);
        match result {
            Ok(()) => {
                tracing::debug!(phase = ?status.phase, took = ?began.elapsed(), "pod status written");
            }
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "writing pod status failed; will retry");
                if statuses.has_changed().is_err() {
                    // The worker is gone: nobody needs this status any more.
                    return;
                }
                // Try again with whatever is newest by then.
                statuses.mark_changed();
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(STATUS_RETRY) => {}
                }
            }
        }
    }
}
