//! core/v1 Pod: defaults and validation as Kubernetes applies them, and the
//! columns `kubectl get pods` prints.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::set_default;
use crate::kinds::validation;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Ready", "string", 0),
    Column::new("Status", "string", 0),
    Column::new("Restarts", "string", 0),
    Column::new("Age", "string", 0),
    Column::new("IP", "string", 1),
    Column::new("Node", "string", 1),
    Column::new("Nominated Node", "string", 1),
    Column::new("Readiness Gates", "string", 1),
];

pub fn resource() -> Resource {
    Resource {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        has_status: true,
        subresources: &["log", "binding", "eviction", "exec"],
        tracks_generation: false,
        field_selectors: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        decode: decode_as::<Pod>,
        defaults,
        validate,
        table: TableDef {
            columns: COLUMNS,
            cells,
        },
        custom: None,
    }
}

const CONTAINER_LISTS: [&str; 2] = ["initContainers", "containers"];

/// The pod-spec defaults, shared with every kind that embeds a pod template.
pub fn spec_defaults(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(spec, "priority", json!(0));
    for list in CONTAINER_LISTS {
        for container in spec[list].as_array_mut().into_iter().flatten() {
            let image = container["image"].as_str().unwrap_or_default();
            let policy = if image_has_fixed_tag(image) {
                "IfNotPresent"
            } else {
                "Always"
            };
            set_default(container, "imagePullPolicy", json!(policy));
            set_default(
                container,
                "terminationMessagePath",
                json!("/dev/termination-log"),
            );
            set_default(container, "terminationMessagePolicy", json!("File"));
            set_default(container, "resources", json!({}));
            for port in container["ports"].as_array_mut().into_iter().flatten() {
                set_default(port, "protocol", json!("TCP"));
            }
        }
    }
}

fn defaults(pod: &mut Value) {
    spec_defaults(&mut pod["spec"]);
    let qos = qos_class(&pod["spec"]);
    let status = &mut pod["status"];
    set_default(status, "phase", json!("Pending"));
    set_default(status, "qosClass", json!(qos));
}

/// Kubernetes pulls `:latest` and untagged images every time; a digest or a
/// fixed tag only when missing.
fn image_has_fixed_tag(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag != "latest",
        None => false,
    }
}

fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = CONTAINER_LISTS
        .iter()
        .flat_map(|l| spec[*l].as_array().into_iter().flatten())
        .collect();
    let set = |c: &Value, kind: &str, res: &str| !c["resources"][kind][res].is_null();
    if containers.iter().all(|c| {
        !set(c, "requests", "cpu")
            && !set(c, "requests", "memory")
            && !set(c, "limits", "cpu")
            && !set(c, "limits", "memory")
    }) {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = &c["resources"]["limits"][*r];
            let request = &c["resources"]["requests"][*r];
            !limit.is_null() && (request.is_null() || request == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn validate(pod: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = validation::metadata(pod, validation::dns_subdomain);
    causes.extend(validate_spec(&pod["spec"], "spec"));
    if let Some(old) = old {
        causes.extend(immutable_spec(&old["spec"], &pod["spec"]));
    }
    causes
}

/// Validate a pod spec found at field path `at` (`spec`, or
/// `spec.template.spec` in the kinds that embed a pod template).
pub fn validate_spec(spec: &Value, at: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let containers = spec["containers"].as_array().filter(|c| !c.is_empty());
    if containers.is_none() {
        causes.push(Cause::required(format!("{at}.containers")));
    }
    let mut names: Vec<&str> = Vec::new();
    for list in CONTAINER_LISTS {
        for (i, container) in spec[list].as_array().into_iter().flatten().enumerate() {
            let at = format!("{at}.{list}[{i}]");
            match container["name"].as_str().filter(|n| !n.is_empty()) {
                None => causes.push(Cause::required(format!("{at}.name"))),
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
            if container["image"]
                .as_str()
                .is_none_or(|i| i.trim().is_empty())
            {
                causes.push(Cause::required(format!("{at}.image")));
            }
            for (j, port) in container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let number = port["containerPort"].as_i64().unwrap_or(0);
                if !(1..=65535).contains(&number) {
                    causes.push(Cause::invalid(
                        format!("{at}.ports[{j}].containerPort"),
                        &port["containerPort"],
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
            for (j, env) in container["env"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                if env["name"].as_str().is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("{at}.env[{j}].name")));
                }
            }
        }
    }
    if let Some(policy) = spec["restartPolicy"].as_str()
        && !["Always", "OnFailure", "Never"].contains(&policy)
    {
        causes.push(Cause::unsupported(
            format!("{at}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    causes
}

/// A running pod's spec may change only in container images, the active
/// deadline and added tolerations, as in Kubernetes.
fn immutable_spec(old: &Value, new: &Value) -> Option<Cause> {
    let mutable_removed = |spec: &Value| {
        let mut spec = spec.clone();
        if let Some(map) = spec.as_object_mut() {
            map.remove("activeDeadlineSeconds");
            map.remove("tolerations");
        }
        for list in CONTAINER_LISTS {
            for c in spec[list].as_array_mut().into_iter().flatten() {
                if let Some(c) = c.as_object_mut() {
                    c.remove("image");
                }
            }
        }
        spec
    };
    (mutable_removed(old) != mutable_removed(new)).then(|| {
        Cause::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`, \
             `spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or \
             `spec.tolerations` (only additions to existing tolerations)",
        )
    })
}

/// The STATUS column, following kubectl's reading of pod status: the most
/// telling container reason wins over the phase.
fn status_reason(pod: &Value) -> String {
    let status = &pod["status"];
    let mut reason = status["reason"]
        .as_str()
        .filter(|r| !r.is_empty())
        .or(status["phase"].as_str())
        .unwrap_or("Pending")
        .to_string();
    let mut initializing = false;
    let init_total = pod["spec"]["initContainers"].as_array().map_or(0, Vec::len);
    for (i, c) in status["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let terminated = &c["state"]["terminated"];
        let waiting = &c["state"]["waiting"];
        if terminated["exitCode"] == json!(0) {
            continue;
        }
        initializing = true;
        reason = if let Some(r) = terminated["reason"].as_str().filter(|r| !r.is_empty()) {
            format!("Init:{r}")
        } else if !terminated.is_null() {
            format!("Init:ExitCode:{}", terminated["exitCode"])
        } else if let Some(r) = waiting["reason"]
            .as_str()
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{init_total}")
        };
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in status["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .rev()
        {
            let state = &c["state"];
            if let Some(r) = state["waiting"]["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
            {
                reason = r.to_string();
            } else if let Some(r) = state["terminated"]["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
            {
                reason = r.to_string();
            } else if !state["terminated"].is_null() {
                let t = &state["terminated"];
                reason = match t["signal"].as_i64().filter(|s| *s != 0) {
                    Some(signal) => format!("Signal:{signal}"),
                    None => format!("ExitCode:{}", t["exitCode"]),
                };
            } else if c["ready"] == json!(true) && !state["running"].is_null() {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            reason = if ready { "Running" } else { "NotReady" }.to_string();
        }
    }
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        reason = if status["reason"] == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

fn restarts(pod: &Value, now: jiff::Timestamp) -> String {
    let mut count = 0;
    let mut last: Option<i64> = None;
    for c in pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        count += c["restartCount"].as_i64().unwrap_or(0);
        if let Some(ago) = table::since(&c["lastState"]["terminated"]["finishedAt"], now) {
            last = Some(last.map_or(ago, |l: i64| l.min(ago)));
        }
    }
    match last {
        Some(ago) if count > 0 => format!("{count} ({} ago)", table::human_duration(ago)),
        _ => count.to_string(),
    }
}

fn cells(pod: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let total = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["ready"] == json!(true))
        .count();
    let or_none = |v: &Value| {
        v.as_str()
            .filter(|s| !s.is_empty())
            .map_or_else(|| json!("<none>"), |s| json!(s))
    };
    vec![
        pod["metadata"]["name"].clone(),
        json!(format!("{ready}/{total}")),
        json!(status_reason(pod)),
        json!(restarts(pod, now)),
        table::age(pod, now),
        or_none(&pod["status"]["podIP"]),
        or_none(&pod["spec"]["nodeName"]),
        or_none(&pod["status"]["nominatedNodeName"]),
        json!("<none>"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_prefers_container_reasons() {
        let pod = json!({"spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running",
            "containerStatuses": [{"name": "c", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(status_reason(&pod), "CrashLoopBackOff");
        let running = json!({"spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running",
            "containerStatuses": [{"name": "c", "ready": true, "state": {"running": {}}}]}});
        assert_eq!(status_reason(&running), "Running");
        let mut deleting = running.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(status_reason(&deleting), "Terminating");
    }

    #[test]
    fn defaults_and_validation() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "file:///x.wasm", "ports": [{"containerPort": 80}]}]}});
        defaults(&mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(pod["status"]["phase"], "Pending");
        assert!(validate(&pod, None).is_empty());

        let bad = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
            "restartPolicy": "Sometimes"}});
        let fields: Vec<String> = validate(&bad, None).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            vec!["spec.containers[0].image", "spec.restartPolicy"]
        );
    }

    #[test]
    fn spec_is_immutable_but_image() {
        let old = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a"}]}});
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("b");
        assert!(validate(&new, Some(&old)).is_empty());
        new["spec"]["containers"][0]["args"] = json!(["x"]);
        assert_eq!(validate(&new, Some(&old))[0].field, "spec");
    }
}
