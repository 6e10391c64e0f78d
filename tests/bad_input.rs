//! Bad input gets a clear error naming the field, and loses nothing: a
//! rejected write leaves the store as it was; a bad guest fails its pod,
//! never the node.

mod common;

use anyhow::Result;
use common::{Cluster, build_guests, manifest};

fn pod(name: &str, container: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  containers:\n{container}"
    )
}

#[test]
fn rejected_manifests_name_the_field_and_store_nothing() -> Result<()> {
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;

    let no_image = manifest(
        dir.path(),
        "no-image.yaml",
        &pod("no-image", "  - name: c\n"),
    );
    let err = cluster.kubectl_err(&["apply", "-f", no_image.to_str().unwrap()])?;
    assert!(
        err.contains(r#"The Pod "no-image" is invalid: spec.containers[0].image: Required value"#),
        "{err}"
    );

    let unknown = manifest(
        dir.path(),
        "unknown.yaml",
        &pod(
            "unknown",
            "  - name: c\n    image: file:///x.wasm\n    bogus: 1\n",
        ),
    );
    let err = cluster.kubectl_err(&["apply", "-f", unknown.to_str().unwrap()])?;
    assert!(
        err.contains(r#"unknown field "spec.containers[0].bogus""#),
        "{err}"
    );

    let wrong_type = manifest(
        dir.path(),
        "wrong-type.yaml",
        &pod(
            "wrong-type",
            "  - name: c\n    image: file:///x.wasm\n    ports:\n    - containerPort: eighty\n",
        ),
    );
    let err = cluster.kubectl_err(&["apply", "-f", wrong_type.to_str().unwrap()])?;
    assert!(
        err.contains("spec.containers[0].ports[0].containerPort"),
        "{err}"
    );

    let bad_policy = manifest(
        dir.path(),
        "bad-policy.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad-policy\nspec:\n  restartPolicy: Sometimes\n  containers:\n  - name: c\n    image: file:///x.wasm\n",
    );
    let err = cluster.kubectl_err(&["apply", "-f", bad_policy.to_str().unwrap()])?;
    assert!(
        err.contains("spec.restartPolicy: Unsupported value: \"Sometimes\""),
        "{err}"
    );

    // None of them reached the store.
    let pods = cluster.kubectl_ok(&["get", "pods", "-o", "name"])?;
    assert_eq!(pods.trim(), "", "rejected pods must not be stored");

    let missing_ns = manifest(
        dir.path(),
        "missing-ns.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: nowhere\nspec:\n  containers:\n  - name: c\n    image: file:///x.wasm\n",
    );
    let err = cluster.kubectl_err(&["apply", "-f", missing_ns.to_str().unwrap()])?;
    assert!(err.contains(r#"namespaces "nowhere" not found"#), "{err}");
    Ok(())
}

#[test]
fn bad_guests_fail_their_pod_and_the_node_keeps_running() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let not_wasm = dir.path().join("not-wasm.wasm");
    std::fs::write(&not_wasm, b"this is not a wasm binary")?;

    let good = manifest(
        dir.path(),
        "good.yaml",
        &pod(
            "good",
            "  - name: c\n    image: file:///usr/local/share/skiff/examples/hello.wasm\n",
        ),
    );
    let missing = manifest(
        dir.path(),
        "missing.yaml",
        &pod(
            "missing",
            "  - name: c\n    image: file:///no/such/file.wasm\n",
        ),
    );
    let invalid = manifest(
        dir.path(),
        "invalid.yaml",
        &pod(
            "invalid",
            &format!("  - name: c\n    image: file://{}\n", not_wasm.display()),
        ),
    );
    for m in [&good, &missing, &invalid] {
        cluster.kubectl_ok(&["apply", "-f", m.to_str().unwrap()])?;
    }

    let reason = "{.status.containerStatuses[0].state.waiting.reason}";
    cluster.wait_for(std::time::Duration::from_secs(60), "ErrImagePull", |c| {
        let got = c.kubectl_ok(&["get", "pod", "missing", "-o", &format!("jsonpath={reason}")])?;
        Ok(got == "ErrImagePull" || got == "ImagePullBackOff")
    })?;
    cluster.wait_field(&["pod", "invalid"], reason, "CreateContainerError")?;
    cluster.wait_field(&["pod", "good"], "{.status.phase}", "Running")?;

    let table = cluster.kubectl_ok(&["get", "pods"])?;
    assert!(table.contains("CreateContainerError"), "{table}");

    let events = cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=missing,reason=Failed",
        "-o",
        "jsonpath={.items[*].message}",
    ])?;
    assert!(
        events.contains("/no/such/file.wasm"),
        "an event names the artifact: {events}"
    );
    Ok(())
}
