//! Helpers for `metadata` on untyped objects.

use serde_json::{Value, json};

/// Now as Kubernetes writes timestamps (RFC 3339, whole seconds, UTC).
pub fn now() -> String {
    timestamp_after(0)
}

pub fn timestamp_after(seconds: i64) -> String {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn resource_version(object: &Value) -> Option<&str> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
}

pub fn set(object: &mut Value, field: &str, value: Value) {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"][field] = value;
}

pub fn remove(object: &mut Value, field: &str) {
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove(field);
    }
}

pub fn finalizers(object: &Value) -> usize {
    object["metadata"]["finalizers"]
        .as_array()
        .map_or(0, Vec::len)
}

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `generateName` plus five random characters, as Kubernetes does.
pub fn generate_name(prefix: &str) -> String {
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5]
        .iter()
        .map(|b| GENERATE_ALPHABET[*b as usize % GENERATE_ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// Drop empty `ownerReferences` and `finalizers`, as Kubernetes' encoding
/// omits empty lists there: an object whose last owner or finalizer went
/// reads as having none.
pub fn drop_empty_lists(object: &mut Value) {
    if let Some(meta) = object["metadata"].as_object_mut() {
        for field in ["ownerReferences", "finalizers"] {
            if meta
                .get(field)
                .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty) || v.is_null())
            {
                meta.remove(field);
            }
        }
    }
}
