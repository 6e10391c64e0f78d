//! Decoding request bodies into the typed Kubernetes objects.
//!
//! Every object is decoded through its `k8s-openapi` type: a wrong type is a
//! 400 naming the field's path; fields the type does not know are found by
//! comparing the input with the typed object serialized again, and handled as
//! the request's `fieldValidation` asks (Strict rejects, Warn warns, Ignore drops).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// The `fieldValidation` query parameter. Kubernetes' default is `Warn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Strict,
    #[default]
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> ApiResult<FieldValidation> {
        match value {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation parameter unsupported: {other:?}; valid values are Strict, Warn, Ignore"
            ))),
        }
    }
}

/// A decoded object in its normal form, with the warnings to send back.
#[derive(Debug)]
pub struct Decoded {
    pub object: Value,
    pub warnings: Vec<String>,
}

/// Signature shared by every kind's decoder, so the registry can hold them as
/// plain function pointers.
pub type DecodeFn = fn(&Value, FieldValidation) -> ApiResult<Decoded>;

/// Decode `input` as `T`, reporting type errors and unknown fields by path.
pub fn decode_as<T>(input: &Value, validation: FieldValidation) -> ApiResult<Decoded>
where
    T: DeserializeOwned + Serialize + k8s_openapi::Resource,
{
    if !input.is_object() {
        return Err(ApiError::BadRequest(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: the body must be a JSON object",
            kind = T::KIND,
            version = T::VERSION,
        )));
    }
    let typed: T = serde_path_to_error::deserialize(input.clone()).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        ApiError::BadRequest(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: {field}{inner}",
            kind = T::KIND,
            version = T::VERSION,
            inner = err.inner(),
        ))
    })?;
    let object = serde_json::to_value(&typed).map_err(ApiError::internal)?;
    let mut unknown = Vec::new();
    unknown_fields(input, &object, &mut String::new(), &mut unknown);
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        match validation {
            FieldValidation::Strict => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field {f:?}"))
                    .collect();
                return Err(ApiError::BadRequest(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => {
                warnings.extend(unknown.iter().map(|f| format!("unknown field {f:?}")));
            }
            FieldValidation::Ignore => {}
        }
    }
    Ok(Decoded { object, warnings })
}

/// Collect the paths present in `input` but absent from `typed` (its typed
/// round trip). Nulls are not fields: Kubernetes drops them too.
fn unknown_fields(input: &Value, typed: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(given), Value::Object(kept)) => {
            for (key, value) in given {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match kept.get(key) {
                    Some(inner) => unknown_fields(value, inner, path, out),
                    None if value.is_null() => {}
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(given), Value::Array(kept)) => {
            for (i, (value, inner)) in given.iter().zip(kept).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                unknown_fields(value, inner, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn strict_rejects_unknown_fields_by_path() {
        let input =
            pod(json!({"containers": [{"name": "c", "image": "x", "bogus": 1}], "extra": true}));
        let err = decode_as::<Pod>(&input, FieldValidation::Strict).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(r#"unknown field "spec.containers[0].bogus""#),
            "{message}"
        );
        assert!(
            message.contains(r#"unknown field "spec.extra""#),
            "{message}"
        );
        assert_eq!(err.code(), 400);
    }

    #[test]
    fn warn_keeps_going_and_drops_the_field() {
        let input = pod(json!({"containers": [{"name": "c", "image": "x"}], "extra": true}));
        let decoded = decode_as::<Pod>(&input, FieldValidation::Warn).unwrap();
        assert_eq!(
            decoded.warnings,
            vec![r#"unknown field "spec.extra""#.to_string()]
        );
        assert!(decoded.object["spec"].get("extra").is_none());
    }

    #[test]
    fn wrong_type_names_the_field() {
        let input = pod(
            json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": "eighty"}]}]}),
        );
        let err = decode_as::<Pod>(&input, FieldValidation::Strict).unwrap_err();
        assert!(
            err.to_string()
                .contains("spec.containers[0].ports[0].containerPort"),
            "{err}"
        );
    }

    #[test]
    fn round_trip_keeps_what_the_user_wrote() {
        let input = pod(
            json!({"containers": [{"name": "c", "image": "x", "args": ["a"],
            "resources": {"limits": {"memory": "64Mi"}}}]}),
        );
        let decoded = decode_as::<Pod>(&input, FieldValidation::Strict).unwrap();
        assert_eq!(decoded.object, input);
    }
}
