//! Per-route request counters and latency histograms, rendered in the
//! Prometheus text format at `GET /_skiff/metrics` on the gateway.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct RouteStats {
    /// Responses by status code.
    codes: BTreeMap<u16, u64>,
    /// Cumulative counts per bucket, then the sum of seconds.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, RouteStats>>,
}

impl Metrics {
    pub fn record(&self, route: &str, status: u16, latency: Duration) {
        let mut routes = self.routes.lock().expect("metrics lock");
        let stats = routes.entry(route.to_string()).or_default();
        *stats.codes.entry(status).or_insert(0) += 1;
        let seconds = latency.as_secs_f64();
        for (bucket, bound) in stats.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        stats.count += 1;
        stats.sum += seconds;
    }

    /// The Prometheus text exposition of every route seen so far.
    pub fn render(&self) -> String {
        let routes = self.routes.lock().expect("metrics lock");
        let mut out = String::new();
        out.push_str("# HELP skiff_gateway_requests_total Requests answered by the gateway, by route and status code.\n");
        out.push_str("# TYPE skiff_gateway_requests_total counter\n");
        for (route, stats) in routes.iter() {
            for (code, n) in &stats.codes {
                let _ = writeln!(
                    out,
                    "skiff_gateway_requests_total{{route=\"{route}\",code=\"{code}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP skiff_gateway_errors_total Requests answered with a 5xx status, by route.\n",
        );
        out.push_str("# TYPE skiff_gateway_errors_total counter\n");
        for (route, stats) in routes.iter() {
            let errors: u64 = stats.codes.range(500..600).map(|(_, n)| n).sum();
            let _ = writeln!(
                out,
                "skiff_gateway_errors_total{{route=\"{route}\"}} {errors}"
            );
        }
        out.push_str(
            "# HELP skiff_gateway_request_duration_seconds Time to the response head, by route.\n",
        );
        out.push_str("# TYPE skiff_gateway_request_duration_seconds histogram\n");
        for (route, stats) in routes.iter() {
            for (bound, n) in BUCKETS.iter().zip(stats.buckets) {
                let _ = writeln!(
                    out,
                    "skiff_gateway_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "skiff_gateway_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                stats.count
            );
            let _ = writeln!(
                out,
                "skiff_gateway_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                stats.sum
            );
            let _ = writeln!(
                out,
                "skiff_gateway_request_duration_seconds_count{{route=\"{route}\"}} {}",
                stats.count
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_codes_errors_and_buckets() {
        let metrics = Metrics::default();
        metrics.record("service/ns/web", 200, Duration::from_millis(3));
        metrics.record("service/ns/web", 503, Duration::from_millis(30));
        let text = metrics.render();
        assert!(
            text.contains("skiff_gateway_requests_total{route=\"service/ns/web\",code=\"200\"} 1")
        );
        assert!(text.contains("skiff_gateway_errors_total{route=\"service/ns/web\"} 1"));
        assert!(text.contains(
            "skiff_gateway_request_duration_seconds_bucket{route=\"service/ns/web\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "skiff_gateway_request_duration_seconds_bucket{route=\"service/ns/web\",le=\"0.05\"} 2"
        ));
        assert!(
            text.contains(
                "skiff_gateway_request_duration_seconds_count{route=\"service/ns/web\"} 2"
            )
        );
    }
}
