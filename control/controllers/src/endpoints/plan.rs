//! What a Service's EndpointSlices and Endpoints should hold, from the
//! Service and the pods it selects. Pure: no API calls.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::pods::is_ready;

/// `endpointslice.kubernetes.io/managed-by` on the slices this controller writes.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One EndpointSlice's content: pods whose named target ports resolve the
/// same way share a slice, as in Kubernetes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SliceContent {
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
}

/// The desired state of one Service's endpoints.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Desired {
    /// Sorted by ports, so the same input always pairs with the same slice.
    pub slices: Vec<SliceContent>,
    /// The legacy Endpoints object's subsets.
    pub subsets: Vec<EndpointSubset>,
}

/// Whether this controller keeps endpoints for `service`: it has a selector
/// and is not an ExternalName Service.
pub fn manages(service: &Service) -> bool {
    let Some(spec) = service.spec.as_ref() else {
        return false;
    };
    spec.type_.as_deref() != Some("ExternalName")
        && spec.selector.as_ref().is_some_and(|s| !s.is_empty())
}

/// Whether the Service's selector matches the pod's labels (a Service
/// selector is a plain label map).
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The container port a Service port's `targetPort` means for `pod`: a
/// number as is (default: the Service port), a name looked up among the
/// pod's container ports; `None` when the pod has no port of that name.
pub fn resolve_target(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse() {
                return Some(n);
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
}

fn finished(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// Compute the endpoints of `service` from the pods in its namespace.
pub fn plan(service: &Service, pods: &[Arc<Pod>]) -> Desired {
    let spec = service.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let service_ports = spec.ports.unwrap_or_default();
    let mut selected: Vec<&Pod> = pods
        .iter()
        .map(Arc::as_ref)
        .filter(|p| selects(service, p) && !finished(p) && pod_ip(p).is_some())
        .collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    // Group pods by how the Service's ports resolve for them.
    let mut slices: BTreeMap<Vec<(String, String, i32)>, SliceContent> = BTreeMap::new();
    let mut subsets: BTreeMap<Vec<(String, String, i32)>, EndpointSubset> = BTreeMap::new();
    for pod in selected {
        let resolved: Vec<(String, String, i32)> = service_ports
            .iter()
            .filter_map(|port| {
                let target = resolve_target(port, pod)?;
                Some((
                    port.name.clone().unwrap_or_default(),
                    port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    target,
                ))
            })
            .collect();
        if !service_ports.is_empty() && resolved.is_empty() {
            continue;
        }
        let ip = pod_ip(pod).unwrap_or_default();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let pod_ready = is_ready(pod);
        let serving = pod_ready || publish_not_ready;
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());

        let slice = slices
            .entry(resolved.clone())
            .or_insert_with(|| SliceContent {
                ports: resolved
                    .iter()
                    .map(|(name, protocol, port)| EndpointPort {
                        name: Some(name.clone()),
                        protocol: Some(protocol.clone()),
                        port: Some(*port),
                        app_protocol: None,
                    })
                    .collect(),
                endpoints: Vec::new(),
            });
        slice.endpoints.push(Endpoint {
            addresses: vec![ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(serving && !terminating),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            node_name: node_name.clone(),
            target_ref: Some(target_ref(pod)),
            ..Endpoint::default()
        });

        // The legacy object leaves terminating pods out entirely.
        if terminating && !publish_not_ready {
            continue;
        }
        let subset = subsets
            .entry(resolved.clone())
            .or_insert_with(|| EndpointSubset {
                ports: Some(
                    resolved
                        .iter()
                        .map(|(name, protocol, port)| CorePort {
                            name: Some(name.clone()).filter(|n| !n.is_empty()),
                            protocol: Some(protocol.clone()),
                            port: *port,
                            app_protocol: None,
                        })
                        .collect(),
                )
                .filter(|p: &Vec<CorePort>| !p.is_empty()),
                ..EndpointSubset::default()
            });
        let address = EndpointAddress {
            ip,
            node_name,
            target_ref: Some(target_ref(pod)),
            hostname: None,
        };
        let list = if serving {
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        list.get_or_insert_with(Vec::new).push(address);
    }
    Desired {
        slices: slices.into_values().collect(),
        subsets: subsets.into_values().collect(),
    }
}
