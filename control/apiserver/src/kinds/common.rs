//! Pieces shared by the built-in kinds: the registry entry most kinds start
//! from, label selectors as Kubernetes formats, matches and validates them,
//! and the table cells many kinds print alike.

use serde_json::{Value, json};

use crate::decode::DecodeFn;
use crate::error::Cause;
use crate::kinds::validation;
use crate::resources::Resource;
use crate::table::TableDef;

/// A namespaced resource with no subresources, short names or categories
/// whose names are DNS subdomains; each kind overrides what differs.
pub fn base(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    (plural, singular): (&'static str, &'static str),
    decode: DecodeFn,
    table: TableDef,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced: true,
        short_names: &[],
        categories: &[],
        has_status: false,
        subresources: &[],
        tracks_generation: false,
        field_selectors: &[],
        decode,
        defaults: |_| {},
        validate: validate_name,
        table,
        custom: None,
    }
}

/// Metadata checks only, with DNS-subdomain names.
pub fn validate_name(object: &Value, _old: Option<&Value>) -> Vec<Cause> {
    validation::metadata(object, validation::dns_subdomain)
}

/// Set `map[key]` unless it already holds a value.
pub fn set_default(map: &mut Value, key: &str, value: Value) {
    if map[key].is_null() {
        map[key] = value;
    }
}

/// `field is immutable` when `new` differs from `old` at `path`.
pub fn immutable(new: &Value, old: &Value, path: &[&str], field: &str) -> Option<Cause> {
    let at = |v: &Value| path.iter().fold(v.clone(), |v, k| v[*k].clone());
    let (now, before) = (at(new), at(old));
    (now != before).then(|| Cause::invalid(field, &now, "field is immutable"))
}

fn sorted_pairs(map: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    pairs.sort();
    pairs
}

/// A `LabelSelector` (`matchLabels` / `matchExpressions`) in the text form
/// Kubernetes prints, requirements sorted by key: `app=web,tier in (a,b)`.
/// Empty for a selector that selects everything.
pub fn selector_string(selector: &Value) -> String {
    let mut parts: Vec<(String, String)> = sorted_pairs(&selector["matchLabels"])
        .into_iter()
        .map(|(k, v)| (k.clone(), format!("{k}={v}")))
        .collect();
    for expr in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expr["key"].as_str().unwrap_or_default().to_string();
        let mut values: Vec<&str> = expr["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort();
        let text = match expr["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            _ => format!("!{key}"),
        };
        parts.push((key, text));
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    parts
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join(",")
}

/// A plain `key: value` selector map (Services, ReplicationControllers) as text.
pub fn map_selector_string(selector: &Value) -> String {
    sorted_pairs(selector)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The SELECTOR cell: the selector's text or `<none>`.
pub fn selector_cell(text: String) -> Value {
    if text.is_empty() {
        json!("<none>")
    } else {
        json!(text)
    }
}

/// Whether a `LabelSelector` selects an object with these labels.
pub fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    let labels_ok = sorted_pairs(&selector["matchLabels"])
        .iter()
        .all(|(k, v)| get(k) == Some(v.as_str()));
    let expressions_ok = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|expr| {
            let key = expr["key"].as_str().unwrap_or_default();
            let mut values = expr["values"].as_array().into_iter().flatten();
            match expr["operator"].as_str().unwrap_or_default() {
                "In" => get(key).is_some_and(|l| values.any(|v| v == l)),
                "NotIn" => get(key).is_none_or(|l| values.all(|v| v != l)),
                "Exists" => get(key).is_some(),
                "DoesNotExist" => get(key).is_none(),
                _ => false,
            }
        });
    labels_ok && expressions_ok
}

const OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// Validate a `LabelSelector` at field path `at`.
pub fn validate_selector(selector: &Value, at: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let as_labels = json!({"metadata": {"name": "x", "labels": selector["matchLabels"]}});
    for cause in validation::metadata(&as_labels, |_, _| None) {
        causes.push(Cause {
            field: cause
                .field
                .replace("metadata.labels", &format!("{at}.matchLabels")),
            ..cause
        });
    }
    for (i, expr) in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let here = format!("{at}.matchExpressions[{i}]");
        if expr["key"].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(format!("{here}.key")));
        }
        let values = expr["values"].as_array().map_or(0, Vec::len);
        match expr["operator"].as_str().unwrap_or_default() {
            "In" | "NotIn" if values == 0 => causes.push(Cause::required(format!("{here}.values"))),
            "Exists" | "DoesNotExist" if values > 0 => causes.push(Cause::forbidden(
                format!("{here}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            op if !OPERATORS.contains(&op) => causes.push(Cause::unsupported(
                format!("{here}.operator"),
                op,
                &OPERATORS,
            )),
            _ => {}
        }
    }
    causes
}

/// A count cell: the number, or 0 when unset.
pub fn count(value: &Value) -> Value {
    json!(value.as_i64().unwrap_or(0))
}

/// A string cell that prints `<none>` when empty or unset.
pub fn or_none(value: &Value) -> Value {
    match value.as_str().filter(|s| !s.is_empty()) {
        Some(s) => json!(s),
        None => json!("<none>"),
    }
}

/// The CONTAINERS and IMAGES cells of a pod spec (comma-joined).
pub fn containers_and_images(spec: &Value) -> [Value; 2] {
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    let join = |field: &str| {
        json!(
            containers
                .iter()
                .map(|c| c[field].as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    [join("name"), join("image")]
}

/// The `Created At` cell (RBAC kinds, LimitRange): the RFC 3339 timestamp.
pub fn created_at(object: &Value) -> Value {
    object["metadata"]["creationTimestamp"].clone()
}

/// Kubernetes joins long lists in a cell as `a,b,c + 2 more...`.
pub fn join_limited(items: &[String], limit: usize, separator: &str) -> String {
    if items.len() <= limit {
        return items.join(separator);
    }
    format!(
        "{} + {} more...",
        items[..limit].join(separator),
        items.len() - limit
    )
}

/// The data keys Secrets and ConfigMaps accept: `[-._a-zA-Z0-9]+`, not `.`
/// or `..` or starting with `..`, at most 253 characters.
pub fn validate_config_key(key: &str, field: &str) -> Option<Cause> {
    let valid = !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && key != "."
        && !key.starts_with("..");
    (!valid).then(|| {
        Cause::invalid(
            field,
            &Value::String(key.into()),
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' \
             (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name')",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_print_sorted_and_match() {
        let selector = json!({"matchLabels": {"tier": "front", "app": "web"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]});
        assert_eq!(
            selector_string(&selector),
            "app=web,!canary,env in (dev,prod),tier=front"
        );
        let labels = json!({"app": "web", "tier": "front", "env": "dev"});
        assert!(selector_matches(&selector, &labels));
        let canary = json!({"app": "web", "tier": "front", "env": "dev", "canary": "1"});
        assert!(!selector_matches(&selector, &canary));
        assert_eq!(selector_cell(selector_string(&json!({}))), "<none>");
    }

    #[test]
    fn selector_validation_names_fields() {
        let bad = json!({"matchLabels": {"bad key": "x"},
            "matchExpressions": [{"key": "a", "operator": "In"}, {"key": "b", "operator": "Near"}]});
        let fields: Vec<String> = validate_selector(&bad, "spec.selector")
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "spec.selector.matchLabels",
                "spec.selector.matchExpressions[0].values",
                "spec.selector.matchExpressions[1].operator"
            ]
        );
    }

    #[test]
    fn config_keys() {
        assert!(validate_config_key("app.properties", "data").is_none());
        assert!(validate_config_key("..x", "data").is_some());
        assert!(validate_config_key("a/b", "data").is_some());
    }
}
