//! A busybox-style multi-call guest: the command is argv\[0\] (what
//! `kubectl exec POD -- cat /etc/config/greeting` passes), or argv\[1\] when
//! argv\[0\] is `toolbox`. Each command does one small thing with what the pod
//! granted the guest:
//!
//! - `cat [FILE...]`: print the files, or copy stdin to stdout when none is named;
//! - `ls [DIR]`: list a directory (default `.`), one name per line, sorted;
//! - `env`: print the environment, sorted, as `NAME=value`;
//! - `echo [WORD...]`: print the words;
//! - `exit N`: exit with code N (a wasm32-wasip1 build keeps the full code;
//!   Rust's wasm32-wasip2 std reports 0 or 1);
//! - `spin MILLIS`: keep a CPU busy for MILLIS milliseconds;
//! - `serve`: print a line, then stay up (a long-running container to exec into).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let name = |arg: &str| arg.rsplit('/').next().unwrap_or(arg).to_string();
    if args.first().map(|a| name(a)).as_deref() == Some("toolbox") {
        args.remove(0);
    }
    let Some(command) = args.first().map(|a| name(a)) else {
        fail(2, "usage: toolbox COMMAND [ARG...] (cat, ls, env, echo, exit, spin, serve)");
    };
    let rest = &args[1..];
    match command.as_str() {
        "cat" => cat(rest),
        "ls" => ls(rest.first().map(String::as_str).unwrap_or(".")),
        "env" => {
            let mut vars: Vec<(String, String)> = std::env::vars().collect();
            vars.sort();
            for (key, value) in vars {
                println!("{key}={value}");
            }
        }
        "echo" => println!("{}", rest.join(" ")),
        "exit" => {
            let code = rest.first().and_then(|c| c.parse().ok()).unwrap_or(0);
            std::process::exit(code);
        }
        "spin" => {
            let millis = rest.first().and_then(|m| m.parse().ok()).unwrap_or(1000);
            spin(Duration::from_millis(millis));
        }
        "serve" => {
            println!("toolbox: serving; exec into me");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        other => fail(127, &format!("toolbox: {other}: command not found")),
    }
}

fn cat(files: &[String]) {
    let mut out = std::io::stdout().lock();
    if files.is_empty() {
        let mut input = Vec::new();
        if let Err(error) = std::io::stdin().read_to_end(&mut input) {
            fail(1, &format!("cat: stdin: {error}"));
        }
        let _ = out.write_all(&input);
        return;
    }
    let mut failed = false;
    for file in files {
        match std::fs::read(file) {
            Ok(bytes) => {
                let _ = out.write_all(&bytes);
            }
            Err(error) => {
                eprintln!("cat: {file}: {error}");
                failed = true;
            }
        }
    }
    let _ = out.flush();
    if failed {
        std::process::exit(1);
    }
}

fn ls(dir: &str) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => fail(1, &format!("ls: {dir}: {error}")),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        println!("{name}");
    }
}

fn spin(length: Duration) {
    let started = Instant::now();
    let mut x: u64 = 1;
    while started.elapsed() < length {
        for _ in 0..10_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        }
        std::hint::black_box(x);
    }
}

fn fail(code: i32, message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(code);
}
