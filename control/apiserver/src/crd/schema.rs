//! Custom resources against their CRD's `openAPIV3Schema`, as Kubernetes
//! treats structural schemas: `default`s are filled in, fields the schema
//! does not declare are pruned (kept under `x-kubernetes-preserve-unknown-fields`
//! or `additionalProperties`), and the value is checked for `type`,
//! `nullable`, `required`, `enum`, `minimum`/`maximum` (and exclusive),
//! `multipleOf`, `minLength`/`maxLength`, `pattern`, `minItems`/`maxItems`,
//! `minProperties`/`maxProperties` and `x-kubernetes-int-or-string`.
//! CEL rules (`x-kubernetes-validations`) and `format` are not checked.

use serde_json::{Map, Value};

use crate::error::Cause;

/// What checking one object found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub causes: Vec<Cause>,
    /// Paths of pruned fields, for `fieldValidation` Strict and Warn.
    pub unknown: Vec<String>,
}

/// The root fields handled outside the schema.
const ENVELOPE: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Default, prune and check everything of `object` but its envelope.
pub fn check_object(schema: &Value, object: &mut Value) -> Outcome {
    let mut out = Outcome::default();
    let Some(map) = object.as_object_mut() else {
        return out;
    };
    let mut body: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| !ENVELOPE.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut root = schema.clone();
    if let Some(properties) = root["properties"].as_object_mut() {
        for key in ENVELOPE {
            properties.remove(key);
        }
    }
    if let Some(required) = root["required"].as_array_mut() {
        required.retain(|r| !ENVELOPE.iter().any(|e| r == e));
    }
    check_map(&root, &mut body, "", &mut out);
    map.retain(|k, _| ENVELOPE.contains(&k.as_str()));
    map.extend(body);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(wanted: &str, value: &Value) -> bool {
    match (wanted, value) {
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("boolean", Value::Bool(_))
        | ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn invalid(out: &mut Outcome, path: &str, value: &Value, detail: String) {
    let field = if path.is_empty() { "<root>" } else { path };
    out.causes.push(Cause::invalid(field, value, detail));
}

/// Check `value` against `schema` at `path` (already defaulted and pruned
/// below it by the time its own rules run).
fn check(schema: &Value, value: &mut Value, path: &str, out: &mut Outcome) {
    if !schema.is_object() {
        return;
    }
    if value.is_null() {
        if schema["nullable"] != true && schema["type"].is_string() {
            invalid(
                out,
                path,
                value,
                format!(
                    "{path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or_default()
                ),
            );
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(type_matches("integer", value) || value.is_string()) {
            invalid(
                out,
                path,
                value,
                format!(
                    "{path} in body must be of type integer,string: {:?}",
                    type_name(value)
                ),
            );
            return;
        }
    } else if let Some(wanted) = schema["type"].as_str()
        && !type_matches(wanted, value)
    {
        out.causes.push(Cause {
            reason: "FieldValueTypeInvalid",
            ..Cause::invalid(
                if path.is_empty() { "<root>" } else { path },
                value,
                format!(
                    "{path} in body must be of type {wanted}: {:?}",
                    type_name(value)
                ),
            )
        });
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let shown: Vec<String> = allowed.iter().map(Value::to_string).collect();
        let value_text = match &*value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        out.causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: path.to_string(),
            message: format!(
                "Unsupported value: {value_text}: supported values: {}",
                shown.join(", ")
            ),
        });
    }
    match value {
        Value::Number(n) => check_number(schema, n.as_f64().unwrap_or(0.0), value, path, out),
        Value::String(s) => {
            let s = s.clone();
            check_string(schema, &s, value, path, out);
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(min) = schema["minItems"].as_u64()
                && len < min
            {
                invalid(
                    out,
                    path,
                    &Value::from(len),
                    format!("{path} in body should have at least {min} items"),
                );
            }
            if let Some(max) = schema["maxItems"].as_u64()
                && len > max
            {
                let message = format!("must have at most {max} items");
                out.causes.push(Cause {
                    reason: "FieldValueTooMany",
                    field: path.to_string(),
                    message: format!("Too many: {len}: {message}"),
                });
            }
            let item_schema = &schema["items"];
            for (i, item) in items.iter_mut().enumerate() {
                check(item_schema, item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => check_map(schema, map, path, out),
        _ => {}
    }
}

fn check_number(schema: &Value, n: f64, value: &Value, path: &str, out: &mut Outcome) {
    if let Some(min) = schema["minimum"].as_f64() {
        let exclusive = schema["exclusiveMinimum"] == true;
        if n < min || (exclusive && n == min) {
            let relation = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            invalid(
                out,
                path,
                value,
                format!("{path} in body should be {relation} {}", number(min)),
            );
        }
    }
    if let Some(max) = schema["maximum"].as_f64() {
        let exclusive = schema["exclusiveMaximum"] == true;
        if n > max || (exclusive && n == max) {
            let relation = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            invalid(
                out,
                path,
                value,
                format!("{path} in body should be {relation} {}", number(max)),
            );
        }
    }
    if let Some(step) = schema["multipleOf"].as_f64()
        && step > 0.0
        && (n / step).fract() != 0.0
    {
        invalid(
            out,
            path,
            value,
            format!("{path} in body should be a multiple of {}", number(step)),
        );
    }
}

fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

fn check_string(schema: &Value, s: &str, value: &Value, path: &str, out: &mut Outcome) {
    let len = s.chars().count() as u64;
    if let Some(min) = schema["minLength"].as_u64()
        && len < min
    {
        invalid(
            out,
            path,
            value,
            format!("{path} in body should be at least {min} chars long"),
        );
    }
    if let Some(max) = schema["maxLength"].as_u64()
        && len > max
    {
        out.causes.push(Cause {
            reason: "FieldValueTooLong",
            field: path.to_string(),
            message: format!("Too long: may not be more than {max} bytes"),
        });
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => {
                invalid(
                    out,
                    path,
                    value,
                    format!("{path} in body should match '{pattern}'"),
                );
            }
            // A pattern the regex engine cannot compile is not enforced.
            _ => {}
        }
    }
}

fn check_map(schema: &Value, map: &mut Map<String, Value>, path: &str, out: &mut Outcome) {
    let properties = schema["properties"].as_object();
    // Defaults first, so required fields a default fills are present.
    if let Some(properties) = properties {
        for (key, property) in properties {
            if !map.contains_key(key)
                && let Some(default) = property.get("default")
            {
                map.insert(key.clone(), default.clone());
            }
        }
    }
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    let embedded = schema["x-kubernetes-embedded-resource"] == true;
    let additional = &schema["additionalProperties"];
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let field = join(path, &key);
        let declared = properties.and_then(|p| p.get(&key));
        match declared {
            Some(property) => {
                if let Some(value) = map.get_mut(&key) {
                    check(property, value, &field, out);
                }
            }
            None if additional.is_object() => {
                if let Some(value) = map.get_mut(&key) {
                    check(additional, value, &field, out);
                }
            }
            None if additional == true || preserve => {}
            None if embedded && ENVELOPE.contains(&key.as_str()) => {}
            None => {
                map.remove(&key);
                out.unknown.push(field);
            }
        }
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = required.as_str()
            && !map.contains_key(name)
        {
            out.causes.push(Cause::required(join(path, name)));
        }
    }
    let count = map.len() as u64;
    if let Some(min) = schema["minProperties"].as_u64()
        && count < min
    {
        invalid(
            out,
            path,
            &Value::from(count),
            format!("{path} in body should have at least {min} properties"),
        );
    }
    if let Some(max) = schema["maxProperties"].as_u64()
        && count > max
    {
        invalid(
            out,
            path,
            &Value::from(count),
            format!("{path} in body should have at most {max} properties"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["color"], "properties": {
                "color": {"type": "string", "enum": ["red", "blue"]},
                "size": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
                "port": {"x-kubernetes-int-or-string": true},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            }},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        }})
    }

    fn fields(outcome: &Outcome) -> Vec<&str> {
        outcome.causes.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn defaults_and_prunes() {
        let mut object = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w"}, "spec": {"color": "red", "bogus": 1,
            "labels": {"a": "b"}, "extra": {"anything": {"goes": true}}}, "top": 1});
        let outcome = check_object(&schema(), &mut object);
        assert!(outcome.causes.is_empty(), "{:?}", outcome.causes);
        assert_eq!(outcome.unknown, vec!["spec.bogus", "top"]);
        assert_eq!(object["spec"]["size"], 3);
        assert!(object.get("top").is_none());
        assert_eq!(object["spec"]["extra"]["anything"]["goes"], true);
        assert_eq!(object["metadata"]["name"], "w");
    }

    #[test]
    fn every_rule_names_its_field() {
        let mut object = json!({"spec": {"color": "pink", "size": 11, "name": "Bad1",
            "port": true, "tags": ["a", "b", "c"], "labels": {"a": 1}},
            "status": {"ready": "yes"}});
        let outcome = check_object(&schema(), &mut object);
        assert_eq!(
            fields(&outcome),
            vec![
                "spec.color",
                "spec.labels.a",
                "spec.name",
                "spec.port",
                "spec.size",
                "spec.tags",
                "status.ready"
            ]
        );
        let size = &outcome.causes[4].message;
        assert_eq!(
            size,
            "Invalid value: 11: spec.size in body should be less than or equal to 10"
        );
        assert!(
            outcome.causes[0]
                .message
                .contains(r#"supported values: "red", "blue""#)
        );
        let mut missing = json!({"spec": {}});
        assert_eq!(
            fields(&check_object(&schema(), &mut missing)),
            vec!["spec.color"]
        );
    }

    #[test]
    fn preserve_at_the_root_keeps_everything() {
        let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        let mut object = json!({"spec": {"a": [1, {"b": 2}]}, "data": "x"});
        let before = object.clone();
        let outcome = check_object(&schema, &mut object);
        assert!(outcome.unknown.is_empty() && outcome.causes.is_empty());
        assert_eq!(object, before);
    }
}
