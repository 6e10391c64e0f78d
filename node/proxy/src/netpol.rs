//! NetworkPolicy (`networking.k8s.io/v1`) ingress rules, decided per
//! endpoint at the gateway and the NodePort forwarder. Pure functions over
//! cached objects.
//!
//! As in Kubernetes: a pod that no policy with `Ingress` among its
//! `policyTypes` selects takes traffic from anyone; once one does, only what
//! some rule of those policies allows gets through. A rule allows when one of
//! its `from` peers matches the caller (none listed: every caller) and one of
//! its `ports` matches the pod's port (none listed: every port; a named port
//! is the pod's container port of that name; `endPort` makes a range).
//!
//! The caller is the source pod when the client address is a pod's own IP
//! (an OCI pod; Wasm pods share their node's address and cannot be told
//! apart by it), else just that address, which only `ipBlock` peers match.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::SelectorExt;

type Labels = BTreeMap<String, String>;

/// Who is calling.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub ip: IpAddr,
    /// The pod whose IP the call came from, with its namespace's labels.
    pub pod: Option<(&'a Pod, &'a Labels)>,
}

/// What the policies say about one call to one pod port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No policy selects the pod.
    Open,
    /// Allowed by this policy (`ns/name`).
    Allowed(String),
    /// Selected by these policies (`ns/name`), none allows the call.
    Denied(Vec<String>),
}

/// The verdict for `caller` reaching `port` of `pod` under `policies` (all
/// policies; those of other namespaces are skipped).
pub fn decide(
    policies: &[Arc<NetworkPolicy>],
    pod: &Pod,
    port: u16,
    caller: &Caller<'_>,
) -> Verdict {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut selecting = Vec::new();
    for policy in policies {
        if policy.metadata.namespace.as_deref().unwrap_or_default() != namespace {
            continue;
        }
        let Some(spec) = &policy.spec else { continue };
        let ingress_type = spec
            .policy_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == "Ingress"));
        let selector = spec.pod_selector.clone().unwrap_or_default();
        if !ingress_type || !selects(&selector, pod.metadata.labels.as_ref()) {
            continue;
        }
        let name = format!(
            "{namespace}/{}",
            policy.metadata.name.as_deref().unwrap_or_default()
        );
        let allows = spec.ingress.iter().flatten().any(|rule| {
            let from_ok = match rule.from.as_deref() {
                None | Some([]) => true,
                Some(peers) => peers
                    .iter()
                    .any(|peer| peer_matches(peer, namespace, caller)),
            };
            let port_ok = match rule.ports.as_deref() {
                None | Some([]) => true,
                Some(ports) => ports.iter().any(|p| port_matches(p, pod, port)),
            };
            from_ok && port_ok
        });
        if allows {
            return Verdict::Allowed(name);
        }
        selecting.push(name);
    }
    if selecting.is_empty() {
        Verdict::Open
    } else {
        Verdict::Denied(selecting)
    }
}

/// An empty selector selects everything; one that cannot be parsed, nothing.
fn selects(selector: &LabelSelector, labels: Option<&Labels>) -> bool {
    let Ok(parsed) = kube::core::Selector::try_from(selector.clone()) else {
        return false;
    };
    let none = Labels::new();
    parsed.matches(labels.unwrap_or(&none))
}

fn peer_matches(peer: &NetworkPolicyPeer, policy_namespace: &str, caller: &Caller<'_>) -> bool {
    if let Some(block) = &peer.ip_block {
        return ip_block_matches(block, caller.ip);
    }
    if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        return false;
    }
    let Some((pod, namespace_labels)) = caller.pod else {
        return false;
    };
    let pod_namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let namespace_ok = match &peer.namespace_selector {
        // Without a namespaceSelector, the policy's own namespace.
        None => pod_namespace == policy_namespace,
        Some(selector) => selects(selector, Some(namespace_labels)),
    };
    let pod_ok = peer
        .pod_selector
        .as_ref()
        .is_none_or(|s| selects(s, pod.metadata.labels.as_ref()));
    namespace_ok && pod_ok
}

fn ip_block_matches(block: &IPBlock, ip: IpAddr) -> bool {
    cidr_contains(&block.cidr, ip)
        && !block
            .except
            .iter()
            .flatten()
            .any(|except| cidr_contains(except, ip))
}

/// Whether `cidr` (`10.0.0.0/8`, `::1/128`, or a bare address) contains `ip`.
pub fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let (network, bits) = match cidr.split_once('/') {
        Some((network, bits)) => (network, bits.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(network) = network.trim().parse::<IpAddr>() else {
        return false;
    };
    match (network, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

fn port_matches(rule: &NetworkPolicyPort, pod: &Pod, port: u16) -> bool {
    if rule.protocol.as_deref().is_some_and(|p| p != "TCP") {
        return false;
    }
    let start = match &rule.port {
        None => return true,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(name)) => {
            return pod
                .spec
                .iter()
                .flat_map(|s| &s.containers)
                .flat_map(|c| c.ports.iter().flatten())
                .any(|p| {
                    p.name.as_deref() == Some(name.as_str()) && p.container_port == i32::from(port)
                });
        }
    };
    let end = rule.end_port.unwrap_or(start);
    (start..=end).contains(&i32::from(port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(name: &str, spec: serde_json::Value) -> Arc<NetworkPolicy> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": "shop"}, "spec": spec}),
            )
            .unwrap(),
        )
    }

    fn pod(namespace: &str, labels: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}
        }))
        .unwrap()
    }

    fn external(ip: [u8; 4]) -> Caller<'static> {
        Caller {
            ip: ip.into(),
            pod: None,
        }
    }

    #[test]
    fn unselected_pods_are_open_and_selected_ones_default_deny() {
        let web = pod("shop", json!({"app": "web"}));
        let deny_all = policy("deny", json!({"podSelector": {}}));
        let other = policy(
            "other",
            json!({"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{}]}),
        );
        let caller = external([127, 0, 0, 1]);
        assert_eq!(
            decide(std::slice::from_ref(&other), &web, 8080, &caller),
            Verdict::Open
        );
        assert_eq!(
            decide(std::slice::from_ref(&deny_all), &web, 8080, &caller),
            Verdict::Denied(vec!["shop/deny".into()])
        );
        // An egress-only policy does not isolate for ingress.
        let egress = policy(
            "egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        );
        assert_eq!(decide(&[egress], &web, 8080, &caller), Verdict::Open);
        // A pod in another namespace is not selected.
        let elsewhere = pod("other", json!({"app": "web"}));
        assert_eq!(
            decide(&[deny_all], &elsewhere, 8080, &caller),
            Verdict::Open
        );
    }

    #[test]
    fn ip_blocks_and_ports() {
        let web = pod("shop", json!({"app": "web"}));
        let allow = policy(
            "allow",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{
                "from": [{"ipBlock": {"cidr": "127.0.0.0/24", "except": ["127.0.0.3/32"]}}],
                "ports": [{"port": "http"}, {"port": 9000, "endPort": 9010, "protocol": "TCP"}]
            }]}),
        );
        let verdict =
            |ip: [u8; 4], port| decide(std::slice::from_ref(&allow), &web, port, &external(ip));
        assert_eq!(
            verdict([127, 0, 0, 2], 8080),
            Verdict::Allowed("shop/allow".into())
        );
        assert_eq!(
            verdict([127, 0, 0, 2], 9005),
            Verdict::Allowed("shop/allow".into())
        );
        assert!(matches!(verdict([127, 0, 0, 3], 8080), Verdict::Denied(_)));
        assert!(matches!(verdict([127, 0, 1, 2], 8080), Verdict::Denied(_)));
        assert!(matches!(verdict([127, 0, 0, 2], 9011), Verdict::Denied(_)));
        assert!(cidr_contains("::1/128", "::1".parse().unwrap()));
        assert!(!cidr_contains("10.0.0.0/8", "::1".parse().unwrap()));
        assert!(cidr_contains("0.0.0.0/0", [8, 8, 8, 8].into()));
    }

    #[test]
    fn pod_and_namespace_selectors() {
        let web = pod("shop", json!({"app": "web"}));
        let policies = [policy(
            "peers",
            json!({"podSelector": {}, "ingress": [{"from": [
                {"podSelector": {"matchLabels": {"role": "frontend"}}},
                {"namespaceSelector": {"matchLabels": {"team": "ops"}},
                 "podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["probe"]}]}}
            ]}]}),
        )];
        let verdict = |namespace: &str, labels: serde_json::Value, ns_labels: serde_json::Value| {
            let source = pod(namespace, labels);
            let ns_labels: Labels = serde_json::from_value(ns_labels).unwrap();
            let caller = Caller {
                ip: [172, 17, 0, 5].into(),
                pod: Some((&source, &ns_labels)),
            };
            decide(&policies, &web, 8080, &caller)
        };
        let allowed = Verdict::Allowed("shop/peers".into());
        assert_eq!(
            verdict("shop", json!({"role": "frontend"}), json!({})),
            allowed
        );
        // The same labels in another namespace: a podSelector alone means the policy's namespace.
        assert!(matches!(
            verdict("other", json!({"role": "frontend"}), json!({})),
            Verdict::Denied(_)
        ));
        assert_eq!(
            verdict("ops", json!({"role": "probe"}), json!({"team": "ops"})),
            allowed
        );
        assert!(matches!(
            verdict("ops", json!({"role": "frontend"}), json!({"team": "ops"})),
            Verdict::Denied(_)
        ));
        // No source pod: only ipBlock peers can match.
        assert!(matches!(
            decide(&policies, &web, 8080, &external([172, 17, 0, 5])),
            Verdict::Denied(_)
        ));
    }
}
