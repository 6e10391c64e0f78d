//! Cluster IPs and node ports for Services, unique across the cluster.
//!
//! The free values are found by scanning the stored Services. One lock held
//! from the scan until the write lands keeps two creates from picking the
//! same value: the API server is the only writer of Services.

use std::net::Ipv4Addr;

use serde_json::{Value, json};
use skiff_store::Store;
use tokio::sync::{Mutex, MutexGuard};

use crate::error::{ApiError, ApiResult, Cause};
use crate::objects::from_kv;
use crate::resources::Resource;

/// The service CIDR, as kubeadm's default `10.96.0.0/12`.
pub const SERVICE_CIDR: (Ipv4Addr, u32) = (Ipv4Addr::new(10, 96, 0, 0), 12);
/// The node port range, as Kubernetes' default.
pub const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

static ALLOCATION: Mutex<()> = Mutex::const_new(());

/// Held by a Service write until it is stored; dropping it lets the next
/// allocation see this Service.
pub type Reservation = MutexGuard<'static, ()>;

fn cidr_size() -> u32 {
    1 << (32 - SERVICE_CIDR.1)
}

/// The offset of `ip` in the service CIDR, if it is a usable address there.
fn offset(ip: &str) -> Option<u32> {
    let ip: Ipv4Addr = ip.parse().ok()?;
    let offset = u32::from(ip).checked_sub(u32::from(SERVICE_CIDR.0))?;
    (offset > 0 && offset < cidr_size() - 1).then_some(offset)
}

fn address(offset: u32) -> String {
    Ipv4Addr::from(u32::from(SERVICE_CIDR.0) + offset).to_string()
}

/// What other Services hold.
#[derive(Default)]
struct InUse {
    ips: Vec<String>,
    node_ports: Vec<i64>,
}

async fn in_use(store: &Store, resource: &Resource, except: &Value) -> ApiResult<InUse> {
    let range = store.range(&resource.prefix(None)).await?;
    let mut used = InUse::default();
    let same = |o: &Value| {
        o["metadata"]["namespace"] == except["metadata"]["namespace"]
            && o["metadata"]["name"] == except["metadata"]["name"]
    };
    for kv in &range.kvs {
        let service = from_kv(kv)?;
        if same(&service) {
            continue;
        }
        let spec = &service["spec"];
        for ip in spec["clusterIPs"].as_array().into_iter().flatten() {
            used.ips.extend(ip.as_str().map(String::from));
        }
        used.ips
            .extend(spec["clusterIP"].as_str().map(String::from));
        for port in spec["ports"].as_array().into_iter().flatten() {
            used.node_ports.extend(port["nodePort"].as_i64());
        }
    }
    Ok(used)
}

/// A pseudo-random number for where the search for a free value starts, so
/// dynamically allocated values rarely collide with ones users ask for.
fn random() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

/// A free address: dynamic ones come from above the first 256 addresses,
/// which Kubernetes leaves for addresses users pick; the whole range is the fallback.
fn free_ip(used: &[String]) -> Option<String> {
    let size = cidr_size();
    let lower = 256.min(size / 16).max(16);
    let upper = size - 1 - lower;
    let start = random() % upper;
    (0..upper)
        .map(|i| lower + (start + i) % upper)
        .chain(1..lower)
        .map(address)
        .find(|ip| !used.contains(ip))
}

fn free_node_port(used: &[i64]) -> Option<i64> {
    let size = NODE_PORTS.end() - NODE_PORTS.start() + 1;
    let start = i64::from(random()) % size;
    (0..size)
        .map(|i| NODE_PORTS.start() + (start + i) % size)
        .find(|p| !used.contains(p))
}

fn invalid(service: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        kind: "Service".into(),
        name: service["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .into(),
        causes,
    }
}

/// Keep what an update left out from the stored Service, as Kubernetes does
/// for a PUT without the allocated values.
fn carry_over(service: &mut Value, old: &Value) {
    let spec = &mut service["spec"];
    if spec["type"] != "ExternalName" && old["spec"]["type"] != "ExternalName" {
        for field in ["clusterIP", "clusterIPs"] {
            if spec[field].is_null() || spec[field] == "" {
                spec[field] = old["spec"][field].clone();
            }
        }
    }
    let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
    for port in spec["ports"].as_array_mut().into_iter().flatten() {
        if port["nodePort"].is_null()
            && let Some(previous) = old_ports.iter().find(|p| p["port"] == port["port"])
            && !previous["nodePort"].is_null()
        {
            port["nodePort"] = previous["nodePort"].clone();
        }
    }
}

/// Give a Service its cluster IP and node ports (on create, and on an
/// update that needs new ones); other kinds pass through. The returned
/// reservation must be held until the object is written.
pub async fn allocate(
    store: &Store,
    resource: &Resource,
    service: &mut Value,
    old: Option<&Value>,
) -> ApiResult<Option<Reservation>> {
    if resource.kind != "Service" || !resource.group.is_empty() {
        return Ok(None);
    }
    if let Some(old) = old {
        carry_over(service, old);
    }
    let guard = ALLOCATION.lock().await;
    let used = in_use(store, resource, service).await?;
    let mut causes = Vec::new();
    let spec = &mut service["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if kind != "ExternalName" {
        match spec["clusterIP"].as_str().filter(|ip| !ip.is_empty()) {
            Some("None") => {}
            Some(ip) => {
                let why = if offset(ip).is_none() {
                    Some(format!(
                        "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. \
                         The range of valid IPs is {}/{}",
                        SERVICE_CIDR.0, SERVICE_CIDR.1
                    ))
                } else if used.ips.iter().any(|u| u == ip) {
                    Some(format!(
                        "failed to allocate IP {ip}: provided IP is already allocated"
                    ))
                } else {
                    None
                };
                causes.extend(why.map(|why| Cause::invalid("spec.clusterIPs", &json!([ip]), why)));
            }
            None => match free_ip(&used.ips) {
                Some(ip) => spec["clusterIP"] = json!(ip),
                None => {
                    return Err(ApiError::Internal(
                        "failed to allocate a serviceIP: range is full".into(),
                    ));
                }
            },
        }
        if !spec["clusterIP"].is_null() {
            spec["clusterIPs"] = json!([spec["clusterIP"]]);
        }
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        let mut taken = used.node_ports;
        for (i, port) in spec["ports"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let field = format!("spec.ports[{i}].nodePort");
            match port["nodePort"].as_i64() {
                Some(p) if !NODE_PORTS.contains(&p) => causes.push(Cause::invalid(
                    field,
                    &port["nodePort"],
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORTS.start(),
                        NODE_PORTS.end()
                    ),
                )),
                Some(p) if taken.contains(&p) => causes.push(Cause::invalid(
                    field,
                    &port["nodePort"],
                    "provided port is already allocated",
                )),
                Some(p) => taken.push(p),
                None => match free_node_port(&taken) {
                    Some(p) => {
                        port["nodePort"] = json!(p);
                        taken.push(p);
                    }
                    None => {
                        return Err(ApiError::Internal(
                            "failed to allocate a nodePort: range is full".into(),
                        ));
                    }
                },
            }
        }
    }
    if !causes.is_empty() {
        return Err(invalid(service, causes));
    }
    Ok(Some(guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_values_skip_used_ones_and_stay_in_range() {
        let ip = free_ip(&[]).unwrap();
        let at = offset(&ip).unwrap();
        assert!(at >= 256 && at < cidr_size() - 1, "{ip}");
        assert_eq!(offset("10.96.0.0"), None);
        assert_eq!(offset("10.111.255.255"), None);
        assert_eq!(offset("10.112.0.1"), None);
        assert_eq!(offset("10.96.0.10"), Some(10));
        let ports: Vec<i64> = NODE_PORTS.filter(|p| *p != 31000).collect();
        assert_eq!(free_node_port(&ports), Some(31000));
    }

    #[test]
    fn updates_keep_allocated_values() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.3.4",
            "clusterIPs": ["10.96.3.4"], "ports": [{"port": 80, "nodePort": 30080}]}});
        let mut new = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        carry_over(&mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.96.3.4");
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
    }
}
