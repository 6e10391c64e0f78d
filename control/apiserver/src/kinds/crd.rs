//! apiextensions.k8s.io/v1 CustomResourceDefinition: the definition itself.
//! What it serves (the custom resources) is built in [`crate::crd`].

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use crate::decode::decode_as;
use crate::error::Cause;
use crate::kinds::{common, validation};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

pub const GROUP: &str = "apiextensions.k8s.io";

/// Held while the definition's custom resources are being deleted.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

const COLUMNS: &[Column] = &[table::NAME, Column::new("Created At", "date", 0)];

pub fn resource() -> Resource {
    Resource {
        namespaced: false,
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        has_status: true,
        tracks_generation: true,
        defaults,
        validate,
        ..common::base(
            GROUP,
            "v1",
            "CustomResourceDefinition",
            ("customresourcedefinitions", "customresourcedefinition"),
            decode_as::<CustomResourceDefinition>,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

fn defaults(crd: &mut Value) {
    let names = &mut crd["spec"]["names"];
    if names.is_object()
        && let Some(kind) = names["kind"].as_str().map(str::to_string)
    {
        common::set_default(names, "singular", json!(kind.to_ascii_lowercase()));
        common::set_default(names, "listKind", json!(format!("{kind}List")));
    }
    if crd["spec"].is_object() {
        common::set_default(&mut crd["spec"], "conversion", json!({"strategy": "None"}));
    }
    // Custom resources are deleted with their definition: the finalizer
    // keeps the definition until the CRD controller has done that.
    if crd["metadata"]["deletionTimestamp"].is_null() {
        let mut finalizers: Vec<Value> = crd["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
            finalizers.push(json!(CLEANUP_FINALIZER));
            crate::meta::set(crd, "finalizers", json!(finalizers));
        }
    }
}

/// A lower-case DNS label (plural, singular, short names).
fn names_label(causes: &mut Vec<Cause>, field: &str, value: &Value) {
    if let Some(text) = value.as_str() {
        causes.extend(validation::dns_label(field, text));
    }
}

fn validate(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = common::validate_name(crd, None);
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else if !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            &spec["group"],
            "should be a domain with at least one dot",
        ));
    } else {
        causes.extend(validation::dns_subdomain("spec.group", group));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    }
    names_label(&mut causes, "spec.names.plural", &spec["names"]["plural"]);
    names_label(
        &mut causes,
        "spec.names.singular",
        &spec["names"]["singular"],
    );
    for (i, short) in spec["names"]["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        names_label(&mut causes, &format!("spec.names.shortNames[{i}]"), short);
    }
    if spec["names"]["kind"].as_str().is_none_or(str::is_empty) {
        causes.push(Cause::required("spec.names.kind"));
    }
    if !plural.is_empty()
        && !group.is_empty()
        && crate::meta::name(crd) != format!("{plural}.{group}")
    {
        causes.push(Cause::invalid(
            "metadata.name",
            &crd["metadata"]["name"],
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced" | "Cluster") => {}
        None => causes.push(Cause::required("spec.scope")),
        Some(other) => causes.push(Cause::unsupported(
            "spec.scope",
            other,
            &["Cluster", "Namespaced"],
        )),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::required("spec.versions"));
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, version) in versions.iter().enumerate() {
        let field = format!("spec.versions[{i}]");
        let name = version["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(format!("{field}.name")));
        } else if names.contains(&name) {
            causes.push(Cause::invalid(
                format!("{field}.name"),
                &version["name"],
                "must be unique",
            ));
        } else {
            causes.extend(validation::dns_label(&format!("{field}.name"), name));
        }
        names.push(name);
        let schema = &version["schema"]["openAPIV3Schema"];
        if !schema.is_object() {
            causes.push(Cause {
                message: "Required value: schemas are required".into(),
                ..Cause::required(format!("{field}.schema.openAPIV3Schema"))
            });
        } else if schema["type"] != "object" {
            causes.push(Cause::unsupported(
                format!("{field}.schema.openAPIV3Schema.type"),
                schema["type"].as_str().unwrap_or_default(),
                &["object"],
            ));
        }
        let scale = &version["subresources"]["scale"];
        if scale.is_object() {
            for path in ["specReplicasPath", "statusReplicasPath"] {
                match scale[path].as_str() {
                    None => causes.push(Cause::required(format!(
                        "{field}.subresources.scale.{path}"
                    ))),
                    Some(p) if !p.starts_with('.') => causes.push(Cause::invalid(
                        format!("{field}.subresources.scale.{path}"),
                        &scale[path],
                        "should be a json path under .spec or .status",
                    )),
                    Some(_) => {}
                }
            }
        }
        for (j, column) in version["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("{field}.additionalPrinterColumns[{j}]");
            for required in ["name", "type", "jsonPath"] {
                if column[required].as_str().is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("{at}.{required}")));
                }
            }
            if let Some(path) = column["jsonPath"].as_str()
                && !path.is_empty()
                && !crate::crd::jsonpath::is_valid(path)
            {
                causes.push(Cause::invalid(
                    format!("{at}.jsonPath"),
                    &column["jsonPath"],
                    "must be a simple json path starting with .",
                ));
            }
            if let Some(kind) = column["type"].as_str()
                && !["integer", "number", "string", "boolean", "date"].contains(&kind)
            {
                causes.push(Cause::unsupported(
                    format!("{at}.type"),
                    kind,
                    &["boolean", "date", "integer", "number", "string"],
                ));
            }
        }
    }
    let storage = versions.iter().filter(|v| v["storage"] == true).count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &json!(
                versions
                    .iter()
                    .map(|v| v["name"].clone())
                    .collect::<Vec<_>>()
            ),
            "must have exactly one version marked as storage version",
        ));
    }
    if let Some(old) = old {
        causes.extend(common::immutable(
            crd,
            old,
            &["spec", "group"],
            "spec.group",
        ));
        causes.extend(common::immutable(
            crd,
            old,
            &["spec", "scope"],
            "spec.scope",
        ));
    }
    causes
}

fn cells(crd: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    vec![
        crd["metadata"]["name"].clone(),
        crd["metadata"]["creationTimestamp"].clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget() -> Value {
        json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
    }

    #[test]
    fn a_good_definition_is_defaulted_and_valid() {
        let mut crd = widget();
        defaults(&mut crd);
        assert_eq!(crd["spec"]["names"]["singular"], "widget");
        assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(crd["metadata"]["finalizers"], json!([CLEANUP_FINALIZER]));
        assert!(
            validate(&crd, None).is_empty(),
            "{:?}",
            validate(&crd, None)
        );
    }

    #[test]
    fn bad_definitions_name_their_fields() {
        let mut crd = widget();
        crd["metadata"]["name"] = json!("gadgets.example.com");
        crd["spec"]["versions"][0]["storage"] = json!(false);
        crd["spec"]["versions"][0]["schema"] = json!(null);
        crd["spec"]["scope"] = json!("Galaxy");
        let fields: Vec<String> = validate(&crd, None).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.name",
                "spec.scope",
                "spec.versions[0].schema.openAPIV3Schema",
                "spec.versions"
            ]
        );
    }
}
