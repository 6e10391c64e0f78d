//! The patch bodies kubectl 1.32 was seen sending (shared/kubectl-notes.md,
//! sections 5, 6 and 9), applied through the public API exactly as the API
//! server does: content type in, raw bytes in, object out.

use serde_json::{Value, json};
use skiff_patch::{PatchError, PatchType, apply_patch};

fn apply(
    kind: &str,
    original: &Value,
    content_type: &str,
    body: &str,
) -> Result<Value, PatchError> {
    let patch_type = PatchType::from_content_type(content_type).expect("known patch content type");
    apply_patch(kind, original, patch_type, body.as_bytes())
}

const SMP: &str = "application/strategic-merge-patch+json";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";

/// The stored Deployment before the re-apply: two containers, two env vars, a
/// `tier` label, a rolling update strategy and a volume.
fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "0b5e4c4e-1111-2222-3333-444455556666",
            "resourceVersion": "41",
            "generation": 1,
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n"}
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "registry.local/c:1",
                            "args": ["serve", "--port=8080"],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                        },
                        {"name": "d", "image": "registry.local/d:1"}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}]
                }
            }
        },
        "status": {"observedGeneration": 1, "replicas": 2}
    })
}

/// The body of section 5, with a real last-applied annotation.
const APPLY_BODY: &str = r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"new\":true}\n"},"labels":{"tier":null}},
 "spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":null,"type":"Recreate"},
  "template":{"spec":{"$setElementOrder/containers":[{"name":"c"}],
   "containers":[{"$setElementOrder/env":[{"name":"A"}],"args":["a"],"env":[{"$patch":"delete","name":"B"}],"name":"c"},
                 {"$patch":"delete","name":"d"}],"volumes":null}}}}"#;

#[test]
fn client_side_apply_body_gives_exactly_the_applied_deployment() {
    let got = apply("Deployment", &deployment(), SMP, APPLY_BODY).unwrap();

    let mut want = deployment();
    want["metadata"]["labels"] = json!({"app": "web"});
    want["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n"});
    want["spec"]["strategy"] = json!({"type": "Recreate"});
    want["spec"]["template"]["spec"] = json!({
        "containers": [{
            "name": "c",
            "image": "registry.local/c:1",
            "args": ["a"],
            "env": [{"name": "A", "value": "1"}],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]
        }]
    });
    assert_eq!(got, want);
    assert!(
        !serde_json::to_string(&got).unwrap().contains('$'),
        "directive left in {got}"
    );
}

#[test]
fn apply_adds_env_and_containers_by_name() {
    let body = r#"{"spec":{"template":{"spec":{
        "$setElementOrder/containers":[{"name":"c"},{"name":"e"},{"name":"d"}],
        "containers":[
            {"$setElementOrder/env":[{"name":"A"},{"name":"C"},{"name":"B"}],"name":"c",
             "env":[{"name":"A","value":"10"},{"name":"C","value":"3"}]},
            {"name":"e","image":"registry.local/e:1"}]}}}}"#;
    let got = apply("Deployment", &deployment(), SMP, body).unwrap();
    let spec = &got["spec"]["template"]["spec"];
    assert_eq!(
        spec["containers"][0]["env"],
        json!([{"name": "A", "value": "10"}, {"name": "C", "value": "3"}, {"name": "B", "value": "2"}])
    );
    let names: Vec<&str> = spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "e", "d"]);
    assert_eq!(spec["containers"][0]["image"], "registry.local/c:1");
}

#[test]
fn rollout_restart_annotates_the_pod_template() {
    let body = r#"{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-22T18:00:00Z"}}}}}"#;
    let got = apply("Deployment", &deployment(), SMP, body).unwrap();
    let mut want = deployment();
    want["spec"]["template"]["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/restartedAt": "2026-11-22T18:00:00Z"});
    assert_eq!(got, want);
}

#[test]
fn finalizers_are_a_set_with_delete_from_primitive_list() {
    let mut ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "team", "finalizers": ["a.example/x", "b.example/y"]}});
    let body = r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["a.example/x"],"finalizers":["b.example/y","c.example/z"]}}"#;
    ns = apply("Namespace", &ns, SMP, body).unwrap();
    assert_eq!(
        ns["metadata"]["finalizers"],
        json!(["b.example/y", "c.example/z"])
    );
}

#[test]
fn node_status_merges_addresses_and_conditions_by_type() {
    let node = json!({"kind": "Node", "metadata": {"name": "n1"}, "status": {
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}],
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}]}});
    let body = r#"{"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.2"}],
        "conditions":[{"type":"Ready","status":"True","reason":"KubeletReady"}]}}"#;
    let got = apply("Node", &node, SMP, body).unwrap();
    assert_eq!(
        got["status"]["addresses"],
        json!([{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n1"}])
    );
    assert_eq!(
        got["status"]["conditions"],
        json!([{"type": "Ready", "status": "True", "reason": "KubeletReady"},
               {"type": "MemoryPressure", "status": "False"}])
    );
}

#[test]
fn merge_patch_scales_and_removes_a_label() {
    let scaled = apply(
        "Deployment",
        &deployment(),
        MERGE,
        r#"{"spec":{"replicas":3}}"#,
    )
    .unwrap();
    let mut want = deployment();
    want["spec"]["replicas"] = json!(3);
    assert_eq!(scaled, want);

    let unlabelled = apply(
        "Deployment",
        &deployment(),
        "application/merge-patch+json; charset=utf-8",
        r#"{"metadata":{"labels":{"tier":null}}}"#,
    )
    .unwrap();
    assert_eq!(unlabelled["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn merge_patch_replaces_lists_whole() {
    let body = r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"x"}]}}}}"#;
    let got = apply("Deployment", &deployment(), MERGE, body).unwrap();
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"],
        json!([{"name": "c", "image": "x"}])
    );
}

#[test]
fn json_patch_like_rollout_undo_replaces_add_and_remove() {
    let template = json!({"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "registry.local/c:0"}]}});
    let body = json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations",
         "value": {"deployment.kubernetes.io/revision": "3"}},
        {"op": "add", "path": "/metadata/labels/track", "value": "stable"},
        {"op": "remove", "path": "/status"},
        {"op": "test", "path": "/spec/replicas", "value": 2}
    ]);
    let got = apply("Deployment", &deployment(), JSON_PATCH, &body.to_string()).unwrap();
    let mut want = deployment();
    want["spec"]["template"] = template;
    want["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "3"});
    want["metadata"]["labels"]["track"] = json!("stable");
    want.as_object_mut().unwrap().remove("status");
    assert_eq!(got, want);
}

#[test]
fn failed_json_patch_test_reports_the_operation() {
    let body = r#"[{"op":"replace","path":"/spec/replicas","value":5},
                   {"op":"test","path":"/metadata/name","value":"other"}]"#;
    let err = apply("Deployment", &deployment(), JSON_PATCH, body).unwrap_err();
    let PatchError::JsonPatch {
        index, op, path, ..
    } = &err
    else {
        panic!("want JsonPatch, got {err:?}");
    };
    assert_eq!((*index, *op, path.as_str()), (1, "test", "/metadata/name"));
    assert_eq!(
        err.to_string(),
        "JSON patch operation 1 (test /metadata/name) failed: value did not match"
    );
}

#[test]
fn bad_bodies_are_decode_errors() {
    let cases = [
        (SMP, "{not json"),
        (SMP, "[]"),
        (MERGE, ""),
        (MERGE, "\"text\""),
        (JSON_PATCH, r#"{"op":"add"}"#),
        (JSON_PATCH, r#"[{"op":"frobnicate","path":"/a"}]"#),
        (JSON_PATCH, r#"[{"op":"add","path":"/a"}]"#),
    ];
    for (content_type, body) in cases {
        let err = apply("Deployment", &deployment(), content_type, body).unwrap_err();
        assert!(
            matches!(err, PatchError::Decode { .. }),
            "{content_type} {body:?}: {err:?}"
        );
    }
    let err = apply("Deployment", &deployment(), SMP, "[]").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid strategic merge patch body: expected a JSON object, found a list"
    );
}

#[test]
fn bad_directives_are_invalid_directive_errors() {
    let body = r#"{"spec":{"strategy":{"$retainKeys":"type","type":"Recreate"}}}"#;
    let err = apply("Deployment", &deployment(), SMP, body).unwrap_err();
    assert!(
        matches!(err, PatchError::InvalidDirective { ref path, .. } if path == "spec.strategy"),
        "{err:?}"
    );

    let body = r#"{"spec":{"template":{"spec":{"containers":[{"name":"c","$patch":"remove"}]}}}}"#;
    let err = apply("Deployment", &deployment(), SMP, body).unwrap_err();
    assert!(
        matches!(err, PatchError::InvalidDirective { ref path, .. } if path == "spec.template.spec.containers"),
        "{err:?}"
    );
}

#[test]
fn unknown_kinds_replace_lists_under_strategic_merge() {
    let widget = json!({"kind": "Widget", "spec": {"items": [{"name": "a"}]}});
    let got = apply(
        "Widget",
        &widget,
        SMP,
        r#"{"spec":{"items":[{"name":"b"}]}}"#,
    )
    .unwrap();
    assert_eq!(got["spec"]["items"], json!([{"name": "b"}]));
}
