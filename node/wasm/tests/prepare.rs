//! Preparing programs: fetch errors, invalid artifacts and the two compile caches.

mod support;

use skiff_wasm::{Exit, PrepareError, ProgramKind, RuntimeStats};
use support::{captured_process, image, runtime};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_missing_file_is_a_pull_error() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());
    let missing = cache.path().join("nope.wasm");
    let err = runtime
        .prepare(&format!("file://{}", missing.display()))
        .await
        .unwrap_err();
    assert!(matches!(err, PrepareError::Fetch { .. }), "{err:?}");
    assert!(err.is_pull_error());
}

#[tokio::test]
async fn an_unsupported_reference_is_a_pull_error() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());
    let err = runtime
        .prepare("ftp://example.com/app.wasm")
        .await
        .unwrap_err();
    assert!(
        matches!(err, PrepareError::UnsupportedReference { .. }),
        "{err:?}"
    );
    assert!(err.is_pull_error());
}

#[tokio::test]
async fn bytes_that_are_not_a_runnable_program_are_invalid() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());
    let cases: [(&str, &[u8]); 3] = [
        ("script.wasm", b"#!/bin/sh\necho not wasm\n"),
        // The right header, then garbage: fails validation.
        ("garbage.wasm", b"\0asm\x01\0\0\0\xff\xff\xff"),
        // A valid but empty module: no `_start`, so not a command.
        ("empty.wasm", b"\0asm\x01\0\0\0"),
    ];
    for (name, bytes) in cases {
        let path = cache.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = runtime
            .prepare(&format!("file://{}", path.display()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, PrepareError::Invalid { .. }),
            "{name}: {err:?}"
        );
        assert!(!err.is_pull_error(), "{name}");
    }
}

#[tokio::test]
async fn a_second_prepare_is_answered_from_memory() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());
    let first = runtime.prepare(&image("hello")).await.unwrap();
    let second = runtime.prepare(&image("hello")).await.unwrap();
    assert_eq!(first.digest(), second.digest());
    assert!(first.digest().starts_with("sha256:"));
    assert_eq!(
        runtime.stats(),
        RuntimeStats {
            compiles: 1,
            disk_cache_loads: 0,
            memory_cache_hits: 1,
        }
    );
}

#[tokio::test]
async fn concurrent_prepares_compile_once() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());
    let reference = image("exit-code");
    let (a, b, c) = tokio::join!(
        runtime.prepare(&reference),
        runtime.prepare(&reference),
        runtime.prepare(&reference),
    );
    assert_eq!(a.unwrap().digest(), b.unwrap().digest());
    assert_eq!(c.unwrap().kind(), ProgramKind::Component);
    assert_eq!(runtime.stats().compiles, 1);
}

#[tokio::test]
async fn a_restarted_runtime_loads_compiled_code_from_disk() {
    let cache = tempfile::tempdir().unwrap();
    let digest = {
        let runtime = runtime(cache.path());
        let component = runtime.prepare(&image("exit-code")).await.unwrap();
        runtime.prepare(&image("exit-code-p1")).await.unwrap();
        assert_eq!(runtime.stats().compiles, 2);
        component.digest().to_owned()
    };

    let runtime = runtime(cache.path());
    let component = runtime.prepare(&image("exit-code")).await.unwrap();
    let module = runtime.prepare(&image("exit-code-p1")).await.unwrap();
    assert_eq!(component.digest(), digest);
    assert_eq!(component.kind(), ProgramKind::Component);
    assert_eq!(module.kind(), ProgramKind::Module);
    assert_eq!(runtime.stats().compiles, 0);
    assert_eq!(runtime.stats().disk_cache_loads, 2);

    // The loaded code of both kinds runs.
    for program in [&component, &module] {
        let (process, out, _err) = captured_process(&["exit-code", "0"], &[]);
        let exit = runtime
            .run(program, process, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(exit, Exit::Code(0), "{program:?}");
        assert_eq!(out.text(), "exiting with code 0\n");
    }
}

#[tokio::test]
async fn a_damaged_cache_file_is_replaced_by_a_fresh_compile() {
    let cache = tempfile::tempdir().unwrap();
    runtime(cache.path())
        .prepare(&image("exit-code-p1"))
        .await
        .unwrap();
    let cwasm: Vec<_> = walk(cache.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(cwasm.len(), 1, "{cwasm:?}");
    std::fs::write(&cwasm[0], b"not compiled code").unwrap();

    let runtime = runtime(cache.path());
    let program = runtime.prepare(&image("exit-code-p1")).await.unwrap();
    assert_eq!(runtime.stats().compiles, 1);
    let (process, _out, _err) = captured_process(&["exit-code", "5"], &[]);
    let exit = runtime
        .run(&program, process, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(exit, Exit::Code(5));

    // And the next restart finds a good file again.
    let runtime = support::runtime(cache.path());
    runtime.prepare(&image("exit-code-p1")).await.unwrap();
    assert_eq!(runtime.stats().disk_cache_loads, 1);
    assert_eq!(runtime.stats().compiles, 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn an_unreachable_https_server_is_a_pull_error() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());
    // Nothing listens on port 1 of the loopback address: the connection is refused.
    let err = runtime
        .prepare("https://127.0.0.1:1/hello.wasm")
        .await
        .unwrap_err();
    assert!(matches!(err, PrepareError::Fetch { .. }), "{err:?}");
    assert!(err.is_pull_error());
}

/// The default pool (sized for a few hundred live instances) must be creatable on
/// an ordinary machine, since `skiff up` uses it.
#[tokio::test]
async fn the_default_config_starts() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = skiff_wasm::WasmRuntime::new(skiff_wasm::RuntimeConfig {
        cache_dir: cache.path().to_owned(),
        ..skiff_wasm::RuntimeConfig::default()
    })
    .unwrap();
    let program = runtime.prepare(&image("exit-code-p1")).await.unwrap();
    let (process, _out, _err) = captured_process(&["exit-code", "0"], &[]);
    let exit = runtime
        .run(&program, process, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(exit, Exit::Code(0));
}
