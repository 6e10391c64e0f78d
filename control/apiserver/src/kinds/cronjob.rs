//! batch/v1 CronJob.

use k8s_openapi::api::batch::v1::CronJob;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::common::{self, set_default};
use crate::kinds::template::non_negative;
use crate::kinds::{job, validation};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const COLUMNS: &[Column] = &[
    table::NAME,
    Column::new("Schedule", "string", 0),
    Column::new("Timezone", "string", 0),
    Column::new("Suspend", "boolean", 0),
    Column::new("Active", "integer", 0),
    Column::new("Last Schedule", "string", 0),
    Column::new("Age", "string", 0),
    Column::new("Containers", "string", 1),
    Column::new("Images", "string", 1),
    Column::new("Selector", "string", 1),
];

/// Job names get an 11-character suffix, so CronJob names stay short.
const MAX_NAME: usize = 52;

pub fn resource() -> Resource {
    Resource {
        short_names: &["cj"],
        categories: &["all"],
        has_status: true,
        tracks_generation: true,
        defaults,
        validate,
        ..common::base(
            "batch",
            "v1",
            "CronJob",
            ("cronjobs", "cronjob"),
            decode_as::<CronJob>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn defaults(cj: &mut Value) {
    let spec = &mut cj["spec"];
    set_default(spec, "concurrencyPolicy", json!("Allow"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    if spec["jobTemplate"].is_object() {
        job::spec_defaults(&mut spec["jobTemplate"]["spec"]);
    }
}

fn validate(cj: &Value, _old: Option<&Value>) -> Vec<Cause> {
    let mut causes = validation::metadata(cj, validation::dns_subdomain);
    let name = &cj["metadata"]["name"];
    if name.as_str().is_some_and(|n| n.len() > MAX_NAME) {
        causes.push(Cause::invalid(
            "metadata.name",
            name,
            format!("must be no more than {MAX_NAME} characters"),
        ));
    }
    let spec = &cj["spec"];
    match spec["schedule"].as_str() {
        None | Some("") => causes.push(Cause::required("spec.schedule")),
        Some(schedule) => {
            if let Err(why) = skiff_cron::Schedule::parse(schedule) {
                causes.push(Cause::invalid("spec.schedule", &spec["schedule"], why));
            }
        }
    }
    if let Some(zone) = spec["timeZone"].as_str() {
        let why = if zone.is_empty() {
            Some("timeZone must be nil or non-empty string".to_string())
        } else if zone.eq_ignore_ascii_case("local") {
            Some("timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones".into())
        } else if jiff::tz::TimeZone::get(zone).is_err() {
            Some(format!("unknown time zone {zone}"))
        } else {
            None
        };
        causes.extend(why.map(|why| Cause::invalid("spec.timeZone", &spec["timeZone"], why)));
    }
    if let Some(policy) = spec["concurrencyPolicy"].as_str()
        && !["Allow", "Forbid", "Replace"].contains(&policy)
    {
        causes.push(Cause::unsupported(
            "spec.concurrencyPolicy",
            policy,
            &["Allow", "Forbid", "Replace"],
        ));
    }
    for field in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        causes.extend(non_negative(&spec[field], &format!("spec.{field}")));
    }
    let job_spec = &spec["jobTemplate"]["spec"];
    if job_spec.is_null() {
        causes.push(Cause::required("spec.jobTemplate.spec"));
    } else {
        causes.extend(job::validate_spec(job_spec, "spec.jobTemplate.spec"));
    }
    causes
}

fn cells(cj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let spec = &cj["spec"];
    let suspend = match spec["suspend"].as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last = table::since(&cj["status"]["lastScheduleTime"], now)
        .map_or_else(|| "<none>".to_string(), table::human_duration);
    let job_spec = &spec["jobTemplate"]["spec"];
    let [containers, images] = common::containers_and_images(&job_spec["template"]["spec"]);
    vec![
        cj["metadata"]["name"].clone(),
        spec["schedule"].clone(),
        common::or_none(&spec["timeZone"]),
        json!(suspend),
        json!(cj["status"]["active"].as_array().map_or(0, Vec::len)),
        json!(last),
        table::age(cj, now),
        containers,
        images,
        common::selector_cell(common::selector_string(&job_spec["selector"])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nightly() -> Value {
        json!({"metadata": {"name": "nightly"}, "spec": {"schedule": "0 3 * * *",
            "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "c", "image": "i"}], "restartPolicy": "OnFailure"}}}}}})
    }

    #[test]
    fn defaults_and_cells() {
        let mut cj = nightly();
        defaults(&mut cj);
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
        assert_eq!(cj["spec"]["jobTemplate"]["spec"]["backoffLimit"], 6);
        assert!(validate(&cj, None).is_empty(), "{:?}", validate(&cj, None));
        let cells = cells(&cj, jiff::Timestamp::now());
        assert_eq!(cells.len(), COLUMNS.len());
        assert_eq!(
            &cells[1..6],
            &[
                json!("0 3 * * *"),
                json!("<none>"),
                json!("False"),
                json!(0),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn schedule_zone_and_restart_policy_are_checked() {
        let mut cj = nightly();
        cj["spec"]["schedule"] = json!("every day");
        cj["spec"]["timeZone"] = json!("Mars/Olympus");
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        defaults(&mut cj);
        let fields: Vec<String> = validate(&cj, None).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            vec![
                "spec.schedule",
                "spec.timeZone",
                "spec.jobTemplate.spec.template.spec.restartPolicy"
            ]
        );
    }
}
