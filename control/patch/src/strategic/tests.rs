use serde_json::{Value, json};

use super::strategic_merge;
use crate::{ListStrategy, PatchError, Schema};

fn pod(original: Value, patch: Value) -> Result<Value, PatchError> {
    strategic_merge(&original, &patch, &Schema::for_kind("Pod"))
}

fn ok(original: Value, patch: Value) -> Value {
    pod(original, patch).expect("patch applies")
}

#[test]
fn maps_merge_recursively_and_null_deletes() {
    let got = ok(
        json!({"metadata": {"labels": {"a": "1", "b": "2"}, "name": "p"}}),
        json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"x": null}}),
    );
    assert_eq!(
        got,
        json!({"metadata": {"labels": {"b": "2", "c": "3"}, "name": "p"}, "spec": {}})
    );
}

#[test]
fn keyed_list_updates_in_place_and_appends_new_keys() {
    let got = ok(
        json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "args": ["x"]},
            {"name": "b", "image": "b:1"}
        ]}}),
        json!({"spec": {"containers": [
            {"name": "c", "image": "c:1"},
            {"name": "a", "image": "a:2", "args": null}
        ]}}),
    );
    assert_eq!(
        got["spec"]["containers"],
        json!([
            {"name": "a", "image": "a:2"},
            {"name": "b", "image": "b:1"},
            {"name": "c", "image": "c:1"}
        ])
    );
}

#[test]
fn nested_keyed_lists_use_their_own_keys() {
    let got = ok(
        json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}],
            "volumeMounts": [{"mountPath": "/data", "name": "d"}]}]}}),
        json!({"spec": {"containers": [{"name": "a",
            "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}],
            "volumeMounts": [{"mountPath": "/data", "readOnly": true}]}]}}),
    );
    let c = &got["spec"]["containers"][0];
    assert_eq!(
        c["ports"],
        json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}])
    );
    assert_eq!(
        c["volumeMounts"],
        json!([{"mountPath": "/data", "name": "d", "readOnly": true}])
    );
}

#[test]
fn unkeyed_lists_are_replaced() {
    let got = ok(
        json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}],
                        "containers": [{"name": "a", "args": ["1", "2"]}]}}),
        json!({"spec": {"tolerations": [{"key": "c", "value": null}],
                        "containers": [{"name": "a", "args": ["3"]}]}}),
    );
    assert_eq!(got["spec"]["tolerations"], json!([{"key": "c"}]));
    assert_eq!(got["spec"]["containers"][0]["args"], json!(["3"]));
}

#[test]
fn list_replace_directive_keeps_only_patch_elements() {
    let got = ok(
        json!({"spec": {"volumes": [{"name": "a"}, {"name": "b"}]}}),
        json!({"spec": {"volumes": [{"$patch": "replace"}, {"name": "c", "emptyDir": {}}]}}),
    );
    assert_eq!(
        got["spec"]["volumes"],
        json!([{"name": "c", "emptyDir": {}}])
    );
}

#[test]
fn map_directives_replace_and_delete() {
    let original = json!({"spec": {"securityContext": {"runAsUser": 1, "fsGroup": 2},
                                   "dnsConfig": {"nameservers": ["1.1.1.1"]}}});
    let got = ok(
        original,
        json!({"spec": {"securityContext": {"$patch": "replace", "runAsGroup": 3, "gone": null},
                        "dnsConfig": {"$patch": "delete"}}}),
    );
    assert_eq!(got, json!({"spec": {"securityContext": {"runAsGroup": 3}}}));
}

#[test]
fn explicit_merge_directive_is_the_default() {
    let got = ok(
        json!({"spec": {"nodeSelector": {"a": "1"}}}),
        json!({"spec": {"nodeSelector": {"$patch": "merge", "b": "2"}}}),
    );
    assert_eq!(got["spec"]["nodeSelector"], json!({"a": "1", "b": "2"}));
}

#[test]
fn directives_in_new_values_are_applied_not_copied() {
    let got = ok(
        json!({"spec": {}}),
        json!({"spec": {
            "containers": [{"name": "a", "$setElementOrder/env": [{"name": "X"}],
                            "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}]}],
            "affinity": {"$patch": "delete"},
            "nodeSelector": {"$retainKeys": ["a"], "a": "1", "b": "2"}
        }}),
    );
    assert_eq!(
        got,
        json!({"spec": {
            "containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}],
            "nodeSelector": {"a": "1"}
        }})
    );
}

#[test]
fn set_element_order_interleaves_unnamed_elements_by_stored_position() {
    let names = |v: &Value| -> Vec<String> {
        v["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let original = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});

    let got = ok(
        original.clone(),
        json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]}}),
    );
    assert_eq!(names(&got), ["b", "c", "a"]);

    let got = ok(
        original.clone(),
        json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}, {"name": "d"}],
                        "containers": [{"name": "d"}]}}),
    );
    assert_eq!(names(&got), ["c", "b", "a", "d"]);

    // A new element the order list does not name goes after the named ones.
    let got = ok(
        original,
        json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                        "containers": [{"name": "e"}]}}),
    );
    assert_eq!(names(&got), ["b", "a", "c", "e"]);
}

#[test]
fn finalizers_merge_as_a_set_and_delete_from_primitive_list() {
    let got = ok(
        json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        json!({"metadata": {"finalizers": ["d", "a"], "$deleteFromPrimitiveList/finalizers": ["b"]}}),
    );
    assert_eq!(got["metadata"]["finalizers"], json!(["a", "c", "d"]));

    let got = ok(
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"$setElementOrder/finalizers": ["b", "a"]}}),
    );
    assert_eq!(got["metadata"]["finalizers"], json!(["b", "a"]));

    let got = ok(
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"finalizers": [{"$patch": "replace"}, "z"]}}),
    );
    assert_eq!(got["metadata"]["finalizers"], json!(["z"]));
}

#[test]
fn retain_keys_drops_unlisted_keys_after_merging() {
    let got = ok(
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
    );
    assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn owner_references_merge_by_uid() {
    let got = ok(
        json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}}),
        json!({"metadata": {"ownerReferences": [{"uid": "2", "$patch": "delete"}, {"uid": "3", "name": "c"}]}}),
    );
    assert_eq!(
        got["metadata"]["ownerReferences"],
        json!([{"uid": "1", "name": "a"}, {"uid": "3", "name": "c"}])
    );
}

#[test]
fn schema_set_list_drives_merging() {
    let mut schema = Schema::for_kind("Widget");
    let original = json!({"spec": {"items": [{"id": 1, "v": "a"}]}});
    let patch = json!({"spec": {"items": [{"id": 2, "v": "b"}]}});
    let replaced = strategic_merge(&original, &patch, &schema).unwrap();
    assert_eq!(replaced["spec"]["items"], json!([{"id": 2, "v": "b"}]));

    schema.set_list("spec.items", ListStrategy::MergeByKey("id".into()));
    let merged = strategic_merge(&original, &patch, &schema).unwrap();
    assert_eq!(
        merged["spec"]["items"],
        json!([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}])
    );
}

#[test]
fn bad_directives_are_rejected_with_their_path() {
    let err = pod(
        json!({}),
        json!({"spec": {"affinity": {"$patch": "explode"}}}),
    )
    .unwrap_err();
    assert!(
        matches!(err, PatchError::InvalidDirective { ref path, .. } if path == "spec.affinity")
    );
    assert!(
        err.to_string()
            .contains("unknown \"$patch\" value \"explode\""),
        "{err}"
    );

    let err = pod(json!({}), json!({"spec": {"$retainKeys": "type"}})).unwrap_err();
    assert!(
        matches!(err, PatchError::InvalidDirective { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid strategic merge patch directive at spec: \"$retainKeys\" must be a list, found a string"
    );

    let err = pod(json!({}), json!({"spec": {"$retainKeys": [1]}})).unwrap_err();
    assert!(
        matches!(err, PatchError::InvalidDirective { .. }),
        "{err:?}"
    );

    let err = pod(
        json!({}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
    )
    .unwrap_err();
    assert!(
        matches!(err, PatchError::InvalidDirective { .. }),
        "{err:?}"
    );

    let err = pod(
        json!({}),
        json!({"spec": {"containers": [{"$patch": "merge", "name": "a"}]}}),
    )
    .unwrap_err();
    assert!(
        matches!(err, PatchError::InvalidDirective { .. }),
        "{err:?}"
    );

    let err = pod(json!({}), json!({"$patch": "delete"})).unwrap_err();
    assert!(
        matches!(err, PatchError::InvalidDirective { .. }),
        "{err:?}"
    );
}

#[test]
fn keyed_list_elements_need_their_key_and_must_be_objects() {
    let err = pod(json!({}), json!({"spec": {"containers": [{"image": "x"}]}})).unwrap_err();
    assert!(
        matches!(err, PatchError::MissingMergeKey { ref path, ref key } if path == "spec.containers" && key == "name"),
        "{err:?}"
    );

    let err = pod(
        json!({}),
        json!({"spec": {"volumes": [{"$patch": "delete"}]}}),
    )
    .unwrap_err();
    assert!(matches!(err, PatchError::MissingMergeKey { .. }), "{err:?}");

    let err = pod(json!({}), json!({"spec": {"containers": ["a"]}})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "strategic merge patch list spec.containers must hold objects (merged by \"name\"), found a string"
    );
}

#[test]
fn patch_must_be_an_object() {
    let err = pod(json!({}), json!([1])).unwrap_err();
    assert!(matches!(err, PatchError::Decode { .. }), "{err:?}");
}

#[test]
fn type_changes_take_the_patch_value() {
    let got = ok(
        json!({"spec": {"a": "text", "b": {"x": 1}, "containers": {"oops": true}}}),
        json!({"spec": {"a": {"k": 1, "n": null}, "b": [1], "containers": [{"name": "c"}]}}),
    );
    assert_eq!(
        got,
        json!({"spec": {"a": {"k": 1}, "b": [1], "containers": [{"name": "c"}]}})
    );
}
