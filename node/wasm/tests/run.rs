//! Running real guests: output, exit codes, traps and cancellation.

mod support;

use skiff_wasm::{Exit, ProgramKind};
use support::{PATIENCE, captured_process, image, runtime};
use tokio_util::sync::CancellationToken;

/// Starts `hello` (either kind), checks the greeting and that it keeps ticking,
/// then cancels it.
async fn hello_greets_ticks_and_is_killed(name: &str, kind: ProgramKind) {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());
    let program = runtime.prepare(&image(name)).await.unwrap();
    assert_eq!(program.kind(), kind);

    let (process, mut out, _err) = captured_process(
        &["hello", "one", "two words"],
        &[("GREETING", "ahoy"), ("POD_NAME", "hello")],
    );
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (runtime, program, cancel) = (runtime.clone(), program.clone(), cancel.clone());
        async move { runtime.run(&program, process, cancel).await }
    });

    out.wait_for("tick 2\n").await;
    let text = out.text();
    assert!(
        text.starts_with("Hello from Skiff! args: [\"one\", \"two words\"]\n"),
        "{text}"
    );
    assert!(text.contains("env GREETING=ahoy\n"), "{text}");
    assert!(text.contains("env POD_NAME=hello\n"), "{text}");
    // Only what the process was given: the host's environment is not inherited.
    assert!(!text.contains("env PATH="), "{text}");
    assert!(!run.is_finished(), "hello should run until cancelled");

    cancel.cancel();
    let exit = tokio::time::timeout(PATIENCE, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(exit, Exit::Killed);
}

#[tokio::test]
async fn hello_component_greets_ticks_and_is_killed() {
    hello_greets_ticks_and_is_killed("hello", ProgramKind::Component).await;
}

#[tokio::test]
async fn hello_preview1_module_greets_ticks_and_is_killed() {
    hello_greets_ticks_and_is_killed("hello-p1", ProgramKind::Module).await;
}

/// Preview 1 reports the exact code (`proc_exit(n)` → `I32Exit(n)`).
#[tokio::test]
async fn a_preview1_exit_code_is_reported_exactly() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());
    let program = runtime.prepare(&image("exit-code-p1")).await.unwrap();
    assert_eq!(program.kind(), ProgramKind::Module);
    // wasmtime treats a preview-1 exit status of 126 or more as a trap.
    for code in [0, 3, 42, 125] {
        let arg = code.to_string();
        let (process, out, _err) = captured_process(&["exit-code", &arg], &[]);
        let exit = runtime
            .run(&program, process, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(exit, Exit::Code(code), "exit-code {code}");
        assert_eq!(out.text(), format!("exiting with code {code}\n"));
    }
}

/// Rust's wasm32-wasip2 std exits through `wasi:cli/exit.exit(result)`, which only
/// carries success or failure: any non-zero code arrives as 1.
#[tokio::test]
async fn a_component_exit_status_is_reported() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());
    let program = runtime.prepare(&image("exit-code")).await.unwrap();
    assert_eq!(program.kind(), ProgramKind::Component);
    for (code, expected) in [(0, 0), (1, 1), (42, 1)] {
        let arg = code.to_string();
        let (process, out, _err) = captured_process(&["exit-code", &arg], &[]);
        let exit = runtime
            .run(&program, process, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(exit, Exit::Code(expected), "exit-code {code}");
        assert_eq!(out.text(), format!("exiting with code {code}\n"));
    }

    let (process, _out, err) = captured_process(&["exit-code", "nonsense"], &[]);
    let exit = runtime
        .run(&program, process, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(exit, Exit::Code(1));
    assert!(err.text().starts_with("usage: exit-code"), "{}", err.text());
}

#[tokio::test]
async fn a_panic_is_a_trap_not_a_host_failure() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());
    let program = runtime.prepare(&image("exit-code")).await.unwrap();
    let (process, _out, err) = captured_process(&["exit-code", "panic"], &[]);
    let exit = runtime
        .run(&program, process, CancellationToken::new())
        .await
        .unwrap();
    match exit {
        Exit::Trap(message) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(err.text().contains("asked to panic"), "{}", err.text());

    // The runtime is unharmed: the same program still runs.
    let (process, _out, _err) = captured_process(&["exit-code", "0"], &[]);
    let exit = runtime
        .run(&program, process, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(exit, Exit::Code(0));
}

/// On a single-threaded runtime the cancelling task only gets to run if the busy
/// guest yields: this proves epoch interruption hands the thread back.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_guest_yields_and_can_be_killed() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());
    let program = runtime.prepare(&image("exit-code")).await.unwrap();
    let (process, mut out, _err) = captured_process(&["exit-code", "spin"], &[]);
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (runtime, cancel) = (runtime.clone(), cancel.clone());
        async move { runtime.run(&program, process, cancel).await }
    });
    out.wait_for("spinning\n").await;
    // A timer on the same thread firing while the guest spins is the proof.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    cancel.cancel();
    let exit = tokio::time::timeout(PATIENCE, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(exit, Exit::Killed);
}

/// A full instance pool is the node's problem, reported as a `RunError`, and the
/// runtime recovers once an instance ends.
#[tokio::test]
async fn a_full_pool_is_a_run_error_not_a_panic() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = skiff_wasm::WasmRuntime::new(skiff_wasm::RuntimeConfig {
        cache_dir: cache.path().to_owned(),
        max_instances: 1,
        ..skiff_wasm::RuntimeConfig::default()
    })
    .unwrap();
    let hello = runtime.prepare(&image("hello")).await.unwrap();
    let exit_code = runtime.prepare(&image("exit-code")).await.unwrap();

    let (process, mut out, _err) = captured_process(&["hello"], &[]);
    let cancel = CancellationToken::new();
    let first = tokio::spawn({
        let (runtime, cancel) = (runtime.clone(), cancel.clone());
        async move { runtime.run(&hello, process, cancel).await }
    });
    out.wait_for("Hello from Skiff!").await;

    let (process, _out, _err) = captured_process(&["exit-code", "0"], &[]);
    let second = runtime
        .run(&exit_code, process, CancellationToken::new())
        .await;
    assert!(
        matches!(second, Err(skiff_wasm::RunError::Instantiate { .. })),
        "{second:?}"
    );

    cancel.cancel();
    let exit = tokio::time::timeout(PATIENCE, first)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(exit, Exit::Killed);
    let (process, _out, _err) = captured_process(&["exit-code", "0"], &[]);
    let third = runtime
        .run(&exit_code, process, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(third, Exit::Code(0));
}
