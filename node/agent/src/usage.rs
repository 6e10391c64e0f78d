//! What the node and its pods use, for `kubectl top` (the API server's
//! `metrics.k8s.io` asks `GET /stats/usage` on each node).
//!
//! Drivers report cumulative CPU time; the figure shown is a rate in cores,
//! averaged from a base sample that is renewed every [`WINDOW`] (so repeated
//! `kubectl top` calls see the last seconds), or over the container's whole life
//! when there is no base yet. Memory is what is in use at the moment. The node's
//! own figures are the agent process (where Wasm guests run; under `skiff up`
//! also the control plane) plus the OCI pods' containers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::driver::ContainerDriver;
use crate::running::RunningTable;

/// How old a base sample may get before it is renewed.
pub const WINDOW: Duration = Duration::from_secs(15);
/// A base sample younger than this gives no rate yet.
const MIN_SPAN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// RFC 3339 time of the reading.
    pub timestamp: String,
    /// Seconds the CPU rates are averaged over (the longest span used).
    pub window_seconds: f64,
    pub node: Figures,
    pub pods: Vec<PodUsage>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub containers: Vec<NamedFigures>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamedFigures {
    pub name: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// CPU in use, in nanocores (1e9 = one core).
    pub cpu_nano_cores: u64,
    pub memory_bytes: u64,
}

#[derive(Clone, Copy)]
struct Sample {
    cpu_nanos: u64,
    at: Instant,
}

/// The base samples, by pod uid and container ("" for the node itself).
#[derive(Default)]
pub struct UsageSampler {
    bases: Mutex<HashMap<(String, String), Sample>>,
}

impl UsageSampler {
    /// The rate of `cpu_nanos` for `key`, given when it started counting.
    fn rate(
        &self,
        key: (String, String),
        cpu_nanos: u64,
        started: Instant,
        now: Instant,
    ) -> (u64, Duration) {
        let mut bases = self.bases.lock().expect("samples lock");
        let base = bases
            .get(&key)
            .copied()
            .filter(|b| b.cpu_nanos <= cpu_nanos);
        let from = match base {
            Some(base) if now.duration_since(base.at) >= MIN_SPAN => base,
            _ => Sample {
                cpu_nanos: 0,
                at: started,
            },
        };
        if base.is_none_or(|b| now.duration_since(b.at) >= WINDOW) {
            bases.insert(key, Sample { cpu_nanos, at: now });
        }
        let span = now.duration_since(from.at).max(Duration::from_millis(1));
        let used = cpu_nanos - from.cpu_nanos;
        let rate = (used as f64 / span.as_secs_f64()) as u64;
        (rate, span)
    }

    /// Forgets the bases of pods no longer running.
    fn retain(&self, uids: &[String]) {
        self.bases
            .lock()
            .expect("samples lock")
            .retain(|(uid, _), _| uid.is_empty() || uids.contains(uid));
    }

    /// Reads every running pod's usage and the node's.
    pub async fn report(
        &self,
        running: &RunningTable,
        driver: &dyn ContainerDriver,
        process_started: Instant,
    ) -> UsageReport {
        let now = Instant::now();
        let mut window = Duration::ZERO;
        let mut pods = Vec::new();
        let mut containers_total = Figures::default();
        let running_pods = running.pods();
        for pod in &running_pods {
            let measured = driver.usage(&pod.uid).await;
            let mut containers = Vec::new();
            for (name, container) in &pod.containers {
                let reading = measured.iter().find(|u| &u.container == name);
                let (cpu, memory) = reading.map_or((0, 0), |u| (u.cpu_nanos, u.memory_bytes));
                let key = (pod.uid.clone(), name.clone());
                let (rate, span) = self.rate(key, cpu, container.started, now);
                window = window.max(span);
                let figures = Figures {
                    cpu_nano_cores: rate,
                    memory_bytes: memory,
                };
                if reading.is_some_and(|u| !u.in_process) {
                    containers_total.cpu_nano_cores += figures.cpu_nano_cores;
                    containers_total.memory_bytes += figures.memory_bytes;
                }
                containers.push(NamedFigures {
                    name: name.clone(),
                    figures,
                });
            }
            pods.push(PodUsage {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                containers,
            });
        }
        self.retain(
            &running_pods
                .iter()
                .map(|p| p.uid.clone())
                .collect::<Vec<_>>(),
        );
        let process = own_process();
        let (cpu, _) = self.rate(
            (String::new(), String::new()),
            process.cpu_nanos,
            process_started,
            now,
        );
        UsageReport {
            timestamp: jiff::Timestamp::now().to_string(),
            window_seconds: window.as_secs_f64(),
            node: Figures {
                cpu_nano_cores: cpu + containers_total.cpu_nano_cores,
                memory_bytes: process.memory_bytes + containers_total.memory_bytes,
            },
            pods,
        }
    }
}

struct ProcessFigures {
    cpu_nanos: u64,
    memory_bytes: u64,
}

/// The agent process's CPU time and resident memory, from `/proc/self` (zero
/// where it cannot be read).
fn own_process() -> ProcessFigures {
    // Fields 14 and 15 of /proc/self/stat: utime and stime in clock ticks
    // (USER_HZ, 100 on Linux).
    let cpu_nanos = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let after = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) * 10_000_000)
        })
        .unwrap_or(0);
    let memory_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| {
            let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
            Some(resident * 4096)
        })
        .unwrap_or(0);
    ProcessFigures {
        cpu_nanos,
        memory_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_the_base_or_the_start() {
        let sampler = UsageSampler::default();
        let start = Instant::now();
        let key = || ("u".to_string(), "c".to_string());
        // 1 s of CPU over 2 s of life: half a core.
        let (rate, span) =
            sampler.rate(key(), 1_000_000_000, start, start + Duration::from_secs(2));
        assert_eq!(rate, 500_000_000);
        assert_eq!(span, Duration::from_secs(2));
        // From the base taken then: 0.25 s over 1 s.
        let (rate, _) = sampler.rate(key(), 1_250_000_000, start, start + Duration::from_secs(3));
        assert_eq!(rate, 250_000_000);
        // A counter that went back (a restart) is measured from the start again.
        let (rate, _) = sampler.rate(key(), 0, start, start + Duration::from_secs(4));
        assert_eq!(rate, 0);
    }

    #[test]
    fn the_process_reads_itself() {
        let figures = own_process();
        assert!(figures.memory_bytes > 0);
    }
}
