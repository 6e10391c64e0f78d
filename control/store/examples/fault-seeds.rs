//! Runs the randomized fault harness over many seeds and prints the summary line
//! `seeds N, violations V, lost acked writes L`.
//!
//! `cargo run -p skiff-store --features sim --example fault-seeds -- --seeds 2000 [--from S]
//! [--verbose] [--history] [--replay N]`
//!
//! `--history` prints the operations and nemesis actions of each failing seed;
//! `--replay N` runs each seed N more times and counts the runs whose history differs
//! from the first (a seed replays when that count is 0).

use skiff_store::sim::run_seed_blocking;

fn main() -> Result<(), String> {
    let mut seeds = 200u64;
    let mut from = 0u64;
    let mut verbose = false;
    let mut show_history = false;
    let mut replays = 0u64;
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
            "--history" => show_history = true,
            "--replay" => replays = number("--replay")?,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (use --seeds N --from S --verbose --history \
                     --replay N)"
                ));
            }
        }
    }
    let (mut violations, mut lost, mut failpoints, mut diverged, mut duplicates) = (0, 0, 0, 0, 0);
    for seed in from..from + seeds {
        let report = run_seed_blocking(seed);
        let failed = report.violations > 0 || report.lost_writes > 0;
        if verbose || failed {
            eprintln!(
                "seed {seed}: members {}, operations {}, unknown {}, violations {}, lost \
                 writes {}, failpoint crashes {}, fingerprint {:016x} {:?}",
                report.members,
                report.operations,
                report.unknown,
                report.violations,
                report.lost_writes,
                report.failpoint_crashes,
                report.fingerprint(),
                report.details
            );
        }
        if show_history && failed {
            let mut lines: Vec<(u64, String)> = report.nemesis.clone();
            for op in &report.history {
                let ret = if op.acknowledged() {
                    op.ret.to_string()
                } else {
                    "unknown".into()
                };
                lines.push((op.call, format!("{} {:?} returned {ret}", op.key, op.kind)));
            }
            lines.sort();
            for (at, line) in lines {
                eprintln!("  {at:>4} {line}");
            }
        }
        for _ in 0..replays {
            let again = run_seed_blocking(seed);
            if again.fingerprint() != report.fingerprint() {
                diverged += 1;
                if verbose {
                    eprintln!(
                        "seed {seed}: a replay differs (fingerprint {:016x}, failpoint crashes {})",
                        again.fingerprint(),
                        again.failpoint_crashes
                    );
                }
            }
        }
        violations += report.violations;
        lost += report.lost_writes;
        failpoints += report.failpoint_crashes;
        duplicates += report.duplicates_skipped;
    }
    println!("seeds {seeds}, violations {violations}, lost acked writes {lost}");
    println!("crashes at disk-write failpoints: {failpoints}");
    println!("duplicate applications of a request skipped (all members): {duplicates}");
    if replays > 0 {
        println!("replays that differed from the first run: {diverged}");
    }
    Ok(())
}
