//! Field ownership for server-side apply: `metadata.managedFields`.
//!
//! Every write is attributed to a *manager* (the `fieldManager` of the
//! request). A manager's fields are a set of paths into the object, stored in
//! Kubernetes' `FieldsV1` form: `f:<field>` for a map key, `k:{"name":"x"}`
//! for an element of a list merged by key, `v:<json>` for an element of a
//! list merged as a set, and `.` for "this node itself" when its children are
//! listed too. Lists the [`Schema`] replaces whole are single fields.
//!
//! - [`record_update`]: a create, update or patch. The fields it changed move
//!   to the manager's `Update` entry, taken from whoever held them; fields it
//!   removed leave every entry.
//! - [`apply`]: a server-side apply of a configuration. It is merged into the
//!   live object (maps by key, lists by their strategy); fields the manager
//!   applied last time and no longer does are removed unless another manager
//!   owns them; changing a field another manager owns is a [`Conflict`]
//!   unless `force` takes it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::{ListStrategy, Schema};

/// One path element in its `FieldsV1` spelling (`f:spec`, `k:{"name":"a"}`).
type Path = Vec<String>;

/// A field's content in an object: a leaf value, or a node (map or list
/// element) whose children are fields of their own.
#[derive(Debug, Clone, PartialEq)]
enum Content<'a> {
    Leaf(&'a Value),
    Node,
}

/// Every field of an object in one [`Scope`], with its content.
type Fields<'a> = BTreeMap<Path, Content<'a>>;

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything but `status`.
    Main,
    /// Only `status`.
    Status,
}

/// `metadata` fields the server owns: never attributed to a manager.
const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Whether an entry was written by `Apply` or by any other write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: String,
    pub time: String,
    fields: BTreeSet<Path>,
}

impl Entry {
    fn same_owner(&self, manager: &str, operation: Operation, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// The entry's fields as the dotted paths conflicts report.
    pub fn field_paths(&self) -> Vec<String> {
        self.fields.iter().map(|p| display_path(p)).collect()
    }
}

/// Who is writing: the manager, the subresource (empty for the main
/// resource), the object's apiVersion and the time to record.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub subresource: &'a str,
    pub api_version: &'a str,
    pub now: &'a str,
    pub scope: Scope,
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    /// The field as Kubernetes prints it, e.g. `.spec.replicas`.
    pub field: String,
    /// The field in `fieldsV1` form (`f:spec`, `k:{"name":"web"}`, `v:"x"`, `i:0`).
    pub path: Vec<String>,
}

/// The `managedFields` of an object; malformed entries are dropped.
pub fn read_entries(object: &Value) -> Vec<Entry> {
    let Some(list) = object["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let operation = match e["operation"].as_str()? {
                "Apply" => Operation::Apply,
                _ => Operation::Update,
            };
            let mut fields = BTreeSet::new();
            parse_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut fields);
            Some(Entry {
                manager: e["manager"].as_str().unwrap_or_default().to_string(),
                operation,
                api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
                time: e["time"].as_str().unwrap_or_default().to_string(),
                fields,
            })
        })
        .collect()
}

/// Store `entries` as the object's `managedFields` (removed when empty).
pub fn write_entries(object: &mut Value, entries: &[Entry]) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        metadata.remove("managedFields");
        return;
    }
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut entry = json!({
                "manager": e.manager,
                "operation": e.operation.name(),
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                entry["subresource"] = json!(e.subresource);
            }
            entry
        })
        .collect();
    metadata.insert("managedFields".into(), Value::Array(list));
}

/// Attribute a non-apply write (`old` → `new`, `old` None for a create) to
/// `writer`, returning the object's new entries (starting from `old`'s).
pub fn record_update(
    schema: &Schema,
    old: Option<&Value>,
    new: &Value,
    writer: &Writer,
) -> Vec<Entry> {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let before = old
        .map(|o| fields(o, schema, writer.scope))
        .unwrap_or_default();
    let after = fields(new, schema, writer.scope);
    let changed = changed(&before, &after);
    for entry in &mut entries {
        entry
            .fields
            .retain(|p| !changed.contains(p) && still_there(p, &after, writer.scope));
    }
    let gained: BTreeSet<Path> = changed
        .into_iter()
        .filter(|p| after.contains_key(p))
        .collect();
    if !gained.is_empty() {
        let index = match entries
            .iter()
            .position(|e| e.same_owner(writer.manager, Operation::Update, writer.subresource))
        {
            Some(i) => i,
            None => {
                entries.push(new_entry(writer, Operation::Update));
                entries.len() - 1
            }
        };
        let entry = &mut entries[index];
        entry.fields.extend(gained);
        entry.time = writer.now.to_string();
        entry.api_version = writer.api_version.to_string();
    }
    entries.retain(|e| !e.fields.is_empty());
    entries
}

/// A field outside the write's scope is untouched by it, so stays owned.
fn still_there(path: &Path, after: &Fields, scope: Scope) -> bool {
    !in_scope(path, scope) || after.contains_key(path)
}

fn in_scope(path: &Path, scope: Scope) -> bool {
    let status = path.first().is_some_and(|f| f == "f:status");
    match scope {
        Scope::Main => !status,
        Scope::Status => status,
    }
}

fn new_entry(writer: &Writer, operation: Operation) -> Entry {
    Entry {
        manager: writer.manager.to_string(),
        operation,
        api_version: writer.api_version.to_string(),
        subresource: writer.subresource.to_string(),
        time: writer.now.to_string(),
        fields: BTreeSet::new(),
    }
}

/// Server-side apply `config` to `live` (None: the object does not exist
/// yet). Returns the merged object, carrying its new `managedFields`, or
/// the conflicts when `force` is false and another manager owns a field the
/// configuration changes.
pub fn apply(
    schema: &Schema,
    live: Option<&Value>,
    config: &Value,
    writer: &Writer,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let empty = json!({});
    let live = live.unwrap_or(&empty);
    let mut entries = read_entries(live);
    let applied = fields(config, schema, writer.scope);
    let own = entries
        .iter()
        .position(|e| e.same_owner(writer.manager, Operation::Apply, writer.subresource));
    let previous = own.map(|i| entries[i].fields.clone()).unwrap_or_default();

    // Fields this manager applied before and no longer does go, unless
    // someone else owns them (or something inside them).
    let mut merged = live.clone();
    let others_own = |path: &Path| {
        entries
            .iter()
            .enumerate()
            .any(|(i, e)| Some(i) != own && e.fields.iter().any(|f| f.starts_with(path)))
    };
    let mut removed: Vec<&Path> = previous
        .iter()
        .filter(|p| !applied.contains_key(*p) && !others_own(p))
        .collect();
    // Outermost first: removing a node removes everything inside it.
    removed.sort_by_key(|p| p.len());
    for path in &removed {
        remove_path(&mut merged, path, schema);
    }
    merge(&mut merged, config, schema, &mut String::new());

    let before = fields(live, schema, writer.scope);
    let after = fields(&merged, schema, writer.scope);
    let changed: BTreeSet<Path> = changed(&before, &after)
        .into_iter()
        .filter(|p| applied.contains_key(p))
        .collect();
    let mut conflicts = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        // The same manager's Update entry is another owner, as in
        // Kubernetes: an apply conflicts with its own earlier edits.
        if Some(i) == own {
            continue;
        }
        for path in entry.fields.intersection(&changed) {
            conflicts.push(Conflict {
                manager: entry.manager.clone(),
                api_version: entry.api_version.clone(),
                field: display_path(path),
                path: path.clone(),
            });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let gone: BTreeSet<Path> = removed.into_iter().cloned().collect();
    for (i, entry) in entries.iter_mut().enumerate() {
        if Some(i) != own {
            entry
                .fields
                .retain(|p| !changed.contains(p) && !gone.iter().any(|g| p.starts_with(g)));
        }
    }
    let fields: BTreeSet<Path> = applied.into_keys().collect();
    match own {
        Some(i) => {
            if entries[i].fields != fields {
                entries[i].time = writer.now.to_string();
            }
            entries[i].fields = fields;
            entries[i].api_version = writer.api_version.to_string();
        }
        None => {
            let mut entry = new_entry(writer, Operation::Apply);
            entry.fields = fields;
            entries.push(entry);
        }
    }
    entries.retain(|e| !e.fields.is_empty());
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// The paths whose content differs between two field maps.
fn changed(before: &Fields, after: &Fields) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    for (path, content) in before {
        if after.get(path) != Some(content) {
            out.insert(path.clone());
        }
    }
    for path in after.keys() {
        if !before.contains_key(path) {
            out.insert(path.clone());
        }
    }
    out
}

/// The fields of `object` in `scope`.
fn fields<'a>(object: &'a Value, schema: &Schema, scope: Scope) -> Fields<'a> {
    let mut out = Fields::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (key, value) in map {
        let skip = match key.as_str() {
            "apiVersion" | "kind" => true,
            "status" => scope == Scope::Main,
            _ => scope == Scope::Status,
        };
        if skip || value.is_null() {
            continue;
        }
        let mut path = vec![format!("f:{key}")];
        if key == "metadata" {
            let Some(meta) = value.as_object() else {
                continue;
            };
            for (field, inner) in meta {
                if SYSTEM_METADATA.contains(&field.as_str()) || inner.is_null() {
                    continue;
                }
                path.push(format!("f:{field}"));
                walk(
                    inner,
                    schema,
                    &mut path,
                    &mut format!("metadata.{field}"),
                    &mut out,
                );
                path.pop();
            }
            continue;
        }
        if matches!(key.as_str(), "spec" | "status") && value.is_object() {
            // The top-level structs are never fields themselves.
            walk_children(value, schema, &mut path, &mut key.clone(), &mut out);
        } else {
            walk(value, schema, &mut path, &mut key.clone(), &mut out);
        }
    }
    out
}

fn walk<'a>(
    value: &'a Value,
    schema: &Schema,
    path: &mut Path,
    dotted: &mut String,
    out: &mut Fields<'a>,
) {
    match value {
        Value::Object(_) => {
            out.insert(path.clone(), Content::Node);
            walk_children(value, schema, path, dotted, out);
        }
        Value::Array(items) => match schema.list_strategy(dotted) {
            ListStrategy::Replace => {
                out.insert(path.clone(), Content::Leaf(value));
            }
            ListStrategy::MergeSet => {
                for item in items {
                    path.push(format!("v:{item}"));
                    out.insert(path.clone(), Content::Leaf(item));
                    path.pop();
                }
            }
            ListStrategy::MergeByKey(key) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(element_key(item, key).unwrap_or_else(|| format!("i:{i}")));
                    walk(item, schema, path, dotted, out);
                    path.pop();
                }
            }
        },
        _ => {
            out.insert(path.clone(), Content::Leaf(value));
        }
    }
}

fn walk_children<'a>(
    value: &'a Value,
    schema: &Schema,
    path: &mut Path,
    dotted: &mut String,
    out: &mut Fields<'a>,
) {
    let Some(map) = value.as_object() else {
        return;
    };
    for (key, inner) in map {
        if inner.is_null() {
            continue;
        }
        let len = dotted.len();
        dotted.push('.');
        dotted.push_str(key);
        path.push(format!("f:{key}"));
        walk(inner, schema, path, dotted, out);
        path.pop();
        dotted.truncate(len);
    }
}

/// The key fields of a list merged by `key`: ports are told apart by port
/// and protocol (TCP when unset, its default), as Kubernetes' list-map keys.
fn key_fields(key: &str) -> Vec<&str> {
    match key {
        "containerPort" | "port" => vec![key, "protocol"],
        _ => vec![key],
    }
}

/// `k:{...}` for a list element, or None when it lacks its key.
fn element_key(item: &Value, key: &str) -> Option<String> {
    let mut names = key_fields(key);
    names.sort_unstable();
    let mut parts = Vec::new();
    for name in names {
        let value = match (&item[name], name) {
            (Value::Null, "protocol") => json!("TCP"),
            (Value::Null, _) => return None,
            (v, _) => v.clone(),
        };
        parts.push(format!("{}:{}", Value::String(name.into()), value));
    }
    Some(format!("k:{{{}}}", parts.join(",")))
}

/// Merge an applied configuration into `target`: maps by key, lists by
/// their strategy, anything else replaced. Nulls in the configuration are
/// not values and change nothing.
fn merge(target: &mut Value, config: &Value, schema: &Schema, dotted: &mut String) {
    match (target, config) {
        (Value::Object(target), Value::Object(config)) => {
            for (key, value) in config {
                if value.is_null() {
                    continue;
                }
                let len = dotted.len();
                if !dotted.is_empty() {
                    dotted.push('.');
                }
                dotted.push_str(key);
                match target.get_mut(key) {
                    Some(existing) => merge(existing, value, schema, dotted),
                    None => {
                        let mut fresh = empty_like(value);
                        merge(&mut fresh, value, schema, dotted);
                        target.insert(key.clone(), fresh);
                    }
                }
                dotted.truncate(len);
            }
        }
        (Value::Array(target), Value::Array(config)) => match schema.list_strategy(dotted) {
            ListStrategy::Replace => *target = config.clone(),
            ListStrategy::MergeSet => {
                for item in config {
                    if !target.contains(item) {
                        target.push(item.clone());
                    }
                }
            }
            ListStrategy::MergeByKey(key) => {
                for item in config {
                    let id = element_key(item, key);
                    let found = id.as_ref().and_then(|id| {
                        target
                            .iter_mut()
                            .find(|t| element_key(t, key).as_ref() == Some(id))
                    });
                    match found {
                        Some(existing) => merge(existing, item, schema, dotted),
                        None => target.push(item.clone()),
                    }
                }
            }
        },
        (target, config) => *target = strip_nulls(config),
    }
}

fn empty_like(value: &Value) -> Value {
    match value {
        Value::Object(_) => Value::Object(Map::new()),
        Value::Array(_) => Value::Array(Vec::new()),
        other => other.clone(),
    }
}

fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// Remove the field at `path` from `object`, if present.
fn remove_path(object: &mut Value, path: &[String], schema: &Schema) {
    let mut dotted = String::new();
    let mut node = object;
    for (i, element) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        if let Some(field) = element.strip_prefix("f:") {
            if !dotted.is_empty() {
                dotted.push('.');
            }
            dotted.push_str(field);
            let Some(map) = node.as_object_mut() else {
                return;
            };
            if last {
                map.remove(field);
                return;
            }
            match map.get_mut(field) {
                Some(next) => node = next,
                None => return,
            }
        } else {
            let Some(items) = node.as_array_mut() else {
                return;
            };
            let position = if let Some(value) = element.strip_prefix("v:") {
                let wanted: Value = serde_json::from_str(value).unwrap_or(Value::Null);
                items.iter().position(|v| *v == wanted)
            } else if let Some(index) = element.strip_prefix("i:") {
                index.parse::<usize>().ok().filter(|i| *i < items.len())
            } else {
                let ListStrategy::MergeByKey(key) = schema.list_strategy(&dotted) else {
                    return;
                };
                items
                    .iter()
                    .position(|v| element_key(v, key).as_deref() == Some(element.as_str()))
            };
            let Some(position) = position else {
                return;
            };
            if last {
                items.remove(position);
                return;
            }
            node = &mut items[position];
        }
    }
}

/// `FieldsV1` for a set of paths: nested objects, `{}` for a field with no
/// listed children, and `"."` for one listed together with its children.
fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for element in path {
            node = node
                .entry(element.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
    }
    for path in paths {
        let mut node = &mut root;
        for element in path {
            node = node
                .get_mut(element)
                .and_then(Value::as_object_mut)
                .expect("inserted above");
        }
        if !node.is_empty() {
            node.insert(".".into(), json!({}));
        }
    }
    Value::Object(root)
}

fn parse_fields_v1(node: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
    let Some(map) = node.as_object() else {
        return;
    };
    for (key, child) in map {
        if key == "." {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            continue;
        }
        path.push(key.clone());
        if child.as_object().is_some_and(Map::is_empty) {
            out.insert(path.clone());
        } else {
            parse_fields_v1(child, path, out);
        }
        path.pop();
    }
}

/// A path as Kubernetes prints it in a conflict: `.spec.containers[name="a"].image`.
/// The value at a `fieldsV1`-form path in `object`, if there is one.
pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut at = object;
    for element in path {
        at = if let Some(field) = element.strip_prefix("f:") {
            at.get(field)?
        } else if let Some(index) = element.strip_prefix("i:") {
            at.get(index.parse::<usize>().ok()?)?
        } else if let Some(value) = element.strip_prefix("v:") {
            let wanted: Value = serde_json::from_str(value).ok()?;
            at.as_array()?.iter().find(|item| **item == wanted)?
        } else if let Some(key) = element.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(key).ok()?;
            at.as_array()?
                .iter()
                .find(|item| keys.iter().all(|(k, v)| item.get(k) == Some(v)))?
        } else {
            return None;
        };
    }
    Some(at)
}

fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else if let Some(index) = element.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        } else if let Some(key) = element.strip_prefix("k:") {
            let parsed: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        }
    }
    out
}

#[cfg(test)]
mod tests;
