//! A run-to-completion guest for testing how the node reports how a program ended:
//! `exit-code <n>` exits with status `n`, `exit-code panic` panics (a trap in Wasm),
//! `exit-code spin` loops forever without calling the host (only the node's epoch
//! interruption can stop it).

use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1).unwrap_or_default();
    match arg.as_str() {
        "panic" => panic!("asked to panic"),
        "spin" => spin(),
        _ => {}
    }
    match arg.parse::<u8>() {
        Ok(code) => {
            println!("exiting with code {code}");
            ExitCode::from(code)
        }
        Err(_) => {
            eprintln!("usage: exit-code <0-255> | panic | spin (got {arg:?})");
            ExitCode::from(2)
        }
    }
}

fn spin() -> ! {
    println!("spinning");
    let mut n: u64 = 0;
    loop {
        // black_box keeps the optimiser from proving the loop does nothing.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
