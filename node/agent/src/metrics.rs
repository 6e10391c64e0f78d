//! The node's Prometheus metrics, served at `GET /metrics` in the text
//! exposition format 0.0.4. The pod workers count what happens (pods by phase,
//! container starts and restarts, how long pods take to start); the drivers add
//! their own figures (the Wasm compile cache, guest memory); per-pod CPU and
//! memory are read from the drivers at each scrape, under the names kubelet
//! uses for them on `/metrics/resource`.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::driver::{ContainerDriver, DriverMetric, MetricKind};
use crate::running::RunningTable;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the pod start histogram's buckets.
const START_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The phases always listed, even with no pod in them.
const PHASES: [&str; 4] = ["Pending", "Running", "Succeeded", "Failed"];

/// What the pod workers count. Shared by the whole node.
#[derive(Default)]
pub struct NodeMetrics {
    /// The phase each pod's worker last computed, by pod uid.
    phases: Mutex<HashMap<String, String>>,
    container_starts: AtomicU64,
    container_restarts: AtomicU64,
    pod_start: Histogram,
}

impl NodeMetrics {
    /// The pod with `uid` is in `phase` now.
    pub fn pod_phase(&self, uid: &str, phase: &str) {
        let mut phases = self.phases.lock().expect("metrics lock");
        match phases.get_mut(uid) {
            Some(known) if known == phase => {}
            Some(known) => *known = phase.to_string(),
            None => drop(phases.insert(uid.to_string(), phase.to_string())),
        }
    }

    /// The pod's worker ended: it is no longer on this node.
    pub fn pod_gone(&self, uid: &str) {
        self.phases.lock().expect("metrics lock").remove(uid);
    }

    /// A container's process started; `restart` when it ran before.
    pub fn container_started(&self, restart: bool) {
        self.container_starts.fetch_add(1, Ordering::Relaxed);
        if restart {
            self.container_restarts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A pod's containers all run, `took` after its worker first saw it.
    pub fn pod_started(&self, took: Duration) {
        self.pod_start.observe(took.as_secs_f64());
    }

    /// Every metric, as `GET /metrics` answers.
    pub async fn render(
        &self,
        running: &RunningTable,
        driver: Option<&dyn ContainerDriver>,
    ) -> String {
        let mut out = String::new();
        let mut counts: HashMap<String, u64> = PHASES.iter().map(|p| (p.to_string(), 0)).collect();
        for phase in self.phases.lock().expect("metrics lock").values() {
            *counts.entry(phase.clone()).or_default() += 1;
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort();
        family(
            &mut out,
            "skiff_node_pods",
            "Pods on this node by phase, as their workers last computed it.",
            MetricKind::Gauge,
        );
        for (phase, count) in counts {
            sample(
                &mut out,
                "skiff_node_pods",
                &[("phase", &phase)],
                count as f64,
            );
        }
        let counter = |out: &mut String, name: &str, help: &str, value: &AtomicU64| {
            family(out, name, help, MetricKind::Counter);
            sample(out, name, &[], value.load(Ordering::Relaxed) as f64);
        };
        counter(
            &mut out,
            "skiff_node_container_starts_total",
            "Container processes started, restarts included.",
            &self.container_starts,
        );
        counter(
            &mut out,
            "skiff_node_container_restarts_total",
            "Container processes started again after an earlier attempt of the same container ended.",
            &self.container_restarts,
        );
        self.pod_start.render(
            &mut out,
            "skiff_node_pod_start_duration_seconds",
            "From the node first seeing a pod to all its containers running.",
        );
        if let Some(driver) = driver {
            for metric in driver.metrics() {
                render_driver_metric(&mut out, &metric);
            }
            resource_usage(&mut out, running, driver).await;
        }
        out
    }
}

/// CPU and memory of each running pod and container, under kubelet's
/// `/metrics/resource` names.
async fn resource_usage(out: &mut String, running: &RunningTable, driver: &dyn ContainerDriver) {
    let mut pods = running.pods();
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut containers = Vec::new();
    for pod in &pods {
        for usage in driver.usage(&pod.uid).await {
            if pod.containers.contains_key(&usage.container) {
                containers.push((pod, usage));
            }
        }
    }
    type Read = fn(&crate::driver::ContainerUsage) -> f64;
    let figures: [(&str, &str, MetricKind, Read); 2] = [
        (
            "cpu_usage_seconds_total",
            "Cumulative CPU time used, in seconds.",
            MetricKind::Counter,
            |u| u.cpu_nanos as f64 / 1e9,
        ),
        (
            "memory_working_set_bytes",
            "Memory in use (Wasm: linear memories and tables of the live instances).",
            MetricKind::Gauge,
            |u| u.memory_bytes as f64,
        ),
    ];
    for (suffix, help, kind, read) in figures {
        let name = format!("container_{suffix}");
        family(out, &name, &format!("Per container: {help}"), kind);
        for (pod, usage) in &containers {
            let labels = [
                ("container", usage.container.as_str()),
                ("namespace", pod.namespace.as_str()),
                ("pod", pod.name.as_str()),
            ];
            sample(out, &name, &labels, read(usage));
        }
        let name = format!("pod_{suffix}");
        family(out, &name, &format!("Per pod: {help}"), kind);
        for pod in &pods {
            let total: f64 = containers
                .iter()
                .filter(|(p, _)| p.uid == pod.uid)
                .map(|(_, usage)| read(usage))
                .sum();
            let labels = [
                ("namespace", pod.namespace.as_str()),
                ("pod", pod.name.as_str()),
            ];
            sample(out, &name, &labels, total);
        }
    }
}

fn render_driver_metric(out: &mut String, metric: &DriverMetric) {
    family(out, metric.name, metric.help, metric.kind);
    for (labels, value) in &metric.samples {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sample(out, metric.name, &labels, *value);
    }
}

fn family(out: &mut String, name: &str, help: &str, kind: MetricKind) {
    let kind = match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
    };
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape_label(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

/// Go's formatting of floats as Prometheus prints them: integers without a
/// fraction, `+Inf`.
fn number(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if value.is_nan() {
        return "NaN".to_string();
    }
    format!("{value}")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A cumulative histogram with fixed buckets.
struct Histogram {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum of the observations, in nanoseconds (so it can be an atomic).
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: START_BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn observe(&self, seconds: f64) {
        if let Some(i) = START_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {name} histogram");
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, count) in START_BUCKETS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            sample(out, &bucket, &[("le", &number(*bound))], cumulative as f64);
        }
        let count = self.count.load(Ordering::Relaxed);
        sample(out, &bucket, &[("le", "+Inf")], count as f64);
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        sample(out, &format!("{name}_sum"), &[], sum);
        sample(out, &format!("{name}_count"), &[], count as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let histogram = Histogram::default();
        histogram.observe(0.003);
        histogram.observe(0.02);
        histogram.observe(1000.0);
        let mut out = String::new();
        histogram.render(&mut out, "h", "help");
        assert!(out.contains("# TYPE h histogram\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"0.01\"} 1\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"0.025\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"300\"} 2\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("h_count 3\n"), "{out}");
        assert!(out.contains("h_sum 1000.023\n"), "{out}");
    }

    #[test]
    fn labels_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "x\"y\\z\nw")], 1.5);
        assert_eq!(out, "m{a=\"x\\\"y\\\\z\\nw\"} 1.5\n");
    }

    #[test]
    fn pods_are_counted_by_their_latest_phase() {
        let metrics = NodeMetrics::default();
        metrics.pod_phase("u1", "Pending");
        metrics.pod_phase("u1", "Running");
        metrics.pod_phase("u2", "Running");
        metrics.pod_phase("u3", "Failed");
        metrics.pod_gone("u3");
        let phases = metrics.phases.lock().unwrap().clone();
        assert_eq!(phases.len(), 2);
        assert!(phases.values().all(|p| p == "Running"));
    }
}
