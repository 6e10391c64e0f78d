//! The pod template the workload kinds embed (`spec.template`): its
//! defaults and the checks every workload makes against its selector.

use serde_json::{Value, json};

use crate::error::Cause;
use crate::kinds::common::{self, selector_matches};
use crate::kinds::{pod, validation};

/// Pod-spec defaults for the template at `spec.template` of `owner`.
pub fn defaults(template: &mut Value) {
    if template.is_object() {
        pod::spec_defaults(&mut template["spec"]);
    }
}

/// `must be greater than or equal to 0` for a negative number at `field`.
pub fn non_negative(value: &Value, field: &str) -> Option<Cause> {
    value
        .as_i64()
        .filter(|n| *n < 0)
        .map(|_| Cause::invalid(field, value, "must be greater than or equal to 0"))
}

/// What differs between the workload kinds' template checks.
pub struct Rules {
    /// Pod restart policies the kind allows (`Always` for apps kinds).
    pub restart_policies: &'static [&'static str],
    /// The kind's name in the empty-selector message ("deployment").
    pub noun: &'static str,
}

/// The checks Deployments, ReplicaSets, StatefulSets and DaemonSets share:
/// metadata, replicas, a non-empty selector matching the template's labels,
/// the template's pod spec, and a selector that never changes.
pub fn validate(object: &Value, old: Option<&Value>, rules: &Rules) -> Vec<Cause> {
    let mut causes = validation::metadata(object, validation::dns_subdomain);
    let spec = &object["spec"];
    causes.extend(non_negative(&spec["replicas"], "spec.replicas"));
    causes.extend(non_negative(
        &spec["minReadySeconds"],
        "spec.minReadySeconds",
    ));
    causes.extend(non_negative(
        &spec["revisionHistoryLimit"],
        "spec.revisionHistoryLimit",
    ));
    let selector = &spec["selector"];
    if selector.is_null() {
        causes.push(Cause::required("spec.selector"));
    } else {
        causes.extend(common::validate_selector(selector, "spec.selector"));
        if common::selector_string(selector).is_empty() {
            causes.push(Cause::invalid(
                "spec.selector",
                selector,
                format!("empty selector is invalid for {}", rules.noun),
            ));
        } else if !selector_matches(selector, &spec["template"]["metadata"]["labels"]) {
            causes.push(Cause::invalid(
                "spec.template.metadata.labels",
                &spec["template"]["metadata"]["labels"],
                "`selector` does not match template `labels`",
            ));
        }
    }
    causes.extend(validate_template(&spec["template"], "spec.template", rules));
    if let Some(old) = old {
        causes.extend(common::immutable(
            object,
            old,
            &["spec", "selector"],
            "spec.selector",
        ));
    }
    causes
}

/// The template's labels and pod spec at field path `at`.
pub fn validate_template(template: &Value, at: &str, rules: &Rules) -> Vec<Cause> {
    if template.is_null() {
        return vec![Cause::required(at)];
    }
    let wrapped =
        json!({"metadata": {"name": "template", "labels": template["metadata"]["labels"]}});
    let mut causes: Vec<Cause> = validation::metadata(&wrapped, |_, _| None)
        .into_iter()
        .map(|c| Cause {
            field: c.field.replace("metadata.", &format!("{at}.metadata.")),
            ..c
        })
        .collect();
    let spec_at = format!("{at}.spec");
    causes.extend(pod::validate_spec(&template["spec"], &spec_at));
    if let Some(policy) = template["spec"]["restartPolicy"].as_str()
        && ["Always", "OnFailure", "Never"].contains(&policy)
        && !rules.restart_policies.contains(&policy)
    {
        causes.push(Cause::unsupported(
            format!("{spec_at}.restartPolicy"),
            policy,
            rules.restart_policies,
        ));
    }
    causes
}

/// The wide columns every workload shares: CONTAINERS, IMAGES, SELECTOR.
pub fn wide_cells(object: &Value) -> [Value; 3] {
    let [containers, images] = common::containers_and_images(&object["spec"]["template"]["spec"]);
    let selector = common::selector_cell(common::selector_string(&object["spec"]["selector"]));
    [containers, images, selector]
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPS: Rules = Rules {
        restart_policies: &["Always"],
        noun: "deployment",
    };

    fn workload(selector: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"selector": selector, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Always"}}}})
    }

    #[test]
    fn selector_must_match_template_labels() {
        let ok = workload(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        assert!(validate(&ok, None, &APPS).is_empty());
        let bad = workload(json!({"matchLabels": {"app": "web"}}), json!({"app": "db"}));
        let causes = validate(&bad, None, &APPS);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
        assert!(
            causes[0]
                .message
                .contains("`selector` does not match template `labels`")
        );
        let empty = workload(json!({}), json!({"app": "web"}));
        assert_eq!(validate(&empty, None, &APPS)[0].field, "spec.selector");
    }

    #[test]
    fn selector_is_immutable_and_restart_policy_checked() {
        let old = workload(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web", "v": "2"}),
        );
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "v": "2"}});
        new["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let fields: Vec<String> = validate(&new, Some(&old), &APPS)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            vec!["spec.template.spec.restartPolicy", "spec.selector"]
        );
    }
}
