//! Strategic merge patch: the patch-applying half of Kubernetes' strategic
//! merge, driven by a [`Schema`].
//!
//! Maps merge recursively and `null` deletes a key. Lists follow the schema's
//! [`ListStrategy`] (see [`list`]). The directives are handled where they sit:
//!
//! - `$patch: replace` on a map: the map becomes the patch map (its own
//!   directives and nulls still processed, against nothing);
//!   `$patch: delete` removes the map; `$patch: merge` is the default.
//! - `$deleteFromPrimitiveList/<f>`: values removed from the stored list `f`
//!   before the patch's own `f` is merged, so a value both deleted and added
//!   stays.
//! - `$setElementOrder/<f>`: after merging, list `f` is reordered (see
//!   [`list::reorder`]).
//! - `$retainKeys`: after merging, keys of the map not listed are dropped.
//!
//! A patch value with nothing to merge into (a new key, or a stored value of
//! another JSON type) is merged into an empty value of its own type, so nulls
//! and directives inside it are processed too; no directive key ever reaches
//! the result.

mod list;

use std::fmt;

use serde_json::{Map, Value};

use crate::error::json_type;
use crate::{ListStrategy, PatchError, PatchType, Schema};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies the strategic merge patch `patch` to `original` using `schema`.
///
/// `patch` must be an object. `original` is normally an object too; anything
/// else is treated as an empty object.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    schema: &Schema,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::shape(
            PatchType::StrategicMerge,
            "a JSON object",
            patch,
        ));
    };
    let base = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let merger = Merger { schema };
    match merger.merge_map(base, patch, Path::ROOT)? {
        Merged::Keep(map) => Ok(Value::Object(map)),
        Merged::Delete => Err(PatchError::InvalidDirective {
            path: Path::ROOT.to_string(),
            reason: "\"$patch\": \"delete\" cannot remove the whole object".into(),
        }),
    }
}

/// A field path from the object root, built on the stack as the merge
/// descends; list elements add no segment (matching [`Schema`] paths).
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    field: &'a str,
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path {
        parent: None,
        field: "",
    };

    fn child(&'a self, field: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            field,
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parent {
            None => f.write_str("the object root"),
            Some(parent) if parent.parent.is_none() => f.write_str(self.field),
            Some(parent) => write!(f, "{parent}.{}", self.field),
        }
    }
}

/// What became of a map after its patch.
enum Merged {
    Keep(Map<String, Value>),
    /// The patch said `$patch: delete`.
    Delete,
}

struct Merger<'s> {
    schema: &'s Schema,
}

fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

fn directive_error(path: &Path<'_>, reason: String) -> PatchError {
    PatchError::InvalidDirective {
        path: path.to_string(),
        reason,
    }
}

/// The value of a list-valued directive such as `$setElementOrder/env`.
fn directive_list<'v>(
    key: &str,
    value: &'v Value,
    path: &Path<'_>,
) -> Result<&'v [Value], PatchError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(directive_error(
            path,
            format!("\"{key}\" must be a list, found {}", json_type(other)),
        )),
    }
}

impl Merger<'_> {
    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        patch: &Map<String, Value>,
        path: Path<'_>,
    ) -> Result<Merged, PatchError> {
        match patch.get(PATCH) {
            None => {}
            Some(Value::String(d)) if d == "merge" => {}
            Some(Value::String(d)) if d == "replace" => original.clear(),
            Some(Value::String(d)) if d == "delete" => return Ok(Merged::Delete),
            Some(other) => {
                return Err(directive_error(
                    &path,
                    format!("unknown \"$patch\" value {other} (want merge, replace or delete)"),
                ));
            }
        }

        for (key, value) in patch {
            if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                let doomed = directive_list(key, value, &path)?;
                if let Some(Value::Array(items)) = original.get_mut(field) {
                    items.retain(|item| !doomed.contains(item));
                }
            }
        }

        // The stored order is needed after the merge, to place elements the
        // order list does not name.
        let mut orders = Vec::new();
        for (key, value) in patch {
            if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
                let order = directive_list(key, value, &path)?;
                let before = match original.get(field) {
                    Some(Value::Array(items)) => items.clone(),
                    _ => Vec::new(),
                };
                orders.push((field, order, before));
            }
        }

        for (key, value) in patch.iter().filter(|(key, _)| !is_directive(key)) {
            self.merge_field(&mut original, key, value, path.child(key))?;
        }

        for (field, order, before) in orders {
            let field_path = path.child(field);
            if let Some(Value::Array(items)) = original.get_mut(field) {
                let merged = std::mem::take(items);
                *items = match self.schema.list_strategy(&field_path.to_string()) {
                    ListStrategy::Replace => merged,
                    ListStrategy::MergeSet => {
                        list::reorder(merged, order, &before, None, field_path)?
                    }
                    ListStrategy::MergeByKey(key) => {
                        list::reorder(merged, order, &before, Some(key), field_path)?
                    }
                };
            }
        }

        if let Some(retain) = patch.get(RETAIN_KEYS) {
            let keep = directive_list(RETAIN_KEYS, retain, &path)?
                .iter()
                .map(|k| {
                    k.as_str().ok_or_else(|| {
                        directive_error(
                            &path,
                            format!("\"$retainKeys\" must list strings, found {}", json_type(k)),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            original.retain(|key, _| keep.contains(&key.as_str()));
        }
        Ok(Merged::Keep(original))
    }

    fn merge_field(
        &self,
        original: &mut Map<String, Value>,
        key: &str,
        patch: &Value,
        path: Path<'_>,
    ) -> Result<(), PatchError> {
        let merged = match patch {
            Value::Null => None,
            Value::Object(fields) => {
                let base = match original.get_mut(key) {
                    Some(Value::Object(map)) => std::mem::take(map),
                    _ => Map::new(),
                };
                match self.merge_map(base, fields, path)? {
                    Merged::Keep(map) => Some(Value::Object(map)),
                    Merged::Delete => None,
                }
            }
            Value::Array(items) => {
                let base = match original.get_mut(key) {
                    Some(Value::Array(stored)) => std::mem::take(stored),
                    _ => Vec::new(),
                };
                Some(Value::Array(self.merge_list(base, items, path)?))
            }
            scalar => Some(scalar.clone()),
        };
        match merged {
            // Assigning through the slot keeps the key where it was when
            // serde_json preserves insertion order.
            Some(value) => match original.get_mut(key) {
                Some(slot) => *slot = value,
                None => {
                    original.insert(key.to_owned(), value);
                }
            },
            // `remove` would swap the last key into this place when
            // serde_json preserves order; `retain` keeps the order either way.
            None if original.contains_key(key) => original.retain(|k, _| k != key),
            None => {}
        }
        Ok(())
    }

    fn merge_list(
        &self,
        original: Vec<Value>,
        patch: &[Value],
        path: Path<'_>,
    ) -> Result<Vec<Value>, PatchError> {
        match self.schema.list_strategy(&path.to_string()) {
            ListStrategy::Replace => self.fresh_elements(patch.iter(), path),
            ListStrategy::MergeSet => list::merge_set(original, patch, path),
            ListStrategy::MergeByKey(key) => self.merge_keyed(original, patch, key, path),
        }
    }

    /// Patch list elements that replace the stored list: objects are merged
    /// into nothing (dropping nulls, applying directives), the rest copied.
    fn fresh_elements<'v>(
        &self,
        elements: impl Iterator<Item = &'v Value>,
        path: Path<'_>,
    ) -> Result<Vec<Value>, PatchError> {
        let mut out = Vec::new();
        for element in elements {
            match element {
                Value::Object(fields) => {
                    if let Merged::Keep(map) = self.merge_map(Map::new(), fields, path)? {
                        out.push(Value::Object(map));
                    }
                }
                other => out.push(other.clone()),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
