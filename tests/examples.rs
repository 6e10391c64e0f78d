//! Every example in `examples/` runs under `skiff up` with the real kubectl
//! (hello is covered in depth by kubectl_hello.rs).

mod common;

use anyhow::Result;
use common::{Cluster, build_guests, repo_root};

#[test]
fn exit_code_example_ends_failed_with_its_code() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let example = repo_root().join("examples/exit-code");
    cluster.kubectl_ok(&["apply", "-f", example.to_str().unwrap()])?;
    let pod = ["pod", "exit-code", "-n", "exit-code"];
    cluster.wait_field(&pod, "{.status.phase}", "Failed")?;
    cluster.wait_field(
        &pod,
        "{.status.containerStatuses[0].state.terminated.exitCode}",
        "3",
    )?;
    let table = cluster.kubectl_ok(&["get", "pods", "-n", "exit-code"])?;
    assert!(table.contains("Error"), "{table}");
    let logs = cluster.kubectl_ok(&["logs", "exit-code", "-n", "exit-code"])?;
    assert!(
        !logs.trim().is_empty(),
        "the guest's output is kept after it exits"
    );
    Ok(())
}
