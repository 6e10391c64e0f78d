//! Randomized fault runs; CI runs these seeds on every `cargo test`.

use super::run_seed_blocking;

fn run_seeds(seeds: std::ops::Range<u64>) {
    let mut failures = Vec::new();
    for seed in seeds {
        let report = run_seed_blocking(seed);
        if report.violations > 0 || report.lost_writes > 0 {
            failures.push(report);
        }
    }
    assert!(failures.is_empty(), "failing seeds: {failures:#?}");
}

#[test]
fn fault_seeds_0_to_100() {
    run_seeds(0..100);
}

#[test]
fn fault_seeds_100_to_200() {
    run_seeds(100..200);
}
