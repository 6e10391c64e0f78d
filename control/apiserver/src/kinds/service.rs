//! core/v1 Service. Cluster IPs and node ports are handed out by
//! [`crate::kinds::allocate`], which needs the store.

use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::kinds::validation;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Type", "string", 0),
    Column::new("Cluster-IP", "string", 0),
    Column::new("External-IP", "string", 0),
    Column::new("Port(s)", "string", 0),
    Column::new("Age", "string", 0),
    Column::new("Selector", "string", 1),
];

const TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];

pub fn resource() -> Resource {
    Resource {
        short_names: &["svc"],
        categories: &["all"],
        has_status: true,
        field_selectors: &["spec.clusterIP", "spec.type"],
        defaults,
        validate,
        ..common::base(
            "",
            "v1",
            "Service",
            ("services", "service"),
            decode_as::<Service>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn defaults(svc: &mut Value) {
    let spec = &mut svc["spec"];
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    if spec["sessionAffinity"] == "ClientIP" {
        set_default(
            spec,
            "sessionAffinityConfig",
            json!({"clientIP": {"timeoutSeconds": 10800}}),
        );
    }
    let kind = spec["type"].as_str().unwrap_or_default().to_string();
    for port in spec["ports"].as_array_mut().into_iter().flatten() {
        set_default(port, "protocol", json!("TCP"));
        if port["targetPort"].is_null() {
            port["targetPort"] = port["port"].clone();
        }
    }
    if kind != "ExternalName" {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    set_default(&mut svc["status"], "loadBalancer", json!({}));
}

/// Port names of containers (targetPort by name) are IANA service names.
fn is_iana_svc_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn validate_ports(spec: &Value, causes: &mut Vec<Cause>) {
    let kind = spec["type"].as_str().unwrap_or_default();
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    let headless = spec["clusterIP"] == "None";
    if ports.is_empty() && kind != "ExternalName" && !headless {
        causes.push(Cause::required("spec.ports"));
    }
    let mut names: Vec<&str> = Vec::new();
    let mut seen: Vec<(i64, &str)> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        match port["name"].as_str().filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => causes.push(Cause::required(format!("{at}.name"))),
            None => {}
            Some(name) => {
                causes.extend(validation::dns_label(&format!("{at}.name"), name));
                if names.contains(&name) {
                    causes.push(Cause {
                        reason: "FieldValueDuplicate",
                        field: format!("{at}.name"),
                        message: format!("Duplicate value: {name:?}"),
                    });
                }
                names.push(name);
            }
        }
        let number = port["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&number) {
            causes.push(Cause::invalid(
                format!("{at}.port"),
                &port["port"],
                "must be between 1 and 65535, inclusive",
            ));
        }
        let protocol = port["protocol"].as_str().unwrap_or("TCP");
        if !PROTOCOLS.contains(&protocol) {
            causes.push(Cause::unsupported(
                format!("{at}.protocol"),
                protocol,
                &PROTOCOLS,
            ));
        }
        if seen.contains(&(number, protocol)) {
            causes.push(Cause {
                reason: "FieldValueDuplicate",
                field: at.clone(),
                message: format!("Duplicate value: {{port: {number}, protocol: {protocol:?}}}"),
            });
        }
        seen.push((number, protocol));
        match &port["targetPort"] {
            Value::Number(n) if !(1..=65535).contains(&n.as_i64().unwrap_or(0)) => {
                causes.push(Cause::invalid(
                    format!("{at}.targetPort"),
                    &port["targetPort"],
                    "must be between 1 and 65535, inclusive",
                ));
            }
            Value::String(name) if !is_iana_svc_name(name) => causes.push(Cause::invalid(
                format!("{at}.targetPort"),
                &port["targetPort"],
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), \
                 at least one letter, and at most 15 characters",
            )),
            _ => {}
        }
        if !port["nodePort"].is_null() && (kind == "ClusterIP" || kind == "ExternalName") {
            causes.push(Cause::forbidden(
                format!("{at}.nodePort"),
                format!("may not be used when `type` is '{kind}'"),
            ));
        }
    }
}

fn validate(svc: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = validation::metadata(svc, validation::dns1035_label);
    let spec = &svc["spec"];
    let kind = spec["type"].as_str().unwrap_or_default();
    if !TYPES.contains(&kind) {
        causes.push(Cause::unsupported("spec.type", kind, &TYPES));
    }
    if kind == "ExternalName" {
        match spec["externalName"].as_str().filter(|n| !n.is_empty()) {
            None => causes.push(Cause::required("spec.externalName")),
            Some(name) => causes.extend(validation::dns_subdomain(
                "spec.externalName",
                name.trim_end_matches('.'),
            )),
        }
    }
    validate_ports(spec, &mut causes);
    let as_labels = json!({"metadata": {"name": "x", "labels": spec["selector"]}});
    for cause in validation::metadata(&as_labels, |_, _| None) {
        causes.push(Cause {
            field: "spec.selector".into(),
            ..cause
        });
    }
    if let Some(affinity) = spec["sessionAffinity"].as_str()
        && !["None", "ClientIP"].contains(&affinity)
    {
        causes.push(Cause::unsupported(
            "spec.sessionAffinity",
            affinity,
            &["ClientIP", "None"],
        ));
    }
    if let Some(old) = old
        && let (Some(before), Some(now)) = (
            old["spec"]["clusterIP"]
                .as_str()
                .filter(|ip| !ip.is_empty()),
            spec["clusterIP"].as_str().filter(|ip| !ip.is_empty()),
        )
        && before != now
    {
        causes.push(Cause::invalid(
            "spec.clusterIPs[0]",
            &spec["clusterIP"],
            "may not change once set",
        ));
    }
    causes
}

fn external_ip(spec: &Value, status: &Value) -> String {
    let mut ips: Vec<String> = spec["externalIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.as_str().map(String::from))
        .collect();
    match spec["type"].as_str().unwrap_or_default() {
        "ExternalName" => spec["externalName"].as_str().unwrap_or_default().into(),
        "LoadBalancer" => {
            let ingress = status["loadBalancer"]["ingress"].as_array();
            let mut found: Vec<String> = ingress
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
                .map(String::from)
                .collect();
            found.append(&mut ips);
            if found.is_empty() {
                "<pending>".into()
            } else {
                found.join(",")
            }
        }
        _ if ips.is_empty() => "<none>".into(),
        _ => ips.join(","),
    }
}

fn ports(spec: &Value) -> String {
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n > 0) {
                Some(node) => format!("{}:{node}/{protocol}", p["port"]),
                None => format!("{}/{protocol}", p["port"]),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

fn cells(svc: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let spec = &svc["spec"];
    vec![
        svc["metadata"]["name"].clone(),
        spec["type"].clone(),
        common::or_none(&spec["clusterIP"]),
        json!(external_ip(spec, &svc["status"])),
        json!(ports(spec)),
        table::age(svc, now),
        common::selector_cell(common::map_selector_string(&spec["selector"])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
            "ports": [{"port": 80}]}})
    }

    #[test]
    fn defaults_like_kubernetes() {
        let mut svc = web();
        defaults(&mut svc);
        let spec = &svc["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["ports"][0]["targetPort"], 80);
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert!(validate(&svc, None).is_empty());
    }

    #[test]
    fn port_rules() {
        let mut svc = web();
        svc["spec"]["ports"] = json!([{"port": 80}, {"port": 70000, "name": "b"},
            {"port": 80, "name": "c", "nodePort": 30001}]);
        defaults(&mut svc);
        let fields: Vec<String> = validate(&svc, None).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            vec![
                "spec.ports[0].name",
                "spec.ports[1].port",
                "spec.ports[1].targetPort",
                "spec.ports[2]",
                "spec.ports[2].nodePort"
            ]
        );
        let mut nameless =
            json!({"metadata": {"name": "9lives"}, "spec": {"type": "ExternalName"}});
        defaults(&mut nameless);
        let fields: Vec<String> = validate(&nameless, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, vec!["metadata.name", "spec.externalName"]);
    }

    #[test]
    fn cluster_ip_may_not_change() {
        let mut old = web();
        defaults(&mut old);
        old["spec"]["clusterIP"] = json!("10.96.0.20");
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.96.0.21");
        assert_eq!(validate(&new, Some(&old))[0].field, "spec.clusterIPs[0]");
    }

    #[test]
    fn table_cells() {
        let mut svc = web();
        svc["spec"]["type"] = json!("NodePort");
        svc["spec"]["clusterIP"] = json!("10.96.0.20");
        svc["spec"]["ports"] = json!([{"port": 80, "nodePort": 30080, "protocol": "TCP"},
            {"port": 53, "protocol": "UDP"}]);
        let cells = cells(&svc, jiff::Timestamp::now());
        assert_eq!(cells.len(), COLUMNS.len());
        assert_eq!(
            &cells[1..5],
            &[
                json!("NodePort"),
                json!("10.96.0.20"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP")
            ]
        );
        assert_eq!(cells[6], "app=web");
        svc["spec"]["type"] = json!("LoadBalancer");
        assert_eq!(cells_of(&svc)[3], "<pending>");
    }

    fn cells_of(svc: &Value) -> Vec<Value> {
        cells(svc, jiff::Timestamp::now())
    }
}
