//! Prints what a pod gave the guest: its argv, environment, current directory,
//! and every file under the directories named on the command line. Options run
//! first, in order:
//!
//! - `--write PATH TEXT`: write TEXT into PATH (a volume shared with another container);
//! - `--wait-for PATH`: wait until PATH exists (written by another container);
//! - `--alloc-mib N`: allocate and touch N MiB, one MiB at a time (memory limits);
//! - `--exit N`: exit at once with code N (an exec probe's verdict);
//! - `--spin`: burn CPU forever, printing a line now and then (CPU limits);
//! - `--fill DIR`: write 64 KiB files into DIR until a write fails (volume size limits);
//! - `--read PATH`: try to read PATH and say whether it worked (files outside the volumes);
//! - `--sleep`: after printing, stay up forever (a long-running container).

use std::path::Path;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("argv: {}", args.join(" "));
    let mut dirs = Vec::new();
    let mut sleep = false;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--write" => {
                let (Some(path), Some(text)) = (rest.next(), rest.next()) else {
                    fail("--write needs PATH and TEXT");
                };
                match std::fs::write(path, text) {
                    Ok(()) => println!("wrote {path}"),
                    Err(error) => println!("cannot write {path}: {error}"),
                }
            }
            "--wait-for" => {
                let Some(path) = rest.next() else {
                    fail("--wait-for needs PATH");
                };
                while !Path::new(path).exists() {
                    std::thread::sleep(Duration::from_millis(200));
                }
                println!("found {path}");
            }
            "--alloc-mib" => {
                let Some(mib) = rest.next().and_then(|n| n.parse::<usize>().ok()) else {
                    fail("--alloc-mib needs a number");
                };
                let mut blocks = Vec::new();
                for i in 1..=mib {
                    blocks.push(vec![i as u8; 1 << 20]);
                    println!("allocated {i} MiB");
                }
                println!("holding {} MiB", blocks.len());
            }
            "--exit" => {
                let Some(code) = rest.next().and_then(|n| n.parse::<i32>().ok()) else {
                    fail("--exit needs a number");
                };
                std::process::exit(code);
            }
            "--spin" => spin(),
            "--fill" => {
                let Some(dir) = rest.next() else {
                    fail("--fill needs DIR");
                };
                fill(Path::new(dir));
            }
            "--read" => {
                let Some(path) = rest.next() else {
                    fail("--read needs PATH");
                };
                match std::fs::read(path) {
                    Ok(bytes) => println!("read {path}: {} bytes", bytes.len()),
                    Err(error) => println!("cannot read {path}: {error}"),
                }
            }
            "--sleep" => sleep = true,
            dir => dirs.push(dir.to_string()),
        }
    }
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    for (name, value) in env {
        println!("env {name}={value}");
    }
    match std::env::current_dir() {
        Ok(dir) => println!("cwd: {}", dir.display()),
        Err(error) => println!("cwd: unknown ({error})"),
    }
    for dir in &dirs {
        dump(Path::new(dir));
    }
    println!("done");
    while sleep {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Never returns: a busy loop that reports its progress every 2^28 rounds.
fn spin() -> ! {
    let mut x: u64 = 1;
    let mut rounds: u64 = 0;
    loop {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        rounds += 1;
        if rounds.trailing_zeros() >= 28 {
            println!("spinning: {rounds} rounds ({x:x})");
        }
    }
}

/// Writes 64 KiB files into `dir` until a write fails, then says how far it got.
fn fill(dir: &Path) {
    let block = vec![0x5a_u8; 64 << 10];
    let mut written: u64 = 0;
    for i in 0.. {
        let path = dir.join(format!("fill-{i}"));
        if let Err(error) = std::fs::write(&path, &block) {
            println!("cannot write {}: {error}", path.display());
            break;
        }
        written += block.len() as u64;
        if i % 160 == 0 {
            println!("wrote {} MiB", written >> 20);
        }
    }
    println!("filled {written} bytes");
}

/// Each file under `path` as `file PATH: CONTENT` (newlines shown as `\n`).
fn dump(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        println!("missing {}", path.display());
        return;
    };
    if meta.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            println!("unreadable {}", path.display());
            return;
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for name in names {
            dump(&name);
        }
    } else {
        match std::fs::read_to_string(path) {
            Ok(text) => println!("file {}: {}", path.display(), text.replace('\n', "\\n")),
            Err(error) => println!("unreadable {}: {error}", path.display()),
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("envdump: {message}");
    std::process::exit(2);
}
