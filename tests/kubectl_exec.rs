//! `kubectl exec` and `kubectl top` against Wasm pods: the real kubectl, the
//! real `skiff up`, and the `toolbox` example guest (examples/toolbox), whose
//! commands (`cat`, `env`, `exit`, ...) run as new instances of the pod's own
//! component with the pod's volumes and env.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, build_guests, repo_root};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn exec_runs_commands_of_the_pods_component_and_top_shows_usage() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let example = repo_root().join("examples/toolbox/manifest.yaml");
    cluster.kubectl_ok(&["apply", "-f", example.to_str().unwrap()])?;
    cluster.wait_field(
        &["pod", "toolbox", "-n", "toolbox"],
        "{.status.phase}",
        "Running",
    )?;
    let exec = |args: &[&str]| {
        let mut full = vec!["exec", "-n", "toolbox", "toolbox", "--"];
        full.extend_from_slice(args);
        cluster.kubectl(&full)
    };

    // A file of the pod's configMap volume, and the container's env.
    let out = exec(&["cat", "/etc/toolbox/greeting"])?;
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ahoy from a configMap\n"
    );
    let out = exec(&["env"])?;
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(env.lines().any(|l| l == "COLOUR=teal"), "{env}");
    let out = exec(&["ls", "/etc/toolbox"])?;
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == "greeting")
    );

    // The command's exit code is kubectl's; its stderr reaches kubectl's stderr.
    let out = exec(&["exit", "3"])?;
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("command terminated with exit code 3"));
    let out = exec(&["cat", "/etc/toolbox/nope"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("cat: /etc/toolbox/nope"),
        "{}",
        stderr_of(&out)
    );

    // -i: stdin reaches the command, and its end ends `cat`.
    let out = cluster.kubectl_with_input(
        &["exec", "-i", "-n", "toolbox", "toolbox", "--", "cat"],
        b"piped through\nthe node\n",
    )?;
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "piped through\nthe node\n"
    );

    // -c picks the container; an unknown one is named in the error.
    let out = cluster.kubectl(&[
        "exec", "-n", "toolbox", "toolbox", "-c", "toolbox", "--", "echo", "hi",
    ])?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi\n",
        "{}",
        stderr_of(&out)
    );
    let out = cluster.kubectl(&[
        "exec", "-n", "toolbox", "toolbox", "-c", "nope", "--", "env",
    ])?;
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("nope"), "{}", stderr_of(&out));

    // kubectl top: the pod (and its container) and the node have figures.
    let out = exec(&["spin", "300"])?;
    assert!(out.status.success(), "{}", stderr_of(&out));
    let mut table = String::new();
    cluster.wait_for(Duration::from_secs(30), "kubectl top pod", |c| {
        let out = c.kubectl(&["top", "pod", "-n", "toolbox", "--containers"])?;
        table = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(out.status.success() && table.contains("toolbox"))
    })?;
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("toolbox"))
        .unwrap()
        .split_whitespace()
        .collect();
    // POD NAME CPU(cores) MEMORY(bytes)
    assert_eq!(row.len(), 4, "{table}");
    assert!(row[2].ends_with('m'), "{table}");
    let memory: u64 = row[3].trim_end_matches("Mi").parse()?;
    assert!(memory >= 1, "linear memory of a running guest: {table}");
    let nodes = cluster.kubectl_ok(&["top", "node"])?;
    let node_row: Vec<&str> = nodes
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%
    assert_eq!(node_row.len(), 5, "{nodes}");
    assert!(
        node_row[3].trim_end_matches("Mi").parse::<u64>()? > 0,
        "{nodes}"
    );
    Ok(())
}
