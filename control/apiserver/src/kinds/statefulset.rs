//! apps/v1 StatefulSet.

use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::kinds::template::{self, Rules};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Ready", "string", 0),
    Column::new("Age", "string", 0),
    Column::new("Containers", "string", 1),
    Column::new("Images", "string", 1),
];

const RULES: Rules = Rules {
    restart_policies: &["Always"],
    noun: "statefulset",
};

/// The spec fields a StatefulSet update may change, as in Kubernetes.
const MUTABLE: [&str; 7] = [
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
    "revisionHistoryLimit",
];

pub fn resource() -> Resource {
    Resource {
        short_names: &["sts"],
        categories: &["all"],
        has_status: true,
        subresources: &["scale"],
        tracks_generation: true,
        defaults,
        validate,
        ..common::base(
            "apps",
            "v1",
            "StatefulSet",
            ("statefulsets", "statefulset"),
            decode_as::<StatefulSet>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn defaults(sts: &mut Value) {
    let spec = &mut sts["spec"];
    set_default(spec, "replicas", json!(1));
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "updateStrategy", json!({}));
    let strategy = &mut spec["updateStrategy"];
    set_default(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        set_default(strategy, "rollingUpdate", json!({}));
        set_default(&mut strategy["rollingUpdate"], "partition", json!(0));
    }
    set_default(
        spec,
        "persistentVolumeClaimRetentionPolicy",
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
    for claim in spec["volumeClaimTemplates"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        set_default(&mut claim["spec"], "volumeMode", json!("Filesystem"));
    }
    template::defaults(&mut spec["template"]);
}

fn validate(sts: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = template::validate(sts, old, &RULES);
    let spec = &sts["spec"];
    // Kubernetes 1.32 lets serviceName be empty; Skiff keeps the older rule
    // (its pods' stable network names hang off the governing Service).
    if spec["serviceName"].as_str().is_none_or(str::is_empty) {
        causes.push(Cause::required("spec.serviceName"));
    }
    if let Some(policy) = spec["podManagementPolicy"].as_str()
        && !["OrderedReady", "Parallel"].contains(&policy)
    {
        causes.push(Cause::unsupported(
            "spec.podManagementPolicy",
            policy,
            &["OrderedReady", "Parallel"],
        ));
    }
    if let Some(kind) = spec["updateStrategy"]["type"].as_str()
        && !["RollingUpdate", "OnDelete"].contains(&kind)
    {
        causes.push(Cause::unsupported(
            "spec.updateStrategy.type",
            kind,
            &["OnDelete", "RollingUpdate"],
        ));
    }
    if let Some(old) = old {
        let fixed = |spec: &Value| {
            let mut spec = spec.clone();
            if let Some(map) = spec.as_object_mut() {
                for field in MUTABLE.iter().chain(&["selector"]) {
                    map.remove(*field);
                }
            }
            spec
        };
        if fixed(&old["spec"]) != fixed(spec) {
            causes.push(Cause::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', \
                 'template', 'updateStrategy', 'revisionHistoryLimit', \
                 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
    causes
}

fn cells(sts: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let ready = format!(
        "{}/{}",
        sts["status"]["readyReplicas"].as_i64().unwrap_or(0),
        sts["spec"]["replicas"].as_i64().unwrap_or(0)
    );
    let [containers, images] = common::containers_and_images(&sts["spec"]["template"]["spec"]);
    vec![
        sts["metadata"]["name"].clone(),
        json!(ready),
        table::age(sts, now),
        containers,
        images,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validation_and_cells() {
        let mut sts = json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        defaults(&mut sts);
        assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
            0
        );
        assert!(validate(&sts, None).is_empty());
        let mut scaled = sts.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert!(validate(&scaled, Some(&sts)).is_empty());
        scaled["spec"]["serviceName"] = json!("other");
        assert_eq!(validate(&scaled, Some(&sts))[0].field, "spec");
        assert_eq!(cells(&sts, jiff::Timestamp::now())[1], "0/1");
        let mut nameless = sts.clone();
        nameless["spec"]["serviceName"] = json!("");
        assert_eq!(validate(&nameless, None)[0].field, "spec.serviceName");
    }
}
