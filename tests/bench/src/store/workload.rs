//! The store workload, the same for both sides: 1 KiB puts and linearizable gets from
//! N concurrent clients spread evenly over the members, and put → watch event latency.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::report::Samples;

/// Size of every value written.
pub const VALUE_BYTES: usize = 1024;
/// Keys each put client cycles through, so the key space stays bounded.
const KEYS_PER_CLIENT: u64 = 256;
const GET_KEY: &str = "bench/get";
const WATCH_PREFIX: &str = "bench/watch/";

/// A store reached by the benchmark; `member` picks which member serves the request.
pub trait Backend: Clone + Send + Sync + 'static {
    fn members(&self) -> usize;

    /// Puts a [`VALUE_BYTES`] value at `key`.
    fn put(&self, member: usize, key: String) -> impl Future<Output = Result<()>> + Send;

    /// Reads `key` linearizably; fails if it is absent.
    fn get(&self, member: usize, key: String) -> impl Future<Output = Result<()>> + Send;

    /// Watches keys under `prefix` from now on; yields each put event's key. Returns
    /// once the watch is established.
    fn watch(
        &self,
        member: usize,
        prefix: String,
    ) -> impl Future<Output = Result<BoxStream<'static, Result<String>>>> + Send;
}

/// How long a phase runs, and the most operations it may issue.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub duration: Duration,
    pub max_ops: u64,
}

/// Throughput and latency of one phase.
#[derive(Debug)]
pub struct Phase {
    pub ops_per_s: f64,
    pub latency: Samples,
}

#[derive(Clone, Copy)]
enum Kind {
    Put,
    Get,
}

pub async fn puts<B: Backend>(backend: &B, clients: usize, limits: Limits) -> Result<Phase> {
    closed_loop(backend, Kind::Put, clients, limits).await
}

pub async fn gets<B: Backend>(backend: &B, clients: usize, limits: Limits) -> Result<Phase> {
    backend
        .put(0, GET_KEY.to_string())
        .await
        .context("writing the key the gets read")?;
    closed_loop(backend, Kind::Get, clients, limits).await
}

/// `clients` tasks, each issuing its next request when the last one answered, until
/// the time or the operation budget runs out. Client `i` talks to member `i % members`.
async fn closed_loop<B: Backend>(
    backend: &B,
    kind: Kind,
    clients: usize,
    limits: Limits,
) -> Result<Phase> {
    let issued = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let deadline = began + limits.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let backend = backend.clone();
        let issued = issued.clone();
        let member = client % backend.members();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline
                && issued.fetch_add(1, Ordering::Relaxed) < limits.max_ops
            {
                let started = Instant::now();
                match kind {
                    Kind::Put => {
                        let key = format!("bench/put/{client:03}/{:03}", n % KEYS_PER_CLIENT);
                        backend.put(member, key).await?;
                    }
                    Kind::Get => backend.get(member, GET_KEY.to_string()).await?,
                }
                latencies.push(started.elapsed());
                n += 1;
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.context("a client task panicked")??);
    }
    let elapsed = began.elapsed().as_secs_f64();
    Ok(Phase {
        ops_per_s: all.len() as f64 / elapsed,
        latency: Samples::new(all),
    })
}

/// One writer puts to member 0, one watcher listens on the last member; each put
/// waits for its event before the next, so every sample is one put → event.
pub async fn watch_latency<B: Backend>(
    backend: &B,
    puts: usize,
    limits: Limits,
) -> Result<Samples> {
    let watcher_member = backend.members() - 1;
    let mut events = backend
        .watch(watcher_member, WATCH_PREFIX.to_string())
        .await
        .context("opening the watch")?;
    let began = Instant::now();
    let mut latencies = Vec::with_capacity(puts);
    for i in 0..puts {
        if began.elapsed() > limits.duration {
            break;
        }
        let key = format!("{WATCH_PREFIX}{i:06}");
        let started = Instant::now();
        backend.put(0, key.clone()).await?;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .with_context(|| format!("no event for {key} within 10 s"))?;
            match event {
                Some(Ok(seen)) if seen == key => break,
                // An older key can only be a duplicate; the stream is in order.
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(err.context("the watch failed")),
                None => bail!("the watch ended"),
            }
        }
        latencies.push(started.elapsed());
    }
    Ok(Samples::new(latencies))
}
