//! Runs the randomized fault harness over many seeds and prints the summary line
//! `seeds N, violations V, lost acked writes L`.
//!
//! `cargo run -p skiff-store --features sim --example fault-seeds -- --seeds 2000 [--from S] [--verbose]`

use skiff_store::sim::run_seed_blocking;

fn main() -> Result<(), String> {
    let mut seeds = 200u64;
    let mut from = 0u64;
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--seeds" => seeds = number("--seeds")?,
            "--from" => from = number("--from")?,
            "--verbose" => verbose = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (use --seeds N --from S --verbose)"
                ));
            }
        }
    }
    let (mut violations, mut lost, mut failpoints) = (0, 0, 0);
    for seed in from..from + seeds {
        let report = run_seed_blocking(seed);
        if verbose || report.violations > 0 || report.lost_writes > 0 {
            eprintln!("seed {seed}: {report:?}");
        }
        violations += report.violations;
        lost += report.lost_writes;
        failpoints += report.failpoint_crashes;
    }
    println!("seeds {seeds}, violations {violations}, lost acked writes {lost}");
    println!("crashes at disk-write failpoints: {failpoints}");
    Ok(())
}
