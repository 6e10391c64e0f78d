use serde_json::{Value, json};

use super::*;

fn writer(manager: &str) -> Writer<'_> {
    Writer {
        manager,
        subresource: "",
        api_version: "apps/v1",
        now: "2026-01-01T00:00:00Z",
        scope: Scope::Main,
    }
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "app", "image": image, "ports": [{"containerPort": 80}]}
        ]}}}
    })
}

fn schema() -> Schema {
    Schema::for_kind("Deployment")
}

#[test]
fn apply_records_fields_v1_in_kubernetes_form() {
    let applied = apply(
        &schema(),
        None,
        &deployment(2, "nginx"),
        &writer("kubectl"),
        false,
    )
    .unwrap();
    let entry = &applied["metadata"]["managedFields"][0];
    assert_eq!(entry["manager"], "kubectl");
    assert_eq!(entry["operation"], "Apply");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    let container =
        &entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"app"}"#];
    assert_eq!(container["."], json!({}));
    assert_eq!(container["f:image"], json!({}));
    assert_eq!(
        container["f:ports"][r#"k:{"containerPort":80,"protocol":"TCP"}"#]["f:containerPort"],
        json!({})
    );
    assert_eq!(
        entry["fieldsV1"]["f:metadata"]["f:labels"]["f:app"],
        json!({})
    );
    assert!(entry["fieldsV1"]["f:metadata"].get("f:name").is_none());
    // Reading it back gives the same entry.
    let entries = read_entries(&applied);
    let mut again = applied.clone();
    write_entries(&mut again, &entries);
    assert_eq!(again, applied);
}

#[test]
fn reapplying_the_same_config_changes_nothing() {
    let first = apply(
        &schema(),
        None,
        &deployment(2, "nginx"),
        &writer("kubectl"),
        false,
    )
    .unwrap();
    let mut later = writer("kubectl");
    later.now = "2030-01-01T00:00:00Z";
    let second = apply(
        &schema(),
        Some(&first),
        &deployment(2, "nginx"),
        &later,
        false,
    )
    .unwrap();
    assert_eq!(first, second);
}

#[test]
fn another_managers_field_conflicts_unless_forced() {
    let live = apply(
        &schema(),
        None,
        &deployment(2, "nginx"),
        &writer("kubectl"),
        false,
    )
    .unwrap();
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    let entries = record_update(&schema(), Some(&live), &scaled, &writer("kubectl-scale"));
    write_entries(&mut scaled, &entries);
    let scale_entry = entries
        .iter()
        .find(|e| e.manager == "kubectl-scale")
        .unwrap();
    assert_eq!(scale_entry.field_paths(), vec![".spec.replicas"]);
    let kubectl = entries.iter().find(|e| e.manager == "kubectl").unwrap();
    assert!(
        !kubectl
            .field_paths()
            .contains(&".spec.replicas".to_string())
    );

    let conflicts = apply(
        &schema(),
        Some(&scaled),
        &deployment(3, "nginx"),
        &writer("kubectl"),
        false,
    )
    .unwrap_err();
    assert_eq!(
        conflicts,
        vec![Conflict {
            manager: "kubectl-scale".into(),
            api_version: "apps/v1".into(),
            field: ".spec.replicas".into(),
            path: vec!["f:spec".into(), "f:replicas".into()],
        }]
    );
    // The same value is shared ownership, not a conflict.
    let shared = apply(
        &schema(),
        Some(&scaled),
        &deployment(5, "nginx"),
        &writer("kubectl"),
        false,
    )
    .unwrap();
    assert_eq!(read_entries(&shared).len(), 2);

    let forced = apply(
        &schema(),
        Some(&scaled),
        &deployment(3, "nginx"),
        &writer("kubectl"),
        true,
    )
    .unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    let managers: Vec<String> = read_entries(&forced)
        .into_iter()
        .map(|e| e.manager)
        .collect();
    assert_eq!(managers, vec!["kubectl"]);
}

#[test]
fn fields_dropped_from_the_config_are_removed_unless_someone_else_owns_them() {
    let mut config = deployment(2, "nginx");
    config["metadata"]["labels"]["tier"] = json!("front");
    config["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "proxy"}));
    let live = apply(&schema(), None, &config, &writer("kubectl"), false).unwrap();

    // Someone else takes the tier label over.
    let mut labelled = live.clone();
    labelled["metadata"]["labels"]["tier"] = json!("back");
    let entries = record_update(&schema(), Some(&live), &labelled, &writer("kubectl-label"));
    write_entries(&mut labelled, &entries);

    let next = apply(
        &schema(),
        Some(&labelled),
        &deployment(2, "nginx"),
        &writer("kubectl"),
        false,
    )
    .unwrap();
    assert_eq!(
        next["metadata"]["labels"],
        json!({"app": "web", "tier": "back"})
    );
    let containers = next["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0]["name"], "app");
}

#[test]
fn lists_merge_by_key_and_keep_other_managers_elements() {
    let live = apply(
        &schema(),
        None,
        &deployment(1, "nginx"),
        &writer("a"),
        false,
    )
    .unwrap();
    let other = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "log", "image": "busybox"}]}}}
    });
    let merged = apply(&schema(), Some(&live), &other, &writer("b"), false).unwrap();
    let names: Vec<&str> = merged["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["app", "log"]);
    assert_eq!(merged["spec"]["replicas"], 1);
}

#[test]
fn updates_take_changed_fields_and_drop_removed_ones() {
    let created = deployment(1, "nginx");
    let entries = record_update(&schema(), None, &created, &writer("kubectl-create"));
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].operation, Operation::Update);
    let mut live = created.clone();
    write_entries(&mut live, &entries);

    let mut edited = live.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    edited["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("app");
    let entries = record_update(&schema(), Some(&live), &edited, &writer("kubectl-edit"));
    let edit = entries
        .iter()
        .find(|e| e.manager == "kubectl-edit")
        .unwrap();
    assert_eq!(
        edit.field_paths(),
        vec![r#".spec.template.spec.containers[name="app"].image"#]
    );
    let create = entries
        .iter()
        .find(|e| e.manager == "kubectl-create")
        .unwrap();
    let paths = create.field_paths();
    assert!(!paths.iter().any(|p| p.contains("labels.app")), "{paths:?}");
    assert!(!paths.iter().any(|p| p.ends_with(".image")), "{paths:?}");
    assert!(paths.contains(&".spec.replicas".to_string()));
}

#[test]
fn status_writes_only_touch_status_fields() {
    let mut live = deployment(1, "nginx");
    let entries = record_update(&schema(), None, &live, &writer("kubectl"));
    write_entries(&mut live, &entries);
    let mut next = live.clone();
    next["status"] = json!({"replicas": 1});
    let mut status_writer = writer("controller");
    status_writer.scope = Scope::Status;
    status_writer.subresource = "status";
    let entries = record_update(&schema(), Some(&live), &next, &status_writer);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].subresource, "status");
    assert_eq!(entries[1].field_paths(), vec![".status.replicas"]);
    assert!(
        entries[0]
            .field_paths()
            .contains(&".spec.replicas".to_string())
    );
}

#[test]
fn value_at_follows_fields_keys_and_values() {
    let object = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "name": "web"}],
        "finalizers": ["a", "b"], "items": [1, 2]}});
    let path = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    assert_eq!(
        value_at(
            &object,
            &path(&[
                "f:spec",
                "f:ports",
                r#"k:{"port":80,"protocol":"TCP"}"#,
                "f:name"
            ])
        ),
        Some(&json!("web"))
    );
    assert_eq!(
        value_at(&object, &path(&["f:spec", "f:finalizers", r#"v:"b""#])),
        Some(&json!("b"))
    );
    assert_eq!(
        value_at(&object, &path(&["f:spec", "f:items", "i:1"])),
        Some(&json!(2))
    );
    assert_eq!(value_at(&object, &path(&["f:spec", "f:missing"])), None);
    assert_eq!(value_at(&object, &path(&["f:spec", "k:{bad"])), None);
}
