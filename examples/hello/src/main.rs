//! A long-running guest: it greets with its arguments and environment, then prints
//! a numbered line every second until the node stops it.

use std::io::{self, Write};
use std::time::Duration;

fn main() -> io::Result<()> {
    let mut out = io::stdout().lock();
    let args: Vec<String> = std::env::args().skip(1).collect();
    writeln!(out, "Hello from Skiff! args: {args:?}")?;

    // Sorted so the output is the same however the host ordered the variables.
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    for (name, value) in env {
        writeln!(out, "env {name}={value}")?;
    }
    out.flush()?;

    // Flush each line so `kubectl logs -f` sees it as soon as it is written.
    for tick in 1u64.. {
        std::thread::sleep(Duration::from_secs(1));
        writeln!(out, "tick {tick}")?;
        out.flush()?;
    }
    Ok(())
}
