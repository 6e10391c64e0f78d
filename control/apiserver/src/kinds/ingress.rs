//! networking.k8s.io/v1 Ingress and IngressClass.

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::{common, validation};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Class", "string", 0),
    Column::new("Hosts", "string", 0),
    Column::new("Address", "string", 0),
    Column::new("Ports", "string", 0),
    Column::new("Age", "string", 0),
];

const CLASS_COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Controller", "string", 0),
    Column::new("Parameters", "string", 0),
    Column::new("Age", "string", 0),
];

const PATH_TYPES: [&str; 3] = ["Exact", "Prefix", "ImplementationSpecific"];

pub fn ingress() -> Resource {
    Resource {
        short_names: &["ing"],
        has_status: true,
        tracks_generation: true,
        validate,
        ..common::base(
            "networking.k8s.io",
            "v1",
            "Ingress",
            ("ingresses", "ingress"),
            decode_as::<Ingress>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

pub fn ingress_class() -> Resource {
    Resource {
        namespaced: false,
        tracks_generation: true,
        validate: class_validate,
        ..common::base(
            "networking.k8s.io",
            "v1",
            "IngressClass",
            ("ingressclasses", "ingressclass"),
            decode_as::<IngressClass>,
            TableDef {
                columns: CLASS_COLUMNS,
                cells: class_cells,
            },
        )
    }
}

fn validate_backend(backend: &Value, at: &str, causes: &mut Vec<Cause>) {
    let service = &backend["service"];
    match (service.is_null(), backend["resource"].is_null()) {
        (true, true) => causes.push(Cause::invalid(
            at,
            backend,
            "one backend (service or resource) must be specified",
        )),
        (false, false) => causes.push(Cause::invalid(
            at,
            backend,
            "cannot set both service and resource backends",
        )),
        (false, true) => {
            if service["name"].as_str().is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("{at}.service.name")));
            }
            let port = &service["port"];
            match (port["number"].as_i64(), port["name"].as_str()) {
                (Some(_), Some(_)) => causes.push(Cause::invalid(
                    format!("{at}.service.port"),
                    port,
                    "cannot set both port name & port number",
                )),
                (Some(n), None) if !(1..=65535).contains(&n) => causes.push(Cause::invalid(
                    format!("{at}.service.port.number"),
                    &port["number"],
                    "must be between 1 and 65535, inclusive",
                )),
                (None, None) => causes.push(Cause::required(format!("{at}.service.port"))),
                _ => {}
            }
        }
        (true, false) => {}
    }
}

fn validate(ing: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(ing, None);
    let spec = &ing["spec"];
    if !spec["defaultBackend"].is_null() {
        validate_backend(&spec["defaultBackend"], "spec.defaultBackend", &mut causes);
    }
    let rules = spec["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() && spec["defaultBackend"].is_null() {
        causes.push(Cause::invalid(
            "spec",
            spec,
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        if let Some(host) = rule["host"].as_str() {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            causes.extend(validation::dns_subdomain(
                &format!("spec.rules[{i}].host"),
                bare,
            ));
        }
        for (j, path) in rule["http"]["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("spec.rules[{i}].http.paths[{j}]");
            match path["pathType"].as_str() {
                None => causes.push(Cause::required(format!("{at}.pathType"))),
                Some(kind) if !PATH_TYPES.contains(&kind) => causes.push(Cause::unsupported(
                    format!("{at}.pathType"),
                    kind,
                    &PATH_TYPES,
                )),
                Some("Exact" | "Prefix")
                    if !path["path"].as_str().unwrap_or_default().starts_with('/') =>
                {
                    causes.push(Cause::invalid(
                        format!("{at}.path"),
                        &path["path"],
                        "must be an absolute path",
                    ))
                }
                _ => {}
            }
            validate_backend(&path["backend"], &format!("{at}.backend"), &mut causes);
        }
    }
    causes
}

fn cells(ing: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let spec = &ing["spec"];
    let hosts: Vec<String> = spec["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            r["host"]
                .as_str()
                .filter(|h| !h.is_empty())
                .map(String::from)
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else {
        common::join_limited(&hosts, 4, ",")
    };
    let address: Vec<&str> = ing["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
        .collect();
    let ports = if spec["tls"].as_array().is_some_and(|t| !t.is_empty()) {
        "80, 443"
    } else {
        "80"
    };
    vec![
        ing["metadata"]["name"].clone(),
        common::or_none(&spec["ingressClassName"]),
        json!(hosts),
        json!(address.join(",")),
        json!(ports),
        table::age(ing, now),
    ]
}

fn class_validate(class: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(class, None);
    match class["spec"]["controller"]
        .as_str()
        .filter(|c| !c.is_empty())
    {
        None => causes.push(Cause::required("spec.controller")),
        Some(controller) => {
            let domain = controller.split('/').next().unwrap_or_default();
            if !controller.contains('/') || validation::dns_subdomain("", domain).is_some() {
                causes.push(Cause::invalid(
                    "spec.controller",
                    &class["spec"]["controller"],
                    "must be a domain-prefixed path (such as \"acme.io/foo\")",
                ));
            }
        }
    }
    if let Some(old) = old {
        causes.extend(common::immutable(
            class,
            old,
            &["spec", "controller"],
            "spec.controller",
        ));
    }
    causes
}

fn class_cells(class: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let params = &class["spec"]["parameters"];
    let parameters = if params.is_null() {
        "<none>".to_string()
    } else {
        let kind = params["kind"].as_str().unwrap_or_default();
        let kind = match params["apiGroup"].as_str() {
            Some(group) => format!("{kind}.{group}"),
            None => kind.to_string(),
        };
        format!("{kind}/{}", params["name"].as_str().unwrap_or_default())
    };
    vec![
        class["metadata"]["name"].clone(),
        class["spec"]["controller"].clone(),
        json!(parameters),
        table::age(class, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_rules_and_cells() {
        let ing = json!({"metadata": {"name": "web"}, "spec": {"ingressClassName": "nginx",
            "tls": [{"hosts": ["a.example.com"]}],
            "rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
        assert!(validate(&ing, None).is_empty());
        let cells = cells(&ing, jiff::Timestamp::now());
        assert_eq!(
            &cells[1..5],
            &[
                json!("nginx"),
                json!("a.example.com"),
                json!(""),
                json!("80, 443")
            ]
        );
        let bad = json!({"metadata": {"name": "web"}, "spec": {"rules": [{"http": {"paths": [
            {"path": "api", "pathType": "Exact", "backend": {"service": {"name": "web", "port": {}}}}]}}]}});
        let fields: Vec<String> = validate(&bad, None).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            vec![
                "spec.rules[0].http.paths[0].path",
                "spec.rules[0].http.paths[0].backend.service.port"
            ]
        );
    }

    #[test]
    fn class_rules_and_cells() {
        let class = json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}}});
        assert!(class_validate(&class, None).is_empty());
        assert_eq!(
            class_cells(&class, jiff::Timestamp::now())[2],
            "IngressParameters.k8s.example.com/p"
        );
        let bad = json!({"metadata": {"name": "x"}, "spec": {"controller": "nginx"}});
        assert_eq!(class_validate(&bad, None)[0].field, "spec.controller");
    }
}
