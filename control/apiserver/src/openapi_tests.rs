use serde_json::Value;

use super::*;

/// Follow a `$ref` (directly or through `allOf`, as OpenAPI 3.0 needs when a
/// reference has a description beside it) to its component.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let reference = schema["$ref"]
        .as_str()
        .or_else(|| schema["allOf"][0]["$ref"].as_str());
    match reference {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("reference outside components: {r}"));
            let target = &doc["components"]["schemas"][name];
            assert!(target.is_object(), "dangling reference {r}");
            target
        }
        None => schema,
    }
}

#[test]
fn pod_schema_reaches_container_fields_with_descriptions() {
    let doc = document(crate::registry(), "", "v1");
    let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "", "version": "v1", "kind": "Pod"}])
    );
    assert!(pod["description"].as_str().unwrap().contains("containers"));
    let spec = resolve(&doc, &pod["properties"]["spec"]);
    let containers = &spec["properties"]["containers"];
    assert_eq!(containers["type"], "array");
    let container = resolve(&doc, &containers["items"]);
    let image = &container["properties"]["image"];
    assert_eq!(image["type"], "string");
    assert!(!image["description"].as_str().unwrap().is_empty());
}

/// Every `$ref` anywhere in a document names a component of that document.
fn check_refs(doc: &Value, value: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                resolve(doc, value);
                assert!(r.starts_with("#/components/schemas/"), "{r}");
            }
            map.values().for_each(|v| check_refs(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(doc, v)),
        _ => {}
    }
}

#[test]
fn every_resource_has_a_kind_schema_and_a_validating_patch() {
    let registry = crate::registry();
    for (group, version) in group_versions(registry) {
        let doc = document(registry, group, version);
        check_refs(&doc, &doc);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for r in registry
            .all()
            .filter(|r| r.group == group && r.version == version)
        {
            let gvk = serde_json::json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
            assert!(
                schemas
                    .values()
                    .any(|s| s["x-kubernetes-group-version-kind"] == gvk),
                "no schema for {}",
                r.kind
            );
            let patch = doc["paths"]
                .as_object()
                .unwrap()
                .values()
                .filter_map(|p| p.get("patch"))
                .find(|op| op["x-kubernetes-group-version-kind"]["kind"] == r.kind)
                .unwrap_or_else(|| panic!("no patch operation for {}", r.kind));
            let params = patch["parameters"].as_array().unwrap();
            assert!(params.iter().any(|p| p["name"] == "fieldValidation"));
            let content = patch["requestBody"]["content"].as_object().unwrap();
            assert!(!content.contains_key("application/strategic-merge-patch+json"));
        }
    }
}

#[test]
fn index_lists_every_document_with_a_stable_hash() {
    let registry = crate::registry();
    let first = build(registry);
    let second = build(registry);
    assert_eq!(first.index, second.index);
    let index: Value = serde_json::from_slice(&first.index).unwrap();
    for (path, (_, digest)) in &first.documents {
        let url = index["paths"][path]["serverRelativeURL"].as_str().unwrap();
        assert_eq!(url, format!("/openapi/v3/{path}?hash={digest}"));
    }
    assert!(first.documents.contains_key("api/v1"));
}
