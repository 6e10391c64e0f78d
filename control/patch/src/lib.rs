//! Applies the bodies of HTTP `PATCH` requests to stored Kubernetes objects.
//!
//! kubectl sends three kinds of patch, told apart by `Content-Type`:
//!
//! | content type | [`PatchType`] | sent by |
//! |---|---|---|
//! | `application/strategic-merge-patch+json` | [`PatchType::StrategicMerge`] | client-side `apply`, `rollout restart`, `patch` |
//! | `application/merge-patch+json` (RFC 7386) | [`PatchType::JsonMerge`] | `label`, `annotate`, `scale`, `patch --type=merge`, `apply` of unknown kinds |
//! | `application/json-patch+json` (RFC 6902) | [`PatchType::Json`] | `rollout undo`, `patch --type=json` |
//!
//! [`apply_patch`] takes the stored object as a `serde_json::Value` and the raw
//! body, and returns the patched object; it does no I/O and never touches the
//! input. JSON merge and JSON patch are the RFCs (via the `json-patch` crate;
//! a failed JSON patch changes nothing). Strategic merge patch is Skiff's own
//! implementation of Kubernetes' semantics (see [`strategic_merge`]): maps
//! merge, `null` deletes, and lists are merged by key, merged as sets or
//! replaced according to a per-kind [`Schema`] of field paths. The `$patch`,
//! `$setElementOrder/…`, `$retainKeys` and `$deleteFromPrimitiveList/…`
//! directives are applied and never left in the result.
//!
//! Server-side apply (`application/apply-patch+yaml`) is [`managed::apply`],
//! with the `managedFields` bookkeeping every other write needs in
//! [`managed::record_update`]; both use the same [`Schema`] of list keys.
//!
//! Errors ([`PatchError`]) name the patch type and the failing operation or
//! field, ready to be put into a 400/422 `Status` message.
//!
//! ```
//! use serde_json::json;
//! use skiff_patch::{PatchType, apply_patch};
//!
//! let stored = json!({
//!     "kind": "Pod",
//!     "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
//!     "spec": {"containers": [
//!         {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
//!         {"name": "sidecar", "image": "proxy:1"}
//!     ]}
//! });
//! let body = br#"{
//!     "metadata": {"labels": {"tier": null}},
//!     "spec": {"containers": [
//!         {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]},
//!         {"name": "sidecar", "$patch": "delete"}
//!     ]}
//! }"#;
//!
//! let patch_type = PatchType::from_content_type("application/strategic-merge-patch+json")
//!     .expect("a patch content type");
//! let patched = apply_patch("Pod", &stored, patch_type, body)?;
//!
//! assert_eq!(patched["metadata"]["labels"], json!({"app": "web"}));
//! assert_eq!(patched["spec"]["containers"], json!([
//!     {"name": "app", "image": "app:2",
//!      "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
//! ]));
//! # Ok::<(), skiff_patch::PatchError>(())
//! ```

mod error;
pub mod managed;
mod schema;
mod strategic;

use std::fmt;

use serde_json::Value;

pub use error::PatchError;
pub use schema::{ListStrategy, Schema};
pub use strategic::strategic_merge;

/// The three PATCH body formats the API server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// RFC 7386 JSON merge patch, `application/merge-patch+json`.
    JsonMerge,
    /// RFC 6902 JSON patch, `application/json-patch+json`.
    Json,
    /// Kubernetes strategic merge patch, `application/strategic-merge-patch+json`.
    StrategicMerge,
}

impl PatchType {
    /// The patch type for a request `Content-Type`, ignoring parameters such as
    /// `; charset=utf-8` and letter case. `None` for anything else (including
    /// server-side apply's `application/apply-patch+yaml`).
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        [
            PatchType::JsonMerge,
            PatchType::Json,
            PatchType::StrategicMerge,
        ]
        .into_iter()
        .find(|t| media_type.eq_ignore_ascii_case(t.content_type()))
    }

    /// The media type of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::JsonMerge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
        }
    }
}

impl fmt::Display for PatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatchType::JsonMerge => "JSON merge patch",
            PatchType::Json => "JSON patch",
            PatchType::StrategicMerge => "strategic merge patch",
        })
    }
}

/// Applies `patch` (the raw request body) to `original` and returns the result.
///
/// `kind` picks the strategic merge [`Schema`] ([`Schema::for_kind`]); it is
/// ignored for the other patch types. Merge patches must be JSON objects and a
/// JSON patch must be a list of operations, or [`PatchError::Decode`] results.
pub fn apply_patch(
    kind: &str,
    original: &Value,
    patch_type: PatchType,
    patch: &[u8],
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::JsonMerge => {
            let patch = decode_object(patch_type, patch)?;
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(patch)
                .map_err(|source| PatchError::decode(patch_type, source))?;
            // Applied to a copy that is dropped on failure: json-patch's own
            // rollback (`patch`) can panic when an undo step fails.
            let mut doc = original.clone();
            json_patch::patch_unsafe(&mut doc, &ops.0).map_err(|source| {
                let (op, path) = describe_operation(ops.0.get(source.operation));
                PatchError::JsonPatch {
                    index: source.operation,
                    op,
                    path,
                    source,
                }
            })?;
            Ok(doc)
        }
        PatchType::StrategicMerge => {
            let patch = decode_object(patch_type, patch)?;
            strategic_merge(original, &patch, &Schema::for_kind(kind))
        }
    }
}

fn decode_object(patch_type: PatchType, body: &[u8]) -> Result<Value, PatchError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|source| PatchError::decode(patch_type, source))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(PatchError::shape(patch_type, "a JSON object", &value))
    }
}

fn describe_operation(op: Option<&json_patch::PatchOperation>) -> (&'static str, String) {
    use json_patch::PatchOperation as Op;
    let Some(op) = op else {
        return ("unknown", String::new());
    };
    let name = match op {
        Op::Add(_) => "add",
        Op::Remove(_) => "remove",
        Op::Replace(_) => "replace",
        Op::Move(_) => "move",
        Op::Copy(_) => "copy",
        Op::Test(_) => "test",
    };
    (name, op.path().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types_ignore_parameters_and_case() {
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::JsonMerge)
        );
        assert_eq!(
            PatchType::from_content_type("Application/JSON-Patch+JSON"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            None
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }

    #[test]
    fn content_type_round_trips() {
        for t in [
            PatchType::JsonMerge,
            PatchType::Json,
            PatchType::StrategicMerge,
        ] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
    }

    #[test]
    fn merge_patch_must_be_an_object() {
        let err = apply_patch("Pod", &json!({}), PatchType::JsonMerge, b"[1]").unwrap_err();
        assert!(
            matches!(err, PatchError::Decode { source: None, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "invalid JSON merge patch body: expected a JSON object, found a list"
        );
    }

    #[test]
    fn json_patch_error_names_the_operation() {
        let body = br#"[{"op":"add","path":"/a","value":1},{"op":"remove","path":"/nope"}]"#;
        let original = json!({"b": 2});
        let err = apply_patch("Pod", &original, PatchType::Json, body).unwrap_err();
        let PatchError::JsonPatch {
            index, op, path, ..
        } = &err
        else {
            panic!("wrong variant: {err:?}");
        };
        assert_eq!((*index, *op, path.as_str()), (1, "remove", "/nope"));
        assert_eq!(
            err.to_string(),
            "JSON patch operation 1 (remove /nope) failed: path is invalid"
        );
    }
}
