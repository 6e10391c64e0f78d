use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::{Value, json};

use super::plan;

fn service(extra: Value) -> Service {
    let mut spec = json!({
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                  {"name": "metrics", "port": 9090, "protocol": "TCP"}]
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "uid": "svc-uid"}, "spec": spec}))
        .unwrap()
}

fn pod(name: &str, port: i32, ready: bool, terminating: bool) -> Arc<Pod> {
    let mut meta = json!({"name": name, "namespace": "default", "uid": format!("{name}-uid"), "labels": {"app": "web"}});
    if terminating {
        meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    Arc::new(
        serde_json::from_value(json!({
            "metadata": meta,
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x",
                "ports": [{"name": "http", "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": "127.0.0.1",
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap(),
    )
}

#[test]
fn ready_unready_and_terminating_pods() {
    let pods = vec![
        pod("a", 8080, true, false),
        pod("b", 8080, false, false),
        pod("c", 8080, true, true),
    ];
    let desired = plan(&service(json!({})), &pods);
    assert_eq!(desired.slices.len(), 1);
    let slice = &desired.slices[0];
    let ports: Vec<_> = slice
        .ports
        .iter()
        .map(|p| (p.name.clone().unwrap(), p.port.unwrap()))
        .collect();
    assert_eq!(
        ports,
        vec![("http".to_string(), 8080), ("metrics".to_string(), 9090)]
    );
    let conditions: Vec<_> = slice
        .endpoints
        .iter()
        .map(|e| {
            let c = e.conditions.clone().unwrap();
            (
                e.target_ref.clone().unwrap().name.unwrap(),
                c.ready.unwrap(),
                c.serving.unwrap(),
                c.terminating.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        conditions,
        vec![
            ("a".to_string(), true, true, false),
            ("b".to_string(), false, false, false),
            ("c".to_string(), false, true, true),
        ]
    );
    assert_eq!(slice.endpoints[0].node_name.as_deref(), Some("n1"));
    assert_eq!(slice.endpoints[0].addresses, vec!["127.0.0.1".to_string()]);

    // The legacy object: ready in addresses, unready in notReadyAddresses,
    // terminating left out.
    assert_eq!(desired.subsets.len(), 1);
    let subset = &desired.subsets[0];
    let names = |list: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| -> Vec<String> {
        list.iter()
            .flatten()
            .map(|a| a.target_ref.clone().unwrap().name.unwrap())
            .collect()
    };
    assert_eq!(names(&subset.addresses), vec!["a"]);
    assert_eq!(names(&subset.not_ready_addresses), vec!["b"]);
}

#[test]
fn named_target_ports_split_slices() {
    let pods = vec![pod("a", 8080, true, false), pod("b", 9000, true, false)];
    let desired = plan(&service(json!({})), &pods);
    assert_eq!(desired.slices.len(), 2);
    let first_ports: Vec<i32> = desired
        .slices
        .iter()
        .map(|s| s.ports[0].port.unwrap())
        .collect();
    assert_eq!(first_ports, vec![8080, 9000]);
}

#[test]
fn unselected_finished_and_ipless_pods_are_left_out() {
    let mut other = (*pod("x", 8080, true, false)).clone();
    other.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    let mut done = (*pod("y", 8080, true, false)).clone();
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut no_ip = (*pod("z", 8080, true, false)).clone();
    no_ip.status.as_mut().unwrap().pod_ip = None;
    let desired = plan(
        &service(json!({})),
        &[Arc::new(other), Arc::new(done), Arc::new(no_ip)],
    );
    assert!(desired.slices.is_empty());
    assert!(desired.subsets.is_empty());
}

#[test]
fn publish_not_ready_addresses_marks_everyone_ready() {
    let pods = vec![pod("b", 8080, false, false)];
    let desired = plan(&service(json!({"publishNotReadyAddresses": true})), &pods);
    let conditions = desired.slices[0].endpoints[0].conditions.clone().unwrap();
    assert_eq!(conditions.ready, Some(true));
    assert!(desired.subsets[0].not_ready_addresses.is_none());
}

#[test]
fn external_name_and_selectorless_services_are_not_managed() {
    assert!(super::manages(&service(json!({}))));
    assert!(!super::manages(&service(
        json!({"type": "ExternalName", "externalName": "example.com"})
    )));
    assert!(!super::manages(&service(json!({"selector": {}}))));
}
