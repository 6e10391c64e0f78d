use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::Value;

use super::*;

fn accept(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
    headers
}

/// What kubectl 1.32 sends for `/api` and `/apis`.
const KUBECTL_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
     application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

#[test]
fn negotiate_follows_the_clients_order() {
    assert_eq!(negotiate(&accept(KUBECTL_ACCEPT)), Flavor::Aggregated("v2"));
    assert_eq!(
        negotiate(&accept(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        )),
        Flavor::Aggregated("v2beta1")
    );
    assert_eq!(negotiate(&accept("application/json")), Flavor::Legacy);
    assert_eq!(negotiate(&HeaderMap::new()), Flavor::Legacy);
    assert_eq!(
        negotiate(&accept(
            "application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        )),
        Flavor::Legacy
    );
    // Only protobuf or an unknown discovery version: fall back to legacy JSON.
    assert_eq!(
        negotiate(&accept(
            "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
             application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"
        )),
        Flavor::Legacy
    );
}

fn find<'a>(list: &'a Value, group: &str, version: &str, resource: &str) -> &'a Value {
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == group)
        .unwrap_or_else(|| panic!("group {group:?} missing"));
    let version = item["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == version)
        .unwrap_or_else(|| panic!("{group}/{version} missing"));
    version["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == resource)
        .unwrap_or_else(|| panic!("{resource} missing"))
}

#[test]
fn core_document_has_pods_with_subresources() {
    let doc = document(crate::registry(), Root::Core, "v2");
    assert_eq!(doc["kind"], "APIGroupDiscoveryList");
    assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
    let pods = find(&doc, "", "v1", "pods");
    assert_eq!(pods["scope"], "Namespaced");
    assert_eq!(pods["singularResource"], "pod");
    assert_eq!(
        pods["responseKind"],
        serde_json::json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert!(
        pods["shortNames"]
            .as_array()
            .unwrap()
            .contains(&"po".into())
    );
    assert!(
        pods["categories"]
            .as_array()
            .unwrap()
            .contains(&"all".into())
    );
    assert!(pods["verbs"].as_array().unwrap().contains(&"watch".into()));
    let subs = pods["subresources"].as_array().unwrap();
    let status = subs.iter().find(|s| s["subresource"] == "status").unwrap();
    assert_eq!(status["responseKind"]["kind"], "Pod");
    let binding = subs.iter().find(|s| s["subresource"] == "binding").unwrap();
    assert_eq!(binding["verbs"], serde_json::json!(["create"]));
    let namespaces = find(&doc, "", "v1", "namespaces");
    assert_eq!(namespaces["scope"], "Cluster");
}

#[test]
fn every_registered_resource_is_in_exactly_one_document() {
    let registry = crate::registry();
    let core = document(registry, Root::Core, "v2");
    let groups = document(registry, Root::Groups, "v2");
    for r in registry.all() {
        let doc = if r.group.is_empty() { &core } else { &groups };
        let entry = find(doc, r.group, r.version, r.plural);
        assert_eq!(entry["responseKind"]["kind"], r.kind);
        assert_eq!(entry["scope"] == "Namespaced", r.namespaced, "{}", r.plural);
    }
    // Each named group appears once, whatever number of versions it has.
    let names: Vec<&Value> = groups["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["metadata"]["name"])
        .collect();
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(names.len(), unique.len());
}

#[test]
fn response_content_type_names_the_aggregated_kind() {
    let response = respond(crate::registry(), Root::Groups, &accept(KUBECTL_ACCEPT));
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let response = respond(crate::registry(), Root::Core, &accept("application/json"));
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
}

#[test]
fn versions_rank_like_kubernetes() {
    let mut versions = vec!["v1beta1", "v1", "v2", "v2beta2", "v1alpha1"];
    versions.sort_by_key(|v| std::cmp::Reverse(discovery::version_priority(v)));
    assert_eq!(versions, ["v2", "v1", "v2beta2", "v1beta1", "v1alpha1"]);
}
