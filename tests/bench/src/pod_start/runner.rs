//! The two measurements both sides go through: start → ready latency one after
//! another with a little concurrency, and a batch started all at once.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt, stream};
use tokio::sync::Semaphore;

use crate::report::Samples;

/// Something that starts and stops workloads: pods on the node, or native processes.
pub trait Starter: Send + Sync + 'static {
    /// A started workload, kept until it is stopped.
    type Running: Send + 'static;

    /// Starts workload `name` and returns once it is ready, with the instant it was
    /// seen ready.
    fn start(&self, name: String) -> impl Future<Output = Result<(Instant, Self::Running)>> + Send;

    /// Stops a workload and returns once it is gone.
    fn stop(&self, running: Self::Running) -> impl Future<Output = Result<()>> + Send;
}

/// Starts `count` workloads, `concurrency` at a time, and records start → ready for
/// each. Each is stopped as soon as it is ready; at most `live` exist at once
/// (the node's instance pool and pod capacity are finite), and this returns only
/// after every one is gone.
pub async fn latencies<S: Starter>(
    starter: &Arc<S>,
    prefix: &str,
    count: usize,
    concurrency: usize,
    live: usize,
) -> Result<Samples> {
    let slots = Arc::new(Semaphore::new(live));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let samples = stream::iter(0..count)
        .map(|i| {
            let starter = starter.clone();
            let slots = slots.clone();
            let done = done.clone();
            let name = format!("{prefix}-{i}");
            async move {
                let slot = slots.acquire_owned().await?;
                let began = Instant::now();
                let (ready_at, running) = starter
                    .start(name.clone())
                    .await
                    .with_context(|| format!("starting {name}"))?;
                let latency = ready_at.saturating_duration_since(began);
                tokio::spawn(async move {
                    if let Err(err) = starter.stop(running).await {
                        eprintln!("bench: stopping {name}: {err:#}");
                    }
                    drop(slot);
                });
                let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if finished.is_multiple_of(250) {
                    eprintln!("bench:   {finished}/{count} ready");
                }
                anyhow::Ok(latency)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<Duration>>()
        .await?;
    let _all_stopped = slots.acquire_many(live as u32).await?;
    Ok(Samples::new(samples))
}

/// Starts `count` workloads at once; returns the time from the first start to the
/// last ready, and the running workloads.
pub async fn batch<S: Starter>(
    starter: &Arc<S>,
    prefix: &str,
    count: usize,
) -> Result<(Duration, Vec<S::Running>)> {
    let began = Instant::now();
    let started = stream::iter(0..count)
        .map(|i| {
            let starter = starter.clone();
            let name = format!("{prefix}-{i}");
            async move {
                starter
                    .start(name.clone())
                    .await
                    .with_context(|| format!("starting {name}"))
            }
        })
        .buffer_unordered(count.max(1))
        .try_collect::<Vec<_>>()
        .await?;
    let last_ready = started
        .iter()
        .map(|(ready_at, _)| *ready_at)
        .max()
        .unwrap_or(began);
    let running = started.into_iter().map(|(_, running)| running).collect();
    Ok((last_ready.saturating_duration_since(began), running))
}

/// Stops every workload of a batch, all at once.
pub async fn stop_all<S: Starter>(starter: &Arc<S>, running: Vec<S::Running>) -> Result<()> {
    let count = running.len().max(1);
    stream::iter(running)
        .map(|r| starter.stop(r))
        .buffer_unordered(count)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}
