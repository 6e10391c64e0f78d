//! Pulling Wasm OCI artifacts from a real registry on loopback (Debian's
//! `docker-registry`): both layouts, tags, digests, indexes, digest checks and the
//! pull policies, including after the registry is gone.

mod registry;
mod support;

use registry::{Layout, Registry};
use skiff_wasm::{PrepareError, ProgramKind, PullOptions, PullPolicy};
use support::{captured_process, guests, runtime};
use tokio_util::sync::CancellationToken;

fn guest(name: &str) -> Vec<u8> {
    std::fs::read(guests().join(format!("{name}.wasm"))).expect("built guest")
}

fn policy(policy: PullPolicy) -> PullOptions {
    PullOptions {
        policy,
        ..PullOptions::default()
    }
}

/// A started registry in a temp dir, or `None` when the test must be skipped.
fn registry() -> Option<(tempfile::TempDir, Registry)> {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path())?;
    Some((dir, registry))
}

#[tokio::test]
async fn pulls_both_layouts_by_tag_and_digest_and_runs_them() {
    let Some((_dir, registry)) = registry() else {
        return;
    };
    let host = registry.host();
    let content = registry.push_wasm("examples/hello", "v1", &guest("hello"), Layout::WasmContent);
    let cncf = registry.push_wasm("examples/hello-p1", "v1", &guest("hello-p1"), Layout::Cncf);
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());

    let component = runtime
        .prepare_with(
            &format!("{host}/examples/hello:v1"),
            &PullOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(component.program.kind(), ProgramKind::Component);
    assert_eq!(
        component.image_id,
        format!("{host}/examples/hello@{}", content.digest)
    );
    assert_eq!(
        component.program.digest(),
        registry::sha256(&guest("hello"))
    );

    let module = runtime
        .prepare_with(
            &format!("{host}/examples/hello-p1:v1"),
            &PullOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(module.program.kind(), ProgramKind::Module);
    assert_eq!(
        module.image_id,
        format!("{host}/examples/hello-p1@{}", cncf.digest)
    );

    let pinned = format!("{host}/examples/hello@{}", content.digest);
    let by_digest = runtime
        .prepare_with(&pinned, &policy(PullPolicy::Always))
        .await
        .unwrap();
    assert_eq!(by_digest.image_id, pinned);
    assert_eq!(by_digest.program.digest(), component.program.digest());
    assert_eq!(
        runtime.stats().compiles,
        2,
        "the digest pull reused the compile"
    );

    let (process, mut out, _err) = captured_process(&["hello", "registry"], &[]);
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (runtime, program, cancel) =
            (runtime.clone(), component.program.clone(), cancel.clone());
        async move { runtime.run(&program, process, cancel).await }
    });
    out.wait_for("Hello from Skiff! args: [\"registry\"]").await;
    cancel.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_image_index_resolves_to_its_wasi_wasm_entry() {
    let Some((_dir, registry)) = registry() else {
        return;
    };
    let host = registry.host();
    let other = registry.push_wasm("multi/app", "other", &guest("exit-code"), Layout::Cncf);
    let wasm = registry.push_wasm("multi/app", "wasm", &guest("hello"), Layout::Cncf);
    let index = registry.push_index(
        "multi/app",
        "v1",
        &[(&other, "linux", "amd64"), (&wasm, "wasi", "wasm")],
    );
    let cache = tempfile::tempdir().unwrap();
    let prepared = runtime(cache.path())
        .prepare_with(&format!("{host}/multi/app:v1"), &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(prepared.program.digest(), registry::sha256(&guest("hello")));
    assert_eq!(
        prepared.image_id,
        format!("{host}/multi/app@{}", index.digest)
    );

    let linux_only = registry.push_index("multi/app", "linux", &[(&other, "linux", "amd64")]);
    let err = runtime(cache.path())
        .prepare(&format!("{host}/multi/app@{}", linux_only.digest))
        .await
        .unwrap_err();
    assert!(err.is_pull_error(), "{err:?}");
    assert!(format!("{:?}", err).contains("NoWasmPlatform"), "{err:?}");
}

#[tokio::test]
async fn wrong_digests_and_missing_tags_are_pull_errors() {
    let Some((_dir, registry)) = registry() else {
        return;
    };
    let host = registry.host();
    let wasm = guest("exit-code");
    registry.push_wasm("bad/app", "v1", &wasm, Layout::WasmContent);
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());

    let missing = runtime
        .prepare(&format!("{host}/bad/app:nope"))
        .await
        .unwrap_err();
    assert!(missing.is_pull_error(), "{missing:?}");
    assert!(
        format!("{missing:?}").contains("ManifestNotFound"),
        "{missing:?}"
    );

    let unknown_digest = registry::sha256(b"no such manifest");
    let err = runtime
        .prepare(&format!("{host}/bad/app@{unknown_digest}"))
        .await
        .unwrap_err();
    assert!(err.is_pull_error(), "{err:?}");

    // The registry serves whatever its storage holds: swap the layer's bytes for
    // others of the same length, and the pull must notice.
    let layer = registry.blob_file(&registry::sha256(&wasm));
    let mut damaged = wasm.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    std::fs::write(&layer, &damaged).unwrap();
    let err = runtime
        .prepare(&format!("{host}/bad/app:v1"))
        .await
        .unwrap_err();
    assert!(err.is_pull_error(), "{err:?}");
    assert!(format!("{err:?}").contains("DigestMismatch"), "{err:?}");
    assert_eq!(runtime.stats().compiles, 0);
}

#[tokio::test]
async fn pull_policies_with_and_without_the_registry() {
    let Some((_dir, mut registry)) = registry() else {
        return;
    };
    let host = registry.host();
    let image = format!("{host}/policy/app:v1");
    let cache = tempfile::tempdir().unwrap();

    let never = runtime(cache.path())
        .prepare_with(&image, &policy(PullPolicy::Never))
        .await
        .unwrap_err();
    assert!(
        matches!(never, PrepareError::NotPresent { .. }),
        "{never:?}"
    );
    assert!(never.is_pull_error());

    // Always re-resolves the tag: a new push under the same tag is seen.
    let first = registry.push_wasm("policy/app", "v1", &guest("hello"), Layout::WasmContent);
    let node = runtime(cache.path());
    let a = node
        .prepare_with(&image, &policy(PullPolicy::Always))
        .await
        .unwrap();
    assert!(a.image_id.ends_with(&first.digest));
    let second = registry.push_wasm("policy/app", "v1", &guest("exit-code"), Layout::Cncf);
    let b = node
        .prepare_with(&image, &policy(PullPolicy::Always))
        .await
        .unwrap();
    assert!(b.image_id.ends_with(&second.digest));
    assert_eq!(b.program.digest(), registry::sha256(&guest("exit-code")));
    // Unchanged digest: no second compile.
    node.prepare_with(&image, &policy(PullPolicy::Always))
        .await
        .unwrap();
    assert_eq!(node.stats().compiles, 2);
    drop(node);

    // A restarted node without the registry: IfNotPresent and Never use what was
    // pulled last, Always cannot pull.
    registry.stop();
    let restarted = runtime(cache.path());
    for policy_ in [PullPolicy::IfNotPresent, PullPolicy::Never] {
        let cached = restarted
            .prepare_with(&image, &policy(policy_))
            .await
            .unwrap();
        assert_eq!(
            cached.image_id,
            format!("{host}/policy/app@{}", second.digest)
        );
        assert_eq!(
            cached.program.digest(),
            registry::sha256(&guest("exit-code"))
        );
    }
    let pinned = format!("{host}/policy/app@{}", first.digest);
    let old = restarted
        .prepare_with(&pinned, &policy(PullPolicy::IfNotPresent))
        .await
        .unwrap();
    assert_eq!(old.program.kind(), ProgramKind::Component);
    assert_eq!(
        restarted.stats().compiles,
        0,
        "loaded from the compile cache"
    );
    let always = restarted
        .prepare_with(&image, &policy(PullPolicy::Always))
        .await
        .unwrap_err();
    assert!(matches!(always, PrepareError::Fetch { .. }), "{always:?}");

    registry.restart();
    let again = restarted
        .prepare_with(&image, &policy(PullPolicy::Always))
        .await
        .unwrap();
    assert_eq!(
        again.image_id,
        format!("{host}/policy/app@{}", second.digest)
    );
}
