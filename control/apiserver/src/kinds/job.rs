//! batch/v1 Job: defaults including the generated selector, the checks
//! Kubernetes makes, and the columns of `kubectl get jobs`.

use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::kinds::template::{self, Rules, non_negative};
use crate::kinds::validation;
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Status", "string", 0),
    Column::new("Completions", "string", 0),
    Column::new("Duration", "string", 0),
    Column::new("Age", "string", 0),
    Column::new("Containers", "string", 1),
    Column::new("Images", "string", 1),
    Column::new("Selector", "string", 1),
];

pub const RULES: Rules = Rules {
    restart_policies: &["OnFailure", "Never"],
    noun: "job",
};

/// The label carrying the Job's uid, which its generated selector selects.
const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

pub fn resource() -> Resource {
    Resource {
        has_status: true,
        categories: &["all"],
        tracks_generation: true,
        field_selectors: &["status.successful"],
        defaults,
        validate,
        ..common::base(
            "batch",
            "v1",
            "Job",
            ("jobs", "job"),
            decode_as::<Job>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

/// Defaults of a Job spec at `spec`, shared with CronJob's job template.
pub fn spec_defaults(spec: &mut Value) {
    if spec["completions"].is_null() && spec["parallelism"].is_null() {
        spec["completions"] = json!(1);
    }
    set_default(spec, "parallelism", json!(1));
    let backoff = if spec["backoffLimitPerIndex"].is_null() {
        6
    } else {
        i64::from(i32::MAX)
    };
    set_default(spec, "backoffLimit", json!(backoff));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    let replacement = if spec["podFailurePolicy"].is_null() {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    set_default(spec, "podReplacementPolicy", json!(replacement));
    template::defaults(&mut spec["template"]);
}

/// Unless the user manages the selector, Kubernetes labels the pods with the
/// Job's uid and name and selects on the uid.
fn defaults(job: &mut Value) {
    let uid = job["metadata"]["uid"].clone();
    let name = job["metadata"]["name"].clone();
    let spec = &mut job["spec"];
    spec_defaults(spec);
    if spec["manualSelector"] == json!(true) {
        return;
    }
    spec["manualSelector"] = json!(false);
    if uid.is_string() {
        let labels = &mut spec["template"]["metadata"]["labels"];
        for (key, value) in [
            (CONTROLLER_UID, &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            set_default(labels, key, value.clone());
        }
        set_default(
            spec,
            "selector",
            json!({"matchLabels": {CONTROLLER_UID: uid}}),
        );
    }
}

/// Checks of a Job spec at field path `at`, shared with CronJob.
pub fn validate_spec(spec: &Value, at: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    for field in [
        "parallelism",
        "completions",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        causes.extend(non_negative(&spec[field], &format!("{at}.{field}")));
    }
    if let Some(deadline) = spec["activeDeadlineSeconds"].as_i64()
        && deadline <= 0
    {
        causes.push(Cause::invalid(
            format!("{at}.activeDeadlineSeconds"),
            &spec["activeDeadlineSeconds"],
            "must be greater than 0",
        ));
    }
    match spec["completionMode"].as_str() {
        Some("Indexed") if spec["completions"].is_null() => {
            causes.push(Cause::required(format!("{at}.completions")))
        }
        Some(mode) if !["NonIndexed", "Indexed"].contains(&mode) => {
            causes.push(Cause::unsupported(
                format!("{at}.completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ))
        }
        _ => {}
    }
    causes.extend(template::validate_template(
        &spec["template"],
        &format!("{at}.template"),
        &RULES,
    ));
    causes
}

fn validate(job: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = validation::metadata(job, validation::dns_subdomain);
    let spec = &job["spec"];
    causes.extend(validate_spec(spec, "spec"));
    let selector = &spec["selector"];
    if spec["manualSelector"] != json!(true) {
        let generated = &selector["matchLabels"][CONTROLLER_UID];
        if !selector.is_null() && *generated != job["metadata"]["uid"] {
            causes.push(Cause::invalid(
                "spec.selector",
                selector,
                "`selector` not auto-generated",
            ));
        }
    } else if selector.is_null() {
        causes.push(Cause::required("spec.selector"));
    }
    if !selector.is_null() {
        causes.extend(common::validate_selector(selector, "spec.selector"));
        if !common::selector_matches(selector, &spec["template"]["metadata"]["labels"]) {
            causes.push(Cause::invalid(
                "spec.template.metadata.labels",
                &spec["template"]["metadata"]["labels"],
                "`selector` does not match template `labels`",
            ));
        }
    }
    if let Some(old) = old {
        for (path, field) in [
            (["spec", "selector"], "spec.selector"),
            (["spec", "template"], "spec.template"),
            (["spec", "completionMode"], "spec.completionMode"),
        ] {
            causes.extend(common::immutable(job, old, &path, field));
        }
    }
    causes
}

fn has_condition(job: &Value, kind: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// The STATUS column, in kubectl's order of precedence.
fn status(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if !job["metadata"]["deletionTimestamp"].is_null() {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn completions(spec: &Value, status: &Value) -> String {
    let succeeded = status["succeeded"].as_i64().unwrap_or(0);
    match (spec["completions"].as_i64(), spec["parallelism"].as_i64()) {
        (Some(total), _) => format!("{succeeded}/{total}"),
        (None, Some(parallel)) if parallel > 1 => format!("{succeeded}/1 of {parallel}"),
        _ => format!("{succeeded}/1"),
    }
}

fn duration(status: &Value, now: jiff::Timestamp) -> String {
    let Some(started) = table::since(&status["startTime"], now) else {
        return String::new();
    };
    match table::since(&status["completionTime"], now) {
        Some(finished) => table::human_duration(started - finished),
        None => table::human_duration(started),
    }
}

fn cells(job: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let [containers, images, selector] = template::wide_cells(job);
    vec![
        job["metadata"]["name"].clone(),
        json!(status(job)),
        json!(completions(&job["spec"], &job["status"])),
        json!(duration(&job["status"], now)),
        table::age(job, now),
        containers,
        images,
        selector,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pi() -> Value {
        json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {
            "containers": [{"name": "pi", "image": "i"}], "restartPolicy": "Never"}}}})
    }

    #[test]
    fn defaults_generate_the_selector() {
        let mut job = pi();
        defaults(&mut job);
        let spec = &job["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["manualSelector"], false);
        assert_eq!(spec["selector"]["matchLabels"][CONTROLLER_UID], "u-1");
        assert_eq!(spec["template"]["metadata"]["labels"]["job-name"], "pi");
        assert!(
            validate(&job, None).is_empty(),
            "{:?}",
            validate(&job, None)
        );
    }

    #[test]
    fn restart_policy_must_be_on_failure_or_never() {
        let mut job = pi();
        job["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        defaults(&mut job);
        let causes = validate(&job, None);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template.spec.restartPolicy");
        assert_eq!(causes[0].reason, "FieldValueNotSupported");
        let mut unset = pi();
        unset["spec"]["template"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("restartPolicy");
        defaults(&mut unset);
        let causes = validate(&unset, None);
        assert_eq!(causes[0].field, "spec.template.spec.restartPolicy");
    }

    #[test]
    fn hand_written_selector_needs_manual_selector() {
        let mut job = pi();
        job["spec"]["selector"] = json!({"matchLabels": {"app": "pi"}});
        job["spec"]["template"]["metadata"]["labels"] = json!({"app": "pi"});
        defaults(&mut job);
        assert_eq!(validate(&job, None)[0].field, "spec.selector");
        let mut manual = pi();
        manual["spec"]["manualSelector"] = json!(true);
        manual["spec"]["selector"] = json!({"matchLabels": {"app": "pi"}});
        manual["spec"]["template"]["metadata"]["labels"] = json!({"app": "pi"});
        defaults(&mut manual);
        assert!(validate(&manual, None).is_empty());
    }

    #[test]
    fn table_cells() {
        let mut job = pi();
        defaults(&mut job);
        job["status"] = json!({"succeeded": 1, "startTime": "2026-01-01T00:00:00Z",
            "completionTime": "2026-01-01T00:00:07Z",
            "conditions": [{"type": "Complete", "status": "True"}]});
        let cells = cells(&job, jiff::Timestamp::now());
        assert_eq!(cells.len(), COLUMNS.len());
        assert_eq!(
            &cells[1..4],
            &[json!("Complete"), json!("1/1"), json!("7s")]
        );
        assert_eq!(cells[7], "batch.kubernetes.io/controller-uid=u-1");
    }
}
