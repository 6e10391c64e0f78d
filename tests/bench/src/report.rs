//! Latency samples and the `RESULT` lines every benchmark ends with.

use std::fmt;
use std::time::Duration;

/// Which way a metric improves.
#[derive(Clone, Copy, Debug)]
pub enum Better {
    Higher,
    Lower,
}

/// One figure of ours next to the same figure of a peer, printed as
/// `RESULT <bench> <metric> ours=… peer=… peer_name=… unit=… better=…`.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub bench: &'static str,
    pub metric: String,
    pub ours: f64,
    pub peer: f64,
    pub peer_name: String,
    pub unit: &'static str,
    pub better: Better,
}

impl Comparison {
    /// How many times better ours is than the peer (above 1: ours wins).
    pub fn advantage(&self) -> f64 {
        match self.better {
            Better::Higher => self.ours / self.peer,
            Better::Lower => self.peer / self.ours,
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let better = match self.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
        };
        write!(
            f,
            "RESULT {} {} ours={} peer={} peer_name={} unit={} better={}",
            self.bench,
            self.metric,
            number(self.ours),
            number(self.peer),
            self.peer_name,
            self.unit,
            better
        )
    }
}

/// Enough digits to compare, without pretending to more precision than a noisy
/// machine gives.
fn number(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// Prints a human-readable table to stderr, then the `RESULT` lines, last, on stdout.
pub fn finish(comparisons: &[Comparison]) {
    eprintln!();
    eprintln!(
        "{:<28} {:>12} {:>12} {:>8}  unit",
        "metric", "ours", "peer", "ours/peer"
    );
    for c in comparisons {
        eprintln!(
            "{:<28} {:>12} {:>12} {:>7.2}x  {} (better={}, peer {})",
            format!("{} {}", c.bench, c.metric),
            number(c.ours),
            number(c.peer),
            c.advantage(),
            c.unit,
            match c.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
            },
            c.peer_name
        );
    }
    for c in comparisons {
        println!("{c}");
    }
}

/// Latencies of one kind of operation.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    sorted: Vec<Duration>,
}

impl Samples {
    pub fn new(mut samples: Vec<Duration>) -> Samples {
        samples.sort_unstable();
        Samples { sorted: samples }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The nearest-rank percentile `q` (0–100) in milliseconds; NaN without samples.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((q / 100.0) * self.sorted.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.sorted.len()) - 1;
        self.sorted[index].as_secs_f64() * 1e3
    }

    /// `p50/p99/max` for progress lines.
    pub fn summary(&self) -> String {
        format!(
            "n={} p50={:.3} ms p99={:.3} ms max={:.3} ms",
            self.len(),
            self.percentile_ms(50.0),
            self.percentile_ms(99.0),
            self.percentile_ms(100.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples = Samples::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(samples.percentile_ms(50.0), 50.0);
        assert_eq!(samples.percentile_ms(99.0), 99.0);
        assert_eq!(samples.percentile_ms(100.0), 100.0);
        assert_eq!(samples.percentile_ms(0.0), 1.0);
        assert!(Samples::default().percentile_ms(50.0).is_nan());
    }

    #[test]
    fn result_line_has_the_agreed_shape() {
        let line = Comparison {
            bench: "store",
            metric: "put_1m_16c".into(),
            ours: 7420.25,
            peer: 6547.0,
            peer_name: "etcd-3.4.23".into(),
            unit: "ops/s",
            better: Better::Higher,
        }
        .to_string();
        assert_eq!(
            line,
            "RESULT store put_1m_16c ours=7420.2 peer=6547.0 peer_name=etcd-3.4.23 unit=ops/s better=higher"
        );
    }
}
