//! The one error type of the crate.
//!
//! Every message names the patch type and, for strategic merge, the field path at
//! fault, because the API server copies `to_string()` straight into the `message`
//! of a 400/422 `Status` that the kubectl user reads.

use crate::PatchType;

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON, or is JSON of the wrong shape for its patch type
    /// (a merge patch that is not an object, a JSON patch that is not a list of
    /// operations).
    #[error("invalid {patch_type} body: {reason}")]
    Decode {
        patch_type: PatchType,
        reason: String,
        #[source]
        source: Option<serde_json::Error>,
    },

    /// An RFC 6902 operation failed; the whole patch is then rolled back.
    #[error("JSON patch operation {index} ({op} {path}) failed: {}", source.kind)]
    JsonPatch {
        /// Zero-based position of the failed operation in the patch list.
        index: usize,
        /// The operation name: `add`, `remove`, `replace`, `move`, `copy` or `test`.
        op: &'static str,
        /// The operation's JSON pointer.
        path: String,
        #[source]
        source: json_patch::PatchError,
    },

    /// A strategic merge directive (`$patch`, `$retainKeys`, `$setElementOrder/…`,
    /// `$deleteFromPrimitiveList/…`) has an unknown value or the wrong type.
    #[error("invalid strategic merge patch directive at {path}: {reason}")]
    InvalidDirective { path: String, reason: String },

    /// An element of a list merged by key does not carry the key, so it cannot
    /// be matched against the stored list.
    #[error("strategic merge patch element in {path} is missing its merge key \"{key}\"")]
    MissingMergeKey { path: String, key: String },

    /// A list merged by key holds something that is not an object.
    #[error(
        "strategic merge patch list {path} must hold objects (merged by \"{key}\"), found {found}"
    )]
    InvalidListElement {
        path: String,
        key: String,
        found: &'static str,
    },
}

impl PatchError {
    pub(crate) fn decode(patch_type: PatchType, source: serde_json::Error) -> Self {
        PatchError::Decode {
            patch_type,
            reason: source.to_string(),
            source: Some(source),
        }
    }

    pub(crate) fn shape(patch_type: PatchType, expected: &str, found: &serde_json::Value) -> Self {
        PatchError::Decode {
            patch_type,
            reason: format!("expected {expected}, found {}", json_type(found)),
            source: None,
        }
    }
}

/// The JSON type name of `value`, for messages.
pub(crate) fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
