//! Server-side apply with the real kubectl: create and update through
//! `kubectl apply --server-side`, `managedFields`, conflicts with another
//! manager and `--force-conflicts`, fields dropped from the configuration,
//! and `--dry-run=server`.

mod common;

use anyhow::Result;
use common::{Cluster, manifest};

fn deployment(replicas: u32, labels: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{{labels}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: "file:///web.wasm"
        ports: [{{containerPort: 8080}}]
"#
    )
}

#[test]
fn server_side_apply_owns_fields_and_reports_conflicts() -> Result<()> {
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let file = manifest(
        dir.path(),
        "web.yaml",
        &deployment(2, "app: web, tier: front"),
    );
    let file = file.to_str().unwrap();

    let out = cluster.kubectl_ok(&["apply", "--server-side", "-f", file])?;
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let yaml = cluster.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ])?;
    assert!(yaml.contains("manager: kubectl"), "{yaml}");
    assert!(yaml.contains("operation: Apply"), "{yaml}");
    assert!(yaml.contains("fieldsType: FieldsV1"), "{yaml}");
    assert!(yaml.contains("f:replicas: {}"), "{yaml}");
    assert!(yaml.contains(r#"k:{"name":"web"}:"#), "{yaml}");
    let plain = cluster.kubectl_ok(&["get", "deploy", "web", "-o", "yaml"])?;
    assert!(!plain.contains("managedFields"), "{plain}");

    // Applying the same configuration again changes nothing.
    let out = cluster.kubectl_ok(&["apply", "--server-side", "-f", file])?;
    assert!(out.contains("serverside-applied"), "{out}");
    let generation = cluster.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.metadata.generation}",
    ])?;
    assert_eq!(generation, "1");

    // Another manager takes spec.replicas; applying a different value conflicts.
    cluster.kubectl_ok(&["scale", "deploy", "web", "--replicas=5"])?;
    std::fs::write(file, deployment(3, "app: web, tier: front"))?;
    let err = cluster.kubectl_err(&["apply", "--server-side", "-f", file])?;
    assert!(err.contains("conflict"), "{err}");
    assert!(err.contains(".spec.replicas"), "{err}");
    assert_eq!(
        cluster.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])?,
        "5"
    );

    // Nothing is written on a server-side dry run.
    cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        file,
    ])?;
    assert_eq!(
        cluster.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])?,
        "5"
    );

    // --force-conflicts takes the field over.
    cluster.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", file])?;
    assert_eq!(
        cluster.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])?,
        "3"
    );

    // A label dropped from the configuration is removed from the object.
    std::fs::write(file, deployment(3, "app: web"))?;
    cluster.kubectl_ok(&["apply", "--server-side", "-f", file])?;
    let labels =
        cluster.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.labels}"])?;
    assert_eq!(labels, r#"{"app":"web"}"#);

    // A label someone else set stays when the applier never owned it.
    cluster.kubectl_ok(&["label", "deploy", "web", "team=blue"])?;
    cluster.kubectl_ok(&["apply", "--server-side", "-f", file])?;
    let labels =
        cluster.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.labels}"])?;
    assert_eq!(labels, r#"{"app":"web","team":"blue"}"#);
    Ok(())
}

#[test]
fn server_side_apply_creates_and_validates() -> Result<()> {
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let file = manifest(
        dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: fast}\n",
    );
    let out = cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=ci",
        "-f",
        file.to_str().unwrap(),
    ])?;
    assert!(
        out.contains("configmap/settings serverside-applied"),
        "{out}"
    );
    let yaml = cluster.kubectl_ok(&[
        "get",
        "cm",
        "settings",
        "-o",
        "yaml",
        "--show-managed-fields",
    ])?;
    assert!(yaml.contains("manager: ci"), "{yaml}");
    assert!(yaml.contains("f:mode: {}"), "{yaml}");

    // An unknown field is refused (kubectl asks for Strict validation).
    let bad = manifest(
        dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: slow}\nbogus: 1\n",
    );
    let err = cluster.kubectl_err(&["apply", "--server-side", "-f", bad.to_str().unwrap()])?;
    assert!(err.contains("bogus"), "{err}");
    assert_eq!(
        cluster.kubectl_ok(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"])?,
        "fast"
    );

    // Client-side updates are recorded as Update entries of their manager.
    cluster.kubectl_ok(&["label", "cm", "settings", "team=blue"])?;
    let yaml = cluster.kubectl_ok(&[
        "get",
        "cm",
        "settings",
        "-o",
        "yaml",
        "--show-managed-fields",
    ])?;
    assert!(yaml.contains("operation: Update"), "{yaml}");
    assert!(yaml.contains("f:team: {}"), "{yaml}");
    Ok(())
}
