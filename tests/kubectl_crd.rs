//! CustomResourceDefinitions under the real kubectl: a definition becomes
//! Established, its custom resources are served with every verb, validated
//! and pruned by their schema, printed with their printer columns, scaled
//! through the scale subresource, explained from OpenAPI, and deleted with
//! their definition.

mod common;

use anyhow::Result;
use common::{Cluster, manifest};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the widget should look like.
            required: [color]
            properties:
              color:
                type: string
                description: The widget's paint.
                enum: [red, blue, green]
              size: {type: integer, minimum: 1, maximum: 10, default: 3}
              replicas: {type: integer, minimum: 0}
              label: {type: string, pattern: "^[a-z]+$"}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status:
            type: object
            properties:
              replicas: {type: integer}
              phase: {type: string}
"#;

const WIDGET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1, labels: {team: blue}}
spec:
  color: red
  label: shiny
  extra: {anything: [1, 2], goes: {deep: true}}
"#;

#[test]
fn custom_resources_work_end_to_end() -> Result<()> {
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let crd = manifest(dir.path(), "crd.yaml", CRD);
    let crd = crd.to_str().unwrap();
    cluster.kubectl_ok(&["apply", "-f", crd])?;
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ])?;
    let accepted = cluster.kubectl_ok(&[
        "get",
        "crd",
        "widgets.example.com",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"NamesAccepted\")].status} {.status.acceptedNames.kind} {.status.storedVersions}",
    ])?;
    assert_eq!(accepted, "True Widget [\"v1\"]");

    // Discovery: kubectl finds the resource, its short name and subresources.
    let resources = cluster.kubectl_ok(&["api-resources", "--api-group=example.com"])?;
    assert!(
        resources.contains("widgets") && resources.contains("wd") && resources.contains("Widget"),
        "{resources}"
    );

    // Create: the default fills in size, unknown-field-preserving parts stay.
    let widget = manifest(dir.path(), "widget.yaml", WIDGET);
    let widget = widget.to_str().unwrap();
    let out = cluster.kubectl_ok(&["apply", "-f", widget])?;
    assert!(out.contains("widget.example.com/w1 created"), "{out}");
    let table = cluster.kubectl_ok(&["get", "widgets"])?;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "COLOR", "SIZE", "AGE"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["w1", "red", "3"], "{table}");
    assert_eq!(
        cluster.kubectl_ok(&["get", "wd", "w1", "-o", "jsonpath={.spec.extra.goes.deep}"])?,
        "true"
    );
    assert_eq!(
        cluster.kubectl_ok(&["get", "widgets", "-l", "team=blue", "-o", "name"])?,
        "widget.example.com/w1\n"
    );

    // Validation by the schema: every broken rule is named by its field.
    let bad = manifest(
        dir.path(),
        "bad.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {color: pink, size: 11, label: Nope}\n",
    );
    let err = cluster.kubectl_err(&["apply", "-f", bad.to_str().unwrap()])?;
    for needle in [
        "spec.color: Unsupported value: \"pink\"",
        "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10",
        "spec.label",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    let missing = manifest(
        dir.path(),
        "missing.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 2}\n",
    );
    let err = cluster.kubectl_err(&["apply", "-f", missing.to_str().unwrap()])?;
    assert!(err.contains("spec.color: Required value"), "{err}");
    let err = cluster.kubectl_err(&["get", "widget", "w2"])?;
    assert!(err.contains("NotFound"), "{err}");

    // Unknown fields: kubectl's default (Strict) refuses them; without
    // validation they are pruned.
    let unknown = manifest(
        dir.path(),
        "unknown.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w3}\nspec: {color: green, bogus: 1}\n",
    );
    let unknown = unknown.to_str().unwrap();
    let err = cluster.kubectl_err(&["apply", "-f", unknown])?;
    assert!(err.contains("unknown field \"spec.bogus\""), "{err}");
    cluster.kubectl_ok(&["apply", "--validate=false", "-f", unknown])?;
    assert_eq!(
        cluster.kubectl_ok(&["get", "widget", "w3", "-o", "jsonpath={.spec}"])?,
        r#"{"color":"green","size":3}"#
    );

    // Patches: merge and JSON work; strategic merge is refused (415).
    cluster.kubectl_ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"color":"blue"}}"#,
    ])?;
    cluster.kubectl_ok(&[
        "patch",
        "widget",
        "w1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/size","value":5}]"#,
    ])?;
    let err = cluster.kubectl_err(&["patch", "widget", "w1", "-p", r#"{"spec":{"size":6}}"#])?;
    assert!(
        err.contains("UnsupportedMediaType") || err.contains("strategic merge patch"),
        "{err}"
    );
    let err = cluster.kubectl_err(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":0}}"#,
    ])?;
    assert!(err.contains("spec.size"), "{err}");
    assert_eq!(
        cluster.kubectl_ok(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.spec.color}/{.spec.size}"
        ])?,
        "blue/5"
    );

    // Subresources: scale writes spec.replicas; status is written apart.
    cluster.kubectl_ok(&["scale", "widget", "w1", "--replicas=4"])?;
    cluster.kubectl_ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":4,"phase":"Ready"},"spec":{"color":"green"}}"#,
    ])?;
    assert_eq!(
        cluster.kubectl_ok(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.spec.replicas} {.status.replicas} {.status.phase} {.spec.color}",
        ])?,
        "4 4 Ready blue"
    );
    // A main-resource write keeps the status.
    cluster.kubectl_ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Broken"}}"#,
    ])?;
    assert_eq!(
        cluster.kubectl_ok(&["get", "widget", "w1", "-o", "jsonpath={.status.phase}"])?,
        "Ready"
    );

    // Server-side apply records its manager.
    let applied = manifest(
        dir.path(),
        "ssa.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w4}\nspec: {color: red, size: 7}\n",
    );
    cluster.kubectl_ok(&["apply", "--server-side", "-f", applied.to_str().unwrap()])?;
    let managers = cluster.kubectl_ok(&[
        "get",
        "widget",
        "w4",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ])?;
    assert_eq!(managers, "kubectl");

    // explain reads the schema's descriptions from OpenAPI v3; describe works.
    let explained = cluster.kubectl_ok(&["explain", "widgets.spec.color"])?;
    assert!(explained.contains("The widget's paint."), "{explained}");
    let described = cluster.kubectl_ok(&["describe", "widget", "w1"])?;
    assert!(
        described.contains("Color:") && described.contains("blue"),
        "{described}"
    );

    // Deleting the definition deletes its resources; a new one starts empty.
    cluster.kubectl_ok(&["delete", "crd", "widgets.example.com", "--timeout=60s"])?;
    // kubectl knew the resource from its discovery cache: the server says
    // it is gone.
    let err = cluster.kubectl_err(&["get", "widgets"])?;
    assert!(
        err.contains("the server doesn't have a resource type")
            || err.contains("the server could not find the requested resource"),
        "{err}"
    );
    cluster.kubectl_ok(&["apply", "-f", crd])?;
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ])?;
    assert_eq!(
        cluster.kubectl_ok(&["get", "widgets", "-A", "-o", "name"])?,
        ""
    );
    Ok(())
}
