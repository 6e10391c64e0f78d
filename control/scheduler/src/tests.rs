//! Decisions on small clusters built from API objects, one filter, score or
//! preemption rule at a time, with the messages `kubectl describe` shows.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;

fn node(name: &str, extra: Value) -> NodeFacts {
    let mut node = json!({
        "metadata": {"name": name, "labels": {}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    });
    merge(&mut node, extra);
    NodeFacts::from_node(&serde_json::from_value(node).unwrap())
}

fn pod(name: &str, extra: Value) -> PodInfo {
    let mut pod = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}
    });
    merge(&mut pod, extra);
    PodInfo::from_pod(&serde_json::from_value(pod).unwrap())
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (k, v) in from {
                merge(into.entry(k).or_insert(Value::Null), v);
            }
        }
        (into, from) => *into = from,
    }
}

fn cpu(milli: &str) -> Value {
    json!({"spec": {"containers": [{"name": "c", "image": "x",
        "resources": {"requests": {"cpu": milli}}}]}})
}

fn cluster(nodes: Vec<NodeFacts>) -> Cluster {
    let mut cluster = Cluster::default();
    for facts in nodes {
        cluster.upsert_node(facts);
    }
    cluster
}

fn bind(cluster: &mut Cluster, node: &str, pod: PodInfo) {
    cluster.place(node, Arc::new(pod));
}

fn decided(cluster: &mut Cluster, pod: &PodInfo) -> String {
    match decide(cluster, pod) {
        Decision::Bind(node) => node,
        other => panic!("expected a node, got {other:?}"),
    }
}

fn refused(cluster: &mut Cluster, pod: &PodInfo) -> String {
    match decide(cluster, pod) {
        Decision::Unschedulable(message) => message,
        other => panic!("expected no node, got {other:?}"),
    }
}

#[test]
fn requests_are_counted_against_allocatable_with_kube_scheduler_wording() {
    let mut c = cluster(vec![
        node("a", json!({})),
        node("b", json!({})),
        node(
            "tainted",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
        ),
    ]);
    bind(&mut c, "a", pod("big-a", cpu("3500m")));
    bind(&mut c, "b", pod("big-b", cpu("3")));
    assert_eq!(decided(&mut c, &pod("small", cpu("1"))), "b");
    let message = refused(&mut c, &pod("huge", cpu("2")));
    assert_eq!(
        message,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. \
         preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, \
         2 No preemption victims found for incoming pod."
    );
}

#[test]
fn pods_capacity_and_memory_and_extended_resources() {
    let mut c = cluster(vec![node(
        "a",
        json!({"status": {"allocatable": {"pods": "1", "example.com/gpu": "1"}}}),
    )]);
    let gpu = json!({"spec": {"containers": [{"name": "c", "image": "x",
        "resources": {"limits": {"example.com/gpu": "2", "memory": "16Gi"}}}]}});
    let message = refused(&mut c, &pod("g", gpu));
    assert!(
        message.starts_with(
            "0/1 nodes are available: 1 Insufficient example.com/gpu, 1 Insufficient memory."
        ),
        "{message}"
    );
    bind(&mut c, "a", pod("first", json!({})));
    let message = refused(&mut c, &pod("second", json!({})));
    assert!(message.starts_with("0/1 nodes are available: 1 Too many pods."));
}

#[test]
fn taints_tolerations_not_ready_and_cordons() {
    let taint = json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoExecute"}]}});
    let mut c = cluster(vec![
        node("tainted", taint),
        node(
            "down",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        ),
        node("cordoned", json!({"spec": {"unschedulable": true}})),
    ]);
    let message = refused(&mut c, &pod("p", json!({})));
    assert!(
        message.starts_with(
            "0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, \
         1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
         1 node(s) were unschedulable."
        ),
        "{message}"
    );
    let tolerant = pod(
        "t",
        json!({"spec": {"tolerations": [{"key": "k", "operator": "Exists"}]}}),
    );
    assert_eq!(decided(&mut c, &tolerant), "tainted");
    let daemon = pod(
        "d",
        json!({"spec": {"tolerations": [
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
    );
    assert_eq!(decided(&mut c, &daemon), "cordoned");
}

#[test]
fn node_selector_and_required_and_preferred_node_affinity() {
    let mut c = cluster(vec![
        node(
            "ssd-1",
            json!({"metadata": {"labels": {"disk": "ssd", "zone": "z1"}}}),
        ),
        node(
            "ssd-2",
            json!({"metadata": {"labels": {"disk": "ssd", "zone": "z2"}}}),
        ),
        node(
            "hdd",
            json!({"metadata": {"labels": {"disk": "hdd", "zone": "z2"}}}),
        ),
    ]);
    let selector = pod("s", json!({"spec": {"nodeSelector": {"disk": "hdd"}}}));
    assert_eq!(decided(&mut c, &selector), "hdd");
    let affinity = pod(
        "a",
        json!({"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}}]
        }}}}),
    );
    assert_eq!(decided(&mut c, &affinity), "ssd-2");
    let nowhere = pod("n", json!({"spec": {"nodeSelector": {"disk": "tape"}}}));
    assert!(refused(&mut c, &nowhere).starts_with(
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    ));
}

#[test]
fn host_ports_clash_only_on_the_same_protocol_port_and_address() {
    let mut c = cluster(vec![node("a", json!({}))]);
    let port = |proto: &str| {
        json!({"spec": {"containers": [{"name": "c", "image": "x",
            "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": proto}]}]}})
    };
    bind(&mut c, "a", pod("web", port("TCP")));
    assert_eq!(decided(&mut c, &pod("udp", port("UDP"))), "a");
    assert!(refused(&mut c, &pod("web2", port("TCP"))).starts_with(
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
    ));
}

#[test]
fn runtime_class_handler_selector_and_tolerations() {
    let mut c = cluster(vec![
        node(
            "wasm-only",
            json!({"status": {"runtimeHandlers": [{"name": "wasm"}]}}),
        ),
        node(
            "both",
            json!({"metadata": {"labels": {"oci": "yes"}},
            "spec": {"taints": [{"key": "oci", "effect": "NoSchedule"}]},
            "status": {"runtimeHandlers": [{"name": "wasm"}, {"name": "oci"}]}}),
        ),
    ]);
    let class: k8s_openapi::api::node::v1::RuntimeClass = serde_json::from_value(json!({
        "metadata": {"name": "containers"}, "handler": "oci",
        "scheduling": {"nodeSelector": {"oci": "yes"}, "tolerations": [{"key": "oci", "operator": "Exists"}]}
    }))
    .unwrap();
    c.runtime_classes.insert(
        "containers".into(),
        cluster::RuntimeClassInfo::from_class(&class),
    );
    let oci = pod("o", json!({"spec": {"runtimeClassName": "containers"}}));
    assert_eq!(decided(&mut c, &oci), "both");
    let unknown = pod("u", json!({"spec": {"runtimeClassName": "gvisor"}}));
    assert!(refused(&mut c, &unknown).starts_with(
        "0/2 nodes are available: 1 node(s) didn't have the runtime handler \"gvisor\" of the pod's RuntimeClass, \
         1 node(s) had untolerated taint {oci: }."
    ));
}

#[test]
fn least_allocated_then_spreading_of_one_controller() {
    let mut c = cluster(vec![node("a", json!({})), node("b", json!({}))]);
    bind(&mut c, "a", pod("busy", cpu("2")));
    assert_eq!(decided(&mut c, &pod("p", cpu("100m"))), "b");

    let mut c = cluster(vec![node("a", json!({})), node("b", json!({}))]);
    let owned = |name: &str| {
        pod(
            name,
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": "web", "uid": "u", "controller": true}]}}),
        )
    };
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..10 {
        let p = owned(&format!("web-{i}"));
        let node = decided(&mut c, &p);
        bind(&mut c, &node, p);
        *counts.entry(node).or_insert(0) += 1;
    }
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [5, 5]);
}

#[test]
fn topology_spread_do_not_schedule_caps_the_skew() {
    let zone = |z: &str| json!({"metadata": {"labels": {"zone": z}}});
    let mut c = cluster(vec![
        node("a1", zone("a")),
        node("a2", zone("a")),
        node("b1", zone("b")),
        node("unlabelled", json!({})),
    ]);
    let spread = |name: &str| {
        pod(
            name,
            json!({"metadata": {"labels": {"app": "db"}}, "spec": {"topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"app": "db"}}}]}}),
        )
    };
    bind(&mut c, "a1", spread("db-0"));
    bind(&mut c, "a2", spread("db-1"));
    // Zone a holds 2, b holds 0: only b is within a skew of 1.
    assert_eq!(decided(&mut c, &spread("db-2")), "b1");
    bind(&mut c, "b1", spread("db-2"));
    bind(&mut c, "b1", spread("db-3"));
    bind(&mut c, "b1", spread("db-4"));
    let mut full = c;
    for n in ["a1", "a2", "b1"] {
        full.upsert_node(node(
            n,
            json!({"metadata": {"labels": {"zone": if n == "b1" { "b" } else { "a" }}},
            "spec": {"unschedulable": n != "b1"}}),
        ));
    }
    // Zone a holds 2, b holds 3: b would go to 4, a skew of 2.
    let message = refused(&mut full, &spread("db-5"));
    assert!(
        message.starts_with(
            "0/4 nodes are available: 1 node(s) didn't match pod topology spread constraints, \
         1 node(s) didn't match pod topology spread constraints (missing required label), \
         2 node(s) were unschedulable."
        ),
        "{message}"
    );
}

#[test]
fn pod_affinity_and_anti_affinity_both_ways() {
    let host = |h: &str| json!({"metadata": {"labels": {"kubernetes.io/hostname": h}}});
    let mut c = cluster(vec![node("a", host("a")), node("b", host("b"))]);
    bind(
        &mut c,
        "a",
        pod("cache", json!({"metadata": {"labels": {"app": "cache"}}})),
    );
    let term = |app: &str| {
        json!([{"labelSelector": {"matchLabels": {"app": app}},
        "topologyKey": "kubernetes.io/hostname"}])
    };
    let near = pod(
        "near",
        json!({"spec": {"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": term("cache")}}}}),
    );
    assert_eq!(decided(&mut c, &near), "a");
    let away = pod(
        "away",
        json!({"spec": {"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": term("cache")}}}}),
    );
    assert_eq!(decided(&mut c, &away), "b");

    // An existing pod that repels `app=web` keeps web pods off its node.
    bind(
        &mut c,
        "b",
        pod(
            "loner",
            json!({"spec": {"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": term("web")}}}}),
        ),
    );
    let web = pod("web", json!({"metadata": {"labels": {"app": "web"}}}));
    assert_eq!(decided(&mut c, &web), "a");
    let web_away = pod(
        "web2",
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": term("cache")}}}}),
    );
    assert!(refused(&mut c, &web_away).starts_with(
        "0/2 nodes are available: 1 node(s) didn't match pod anti-affinity rules, \
         1 node(s) didn't satisfy existing pods anti-affinity rules."
    ));
    // The first pod of a group that wants its own kind may go anywhere.
    let first = pod(
        "first",
        json!({"metadata": {"labels": {"app": "solo"}}, "spec": {"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": term("solo")}}}}),
    );
    decided(&mut c, &first);
    let lonely = pod(
        "lonely",
        json!({"spec": {"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": term("nothing")}}}}),
    );
    assert!(refused(&mut c, &lonely).contains("2 node(s) didn't match pod affinity rules"));
}

#[test]
fn preemption_evicts_the_fewest_least_important_pods() {
    let mut c = cluster(vec![node("a", json!({})), node("b", json!({}))]);
    let with = |name: &str, priority: i32, milli: &str| {
        let mut p = pod(name, cpu(milli));
        p.priority = priority;
        p
    };
    bind(&mut c, "a", with("a-low", 10, "2"));
    bind(&mut c, "a", with("a-mid", 100, "2"));
    bind(&mut c, "b", with("b-low1", 10, "1"));
    bind(&mut c, "b", with("b-low2", 10, "1"));
    bind(&mut c, "b", with("b-high", 1000, "2"));
    let urgent = with("urgent", 500, "2");
    match decide(&mut c, &urgent) {
        Decision::Preempt {
            node,
            victims,
            message,
        } => {
            // On a, evicting a-low suffices but its top victim (10) ties with
            // b's; b would need two victims (sum 20) against a's one (10).
            assert_eq!(node, "a");
            let names: Vec<&str> = victims.iter().map(|v| v.name.as_str()).collect();
            assert_eq!(names, ["a-low"]);
            assert!(message.starts_with("0/2 nodes are available: 2 Insufficient cpu."));
        }
        other => panic!("expected preemption, got {other:?}"),
    }
    // Nominated, the pod's room is kept from equal or lower priority pods.
    c.nominate("a", Arc::new(urgent.clone()));
    c.unplace("default", "a-low");
    assert!(matches!(
        decide(&mut c, &with("sneaky", 0, "2")),
        Decision::Unschedulable(_) | Decision::Preempt { .. }
    ));
    assert_eq!(decided(&mut c, &urgent), "a");

    let mut never = with("polite", 500, "4");
    never.never_preempts = true;
    assert!(
        refused(&mut c, &never)
            .ends_with("preemption: not eligible due to preemptionPolicy=Never.")
    );
}

#[test]
fn big_clusters_are_sampled_and_searched_round_robin() {
    assert_eq!(plan::nodes_to_find(50), 50);
    assert_eq!(plan::nodes_to_find(1000), 420);
    assert_eq!(plan::nodes_to_find(5000), 500);
    let nodes = (0..1000)
        .map(|i| node(&format!("n{i:04}"), json!({})))
        .collect();
    let mut c = cluster(nodes);
    let first = decided(&mut c, &pod("p1", json!({})));
    assert_eq!(c.next_start, 420);
    let second = decided(&mut c, &pod("p2", json!({})));
    assert_ne!(first, second);
}

#[test]
fn the_loop_state_follows_pods_from_pending_to_placed_to_finished() {
    let as_pod = |name: &str, node: Option<&str>, phase: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase}
        }))
        .unwrap()
    };
    let mut state = State::default();
    state.node_event(watcher::Event::Apply(
        serde_json::from_value(json!({
        "metadata": {"name": "n1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}],
        "allocatable": {"pods": "10", "cpu": "1", "memory": "1Gi"}}}))
        .unwrap(),
    ));
    state.pod_event(watcher::Event::Apply(as_pod("a", None, "Pending")));
    state.pod_event(watcher::Event::Apply(as_pod("b", Some("n1"), "Running")));
    assert!(state.queue.has_active());
    assert_eq!(state.cluster.node("n1").unwrap().pods.len(), 1);
    state.pod_event(watcher::Event::Apply(as_pod("a", Some("n1"), "Running")));
    assert!(!state.queue.has_active());
    assert_eq!(state.cluster.node("n1").unwrap().pods.len(), 2);
    state.pod_event(watcher::Event::Apply(as_pod("b", Some("n1"), "Succeeded")));
    state.pod_event(watcher::Event::Delete(as_pod("a", Some("n1"), "Running")));
    assert!(
        state.cluster.node("n1").unwrap().pods.is_empty(),
        "finished and deleted pods free their node"
    );

    let mut other = as_pod("c", None, "Pending");
    other.spec.as_mut().unwrap().scheduler_name = Some("someone-else".into());
    state.pod_event(watcher::Event::Apply(other));
    assert!(
        !state.queue.has_active(),
        "pods for another scheduler are left alone"
    );
}

#[test]
fn a_pod_on_a_local_volume_goes_to_the_volume_s_node() {
    let mut c = cluster(vec![node("a", json!({})), node("b", json!({}))]);
    let mut p = pod(
        "db",
        json!({"spec": {"volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-db"}}]}}),
    );
    assert_eq!(p.claims, ["data-db"]);
    p.volume_nodes = Some(vec!["b".into()]);
    assert_eq!(decided(&mut c, &p), "b");
    p.volume_nodes = Some(vec!["gone".into()]);
    assert!(
        refused(&mut c, &p)
            .starts_with("0/2 nodes are available: 2 node(s) had volume node affinity conflict.")
    );
}

fn prioritised(name: &str, priority: i32, extra: Value) -> PodInfo {
    let mut p = pod(name, extra);
    p.priority = priority;
    p
}

fn victims_of(decision: Decision) -> (String, Vec<String>) {
    match decision {
        Decision::Preempt { node, victims, .. } => {
            (node, victims.iter().map(|v| v.name.clone()).collect())
        }
        other => panic!("expected preemption, got {other:?}"),
    }
}

fn budget(app: &str, allowed: i32) -> cluster::Budget {
    cluster::Budget {
        namespace: "default".into(),
        selector: serde_json::from_value(json!({"matchLabels": {"app": app}})).unwrap(),
        allowed,
        disrupted: Default::default(),
    }
}

fn with_app_and_cpu(app: &str, milli: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "x",
        "resources": {"requests": {"cpu": milli}}}]}})
}

#[test]
fn preemption_prefers_victims_no_disruption_budget_protects() {
    let mut c = cluster(vec![node("a", json!({})), node("b", json!({}))]);
    // a's victim is the least important, but a budget allows no disruption
    // of it; b's is more important and unprotected.
    bind(
        &mut c,
        "a",
        prioritised("guarded", 10, with_app_and_cpu("db", "4")),
    );
    bind(
        &mut c,
        "b",
        prioritised("free", 100, with_app_and_cpu("web", "4")),
    );
    let urgent = prioritised("urgent", 500, cpu("2"));
    c.budgets
        .insert(("default".into(), "db".into()), budget("db", 0));
    assert_eq!(
        victims_of(decide(&mut c, &urgent)),
        ("b".to_string(), vec!["free".to_string()])
    );
    // A budget with room: the least important victim again.
    c.budgets
        .insert(("default".into(), "db".into()), budget("db", 1));
    assert_eq!(
        victims_of(decide(&mut c, &urgent)),
        ("a".to_string(), vec!["guarded".to_string()])
    );
    // When every choice breaks a budget, preemption still goes ahead.
    c.budgets
        .insert(("default".into(), "web".into()), budget("web", 0));
    c.budgets
        .insert(("default".into(), "db".into()), budget("db", 0));
    assert_eq!(victims_of(decide(&mut c, &urgent)).1, ["guarded"]);
}

#[test]
fn a_budget_counts_down_over_the_victims_it_covers() {
    let mut c = Cluster::default();
    c.budgets
        .insert(("default".into(), "db".into()), budget("db", 1));
    let pods: Vec<Arc<PodInfo>> = ["db-1", "db-2", "other"]
        .iter()
        .map(|name| {
            let app = if name.starts_with("db") { "db" } else { "web" };
            Arc::new(prioritised(name, 0, with_app_and_cpu(app, "1")))
        })
        .collect();
    let (violating, harmless) = plan::split_by_budgets(pods, &c);
    let names = |v: &[Arc<PodInfo>]| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&violating), ["db-2"]);
    assert_eq!(names(&harmless), ["db-1", "other"]);
}

#[test]
fn preemption_clears_anti_affinity_and_keeps_the_pods_affinity() {
    let host = |h: &str| json!({"metadata": {"labels": {"kubernetes.io/hostname": h}}});
    let term = |app: &str| {
        json!([{"labelSelector": {"matchLabels": {"app": app}},
        "topologyKey": "kubernetes.io/hostname"}])
    };
    // Anti-affinity: the only node without a full CPU holds a low-priority
    // pod the newcomer repels; evicting it is the way in.
    let mut c = cluster(vec![node("a", host("a")), node("b", host("b"))]);
    bind(
        &mut c,
        "a",
        prioritised("cache", 10, with_app_and_cpu("cache", "1")),
    );
    bind(&mut c, "b", prioritised("busy", 1000, cpu("4")));
    let shy = prioritised(
        "shy",
        500,
        json!({"spec": {"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": term("cache")}},
        "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}}),
    );
    assert_eq!(
        victims_of(decide(&mut c, &shy)),
        ("a".to_string(), vec!["cache".to_string()])
    );

    // Affinity re-checked without the victims: on a the only `db` pod would
    // have to go with the CPU hog, so a is no candidate although its victims
    // are the least important; b keeps its important `db` pod.
    let mut c = cluster(vec![node("a", host("a")), node("b", host("b"))]);
    bind(
        &mut c,
        "a",
        prioritised("db-low", 10, with_app_and_cpu("db", "2")),
    );
    bind(
        &mut c,
        "a",
        prioritised("hog-a", 10, with_app_and_cpu("x", "2")),
    );
    bind(
        &mut c,
        "b",
        prioritised("db-high", 1000, with_app_and_cpu("db", "2")),
    );
    bind(
        &mut c,
        "b",
        prioritised("hog-b", 100, with_app_and_cpu("x", "2")),
    );
    let near = prioritised(
        "near",
        500,
        json!({"spec": {"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": term("db")}},
        "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "2"}}}]}}),
    );
    assert_eq!(
        victims_of(decide(&mut c, &near)),
        ("b".to_string(), vec!["hog-b".to_string()])
    );
}
