//! Wasm pods whose images come from a real OCI registry on loopback (Debian's
//! `docker-registry`), under `skiff up` and the real kubectl.

mod common;
#[path = "../node/wasm/tests/registry/mod.rs"]
mod registry;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, build_guests, manifest};
use registry::{Layout, Registry};

fn pod_yaml(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  imagePullSecrets:\n  - name: regcred\n  containers:\n  - name: app\n    image: {image}\n    args: [\"from\", \"the\", \"registry\"]\n"
    )
}

#[test]
fn a_pod_runs_an_image_pulled_from_a_registry() -> Result<()> {
    build_guests();
    let dir = tempfile::tempdir()?;
    let Some(registry) = Registry::start(&dir.path().join("registry")) else {
        return Ok(());
    };
    let wasm = std::fs::read("/usr/local/share/skiff/examples/hello.wasm")?;
    let pushed = registry.push_wasm("examples/hello", "v1", &wasm, Layout::WasmContent);
    let host = registry.host();
    let cluster = Cluster::start()?;

    // Credentials the registry does not ask for are simply unused; the Secret
    // exercises the agent's imagePullSecrets path.
    let auth = r#"{"auths":{"127.0.0.1":{"auth":"dTpw"}}}"#;
    let encoded = std::process::Command::new("sh")
        .args(["-c", &format!("printf '%s' '{auth}' | base64 -w0")])
        .output()?;
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: regcred\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
        String::from_utf8(encoded.stdout)?
    );
    let secret = manifest(dir.path(), "secret.yaml", &secret);
    cluster.kubectl_ok(&["apply", "-f", secret.to_str().unwrap()])?;
    let image = format!("{host}/examples/hello:v1");
    let good = manifest(dir.path(), "good.yaml", &pod_yaml("hello", &image));
    cluster.kubectl_ok(&["apply", "-f", good.to_str().unwrap()])?;
    cluster.wait_field(&["pod", "hello"], "{.status.phase}", "Running")?;
    let mut last_logs = String::new();
    let greeted = cluster.wait_for(Duration::from_secs(60), "the greeting", |c| {
        last_logs = c.kubectl_ok(&["logs", "hello"])?;
        Ok(last_logs.contains("Hello from Skiff! args: [\"from\", \"the\", \"registry\"]"))
    });
    if let Err(err) = greeted {
        let pod = cluster.kubectl_ok(&["get", "pod", "hello", "-o", "yaml"])?;
        anyhow::bail!("{err:#}\nlast `kubectl logs`:\n{last_logs}\npod:\n{pod}");
    }
    let image_id = cluster.kubectl_ok(&[
        "get",
        "pod",
        "hello",
        "-o",
        "jsonpath={.status.containerStatuses[0].imageID}",
    ])?;
    assert_eq!(image_id, format!("{host}/examples/hello@{}", pushed.digest));

    let missing = format!("{host}/examples/hello:nope");
    let bad = manifest(dir.path(), "bad.yaml", &pod_yaml("missing", &missing));
    cluster.kubectl_ok(&["apply", "-f", bad.to_str().unwrap()])?;
    cluster.wait_for(Duration::from_secs(60), "a pull error", |c| {
        let reason = c.kubectl_ok(&[
            "get",
            "pod",
            "missing",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
        ])?;
        Ok(reason == "ErrImagePull" || reason == "ImagePullBackOff")
    })?;
    let events = cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=missing",
    ])?;
    assert!(events.contains("Failed to pull image"), "{events}");
    Ok(())
}
