//! The JSONPath subset CRDs use in `additionalPrinterColumns` and the scale
//! subresource: `.a.b`, `['a.b']`, `[0]`, `[*]` and filters
//! `[?(@.type=="Ready")]`. Anything else matches nothing.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    /// Items whose value at the relative path equals the literal.
    Filter(Vec<Step>, Value),
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Field(after[..end].to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = matching_bracket(after)?;
            let inner = after[..end].trim();
            rest = &after[end + 1..];
            steps.push(bracket(inner)?);
        } else {
            return None;
        }
    }
    Some(steps)
}

fn matching_bracket(text: &str) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') if depth == 0 => return Some(i),
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    None
}

fn unquote(text: &str) -> Option<&str> {
    let text = text.trim();
    text.strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .or_else(|| text.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
}

fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::All);
    }
    if let Ok(index) = inner.parse() {
        return Some(Step::Index(index));
    }
    if let Some(name) = unquote(inner) {
        return Some(Step::Field(name.to_string()));
    }
    let filter = inner.strip_prefix("?(")?.strip_suffix(')')?;
    let (left, right) = filter.split_once("==")?;
    let relative = parse(left.trim().strip_prefix('@')?)?;
    let literal = match unquote(right) {
        Some(text) => Value::String(text.to_string()),
        None => serde_json::from_str(right.trim()).ok()?,
    };
    Some(Step::Filter(relative, literal))
}

fn walk<'a>(value: &'a Value, steps: &[Step], out: &mut Vec<&'a Value>) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(value);
        return;
    };
    match step {
        Step::Field(name) => {
            if let Some(inner) = value.get(name.as_str()) {
                walk(inner, rest, out);
            }
        }
        Step::Index(i) => {
            if let Some(inner) = value.get(*i) {
                walk(inner, rest, out);
            }
        }
        Step::All => match value {
            Value::Array(items) => items.iter().for_each(|i| walk(i, rest, out)),
            Value::Object(map) => map.values().for_each(|i| walk(i, rest, out)),
            _ => {}
        },
        Step::Filter(relative, literal) => {
            for item in value.as_array().into_iter().flatten() {
                let mut found = Vec::new();
                walk(item, relative, &mut found);
                if found.contains(&literal) {
                    walk(item, rest, out);
                }
            }
        }
    }
}

/// Every value `path` selects in `value`; empty for a path it cannot parse.
pub fn select<'a>(value: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    if let Some(steps) = parse(path) {
        walk(value, &steps, &mut out);
    }
    out
}

/// Whether `path` is in the subset understood here.
pub fn is_valid(path: &str) -> bool {
    parse(path).is_some()
}

/// Set the field a simple `.a.b` path names, creating objects on the way.
pub fn set(value: &mut Value, path: &str, new: Value) -> bool {
    let Some(steps) = parse(path) else {
        return false;
    };
    let mut at = value;
    for step in &steps {
        let Step::Field(name) = step else {
            return false;
        };
        if !at.is_object() {
            *at = Value::Object(Default::default());
        }
        at = &mut at[name.as_str()];
    }
    *at = new;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_printer_columns_use() {
        let object = json!({"spec": {"size": 3, "tags": ["a", "b"], "dotted.key": 1},
            "status": {"conditions": [{"type": "Ready", "status": "True"},
                {"type": "Synced", "status": "False"}]}});
        assert_eq!(select(&object, ".spec.size"), vec![&json!(3)]);
        assert_eq!(select(&object, ".spec.tags[1]"), vec![&json!("b")]);
        assert_eq!(select(&object, ".spec.tags[*]").len(), 2);
        assert_eq!(select(&object, ".spec['dotted.key']"), vec![&json!(1)]);
        assert_eq!(
            select(&object, r#".status.conditions[?(@.type=="Synced")].status"#),
            vec![&json!("False")]
        );
        assert!(select(&object, ".spec.missing").is_empty());
        assert!(select(&object, "spec..size").is_empty());
        assert!(!is_valid("spec"));
    }

    #[test]
    fn set_makes_the_path() {
        let mut object = json!({"spec": {}});
        assert!(set(&mut object, ".spec.replicas", json!(4)));
        assert!(set(&mut object, ".status.scale.count", json!(1)));
        assert_eq!(
            object,
            json!({"spec": {"replicas": 4}, "status": {"scale": {"count": 1}}})
        );
        assert!(!set(&mut object, ".spec.items[0]", json!(1)));
    }
}
