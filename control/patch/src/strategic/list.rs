//! Merging lists and the `$setElementOrder` reordering.
//!
//! A list merged by key keeps the stored order: a patch element updates the
//! stored element with the same key in place (recursively), an unknown key is
//! appended, `{"$patch": "delete", <key>: v}` removes every stored element
//! with that key, and `{"$patch": "replace"}` makes the list the patch's other
//! elements. Upstream additionally moves patched elements into patch order even
//! without `$setElementOrder`; kubectl always sends `$setElementOrder` when the
//! order matters, so Skiff leaves the order alone unless asked.
//!
//! A primitive list merged as a set is the stored list followed by the patch
//! values it lacks, with duplicates dropped; `{"$patch": "replace"}` works
//! there too.

use serde_json::{Map, Value};

use super::{Merged, Merger, PATCH, Path, directive_error};
use crate::PatchError;
use crate::error::json_type;

/// A list element's `$patch` directive, if it has one.
enum ElementDirective {
    Replace,
    Delete,
}

fn element_directive(
    fields: &Map<String, Value>,
    path: &Path<'_>,
) -> Result<Option<ElementDirective>, PatchError> {
    match fields.get(PATCH) {
        None => Ok(None),
        Some(Value::String(d)) if d == "replace" => Ok(Some(ElementDirective::Replace)),
        Some(Value::String(d)) if d == "delete" => Ok(Some(ElementDirective::Delete)),
        Some(other) => Err(directive_error(
            path,
            format!("unknown \"$patch\" value {other} in a list element (want replace or delete)"),
        )),
    }
}

impl Merger<'_> {
    pub(super) fn merge_keyed(
        &self,
        mut original: Vec<Value>,
        patch: &[Value],
        key: &str,
        path: Path<'_>,
    ) -> Result<Vec<Value>, PatchError> {
        let missing_key = || PatchError::MissingMergeKey {
            path: path.to_string(),
            key: key.to_owned(),
        };
        let mut replace = false;
        let mut updates = Vec::new();
        for element in patch {
            let Value::Object(fields) = element else {
                return Err(PatchError::InvalidListElement {
                    path: path.to_string(),
                    key: key.to_owned(),
                    found: json_type(element),
                });
            };
            match element_directive(fields, &path)? {
                None => updates.push(fields),
                Some(ElementDirective::Replace) => replace = true,
                Some(ElementDirective::Delete) => {
                    let id = fields.get(key).ok_or_else(missing_key)?;
                    original.retain(|stored| stored.get(key) != Some(id));
                }
            }
        }
        if replace {
            let kept = patch.iter().filter(|element| element.get(PATCH).is_none());
            return self.fresh_elements(kept, path);
        }

        for fields in updates {
            let id = fields.get(key).ok_or_else(missing_key)?;
            match original
                .iter()
                .position(|stored| stored.get(key) == Some(id))
            {
                Some(at) => {
                    let base = match &mut original[at] {
                        Value::Object(map) => std::mem::take(map),
                        _ => Map::new(),
                    };
                    match self.merge_map(base, fields, path)? {
                        Merged::Keep(map) => original[at] = Value::Object(map),
                        Merged::Delete => {
                            original.remove(at);
                        }
                    }
                }
                None => {
                    if let Merged::Keep(map) = self.merge_map(Map::new(), fields, path)? {
                        original.push(Value::Object(map));
                    }
                }
            }
        }
        Ok(original)
    }
}

pub(super) fn merge_set(
    original: Vec<Value>,
    patch: &[Value],
    path: Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    let mut replace = false;
    let mut additions = Vec::new();
    for element in patch {
        match element {
            Value::Object(fields) if fields.contains_key(PATCH) => {
                match element_directive(fields, &path)? {
                    Some(ElementDirective::Replace) => replace = true,
                    _ => {
                        return Err(directive_error(
                            &path,
                            "a list of values only supports {\"$patch\": \"replace\"}; \
                             remove values with $deleteFromPrimitiveList"
                                .into(),
                        ));
                    }
                }
            }
            value => additions.push(value),
        }
    }
    let stored = if replace { Vec::new() } else { original };
    let mut out: Vec<Value> = Vec::with_capacity(stored.len() + additions.len());
    for value in stored.into_iter().chain(additions.into_iter().cloned()) {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    Ok(out)
}

/// Reorders `merged` for `$setElementOrder`.
///
/// Elements named in `order` (by `key`, or by value for a primitive list) come
/// in that order. The others keep their relative order and are interleaved the
/// way Kubernetes does it: walking both sequences, an unnamed element goes
/// first when both it and the next named element were in the stored list
/// `before` and it stood earlier there; otherwise the named element goes
/// first. So unnamed stored elements stay near their old neighbours and
/// unnamed new elements end up after the named ones.
pub(super) fn reorder(
    merged: Vec<Value>,
    order: &[Value],
    before: &[Value],
    key: Option<&str>,
    path: Path<'_>,
) -> Result<Vec<Value>, PatchError> {
    let identity = |value: &Value| -> Option<Value> {
        match key {
            Some(key) => value.get(key).cloned(),
            None => Some(value.clone()),
        }
    };
    let order_ids = order
        .iter()
        .map(|entry| {
            identity(entry).ok_or_else(|| {
                directive_error(
                    &path,
                    format!(
                        "\"$setElementOrder\" entry {entry} lacks the merge key \"{}\"",
                        key.unwrap_or_default()
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let position = |ids: &[Value], element: &Value| {
        identity(element).and_then(|id| ids.iter().position(|other| *other == id))
    };
    let before_ids: Vec<Value> = before.iter().filter_map(identity).collect();

    let (mut named, unnamed): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|element| position(&order_ids, element).is_some());
    named.sort_by_key(|element| position(&order_ids, element));

    let mut out = Vec::with_capacity(named.len() + unnamed.len());
    let mut named = named.into_iter().peekable();
    let mut unnamed = unnamed.into_iter().peekable();
    loop {
        let take_unnamed = match (named.peek(), unnamed.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(n), Some(u)) => matches!(
                (position(&before_ids, u), position(&before_ids, n)),
                (Some(u_at), Some(n_at)) if u_at < n_at
            ),
        };
        let next = if take_unnamed {
            unnamed.next()
        } else {
            named.next()
        };
        out.extend(next);
    }
    Ok(out)
}
