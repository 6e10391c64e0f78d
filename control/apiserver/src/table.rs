//! `meta.k8s.io/v1` Table output, which `kubectl get` asks for to print real
//! columns. k8s-openapi has no Table type, so it is built here as JSON.

use jiff::Timestamp;
use serde_json::{Value, json};

/// A column of a kind's table: (name, type, priority). Priority 0 columns are
/// always shown; priority 1 only with `-o wide`.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub priority: u8,
    pub description: &'static str,
}

impl Column {
    pub const fn new(name: &'static str, kind: &'static str, priority: u8) -> Column {
        Column {
            name,
            kind,
            priority,
            description: "",
        }
    }
}

/// How a kind turns into table cells; `cells` returns one per column.
#[derive(Clone, Copy)]
pub struct TableDef {
    pub columns: &'static [Column],
    pub cells: fn(&Value, Timestamp) -> Vec<Value>,
}

/// Build a Table of `objects`. `include_object` follows the `includeObject`
/// parameter: None, Metadata (the default; kubectl needs it for `-A` and
/// `--show-labels`) or Object.
pub fn table(
    resource: &crate::resources::Resource,
    objects: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    include_object: &str,
) -> Value {
    let now = Timestamp::now();
    let def = &resource.table;
    let columns: Vec<Value> = def
        .columns
        .iter()
        .map(|c| {
            let mut col = json!({"name": c.name, "type": c.kind, "format": "", "description": c.description, "priority": c.priority});
            if c.name == "Name" {
                col["format"] = json!("name");
            }
            col
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells = match &resource.custom {
                Some(custom) => custom.cells(object, now),
                None => (def.cells)(object, now),
            };
            let mut row = json!({"cells": cells});
            match include_object {
                "None" => {}
                "Object" => row["object"] = object.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object["metadata"],
                    })
                }
            }
            row
        })
        .collect();
    let mut metadata = json!({"resourceVersion": resource_version});
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The Name column most kinds start with; its cell is `metadata.name`.
pub const NAME: Column = Column {
    name: "Name",
    kind: "string",
    priority: 0,
    description: "Name must be unique within a namespace.",
};

/// Seconds since an RFC 3339 timestamp, for Age-like columns.
pub fn since(timestamp: &Value, now: Timestamp) -> Option<i64> {
    let then: Timestamp = timestamp.as_str()?.parse().ok()?;
    Some(now.as_second() - then.as_second())
}

/// The age column of an object, e.g. `5m3s`, `<unknown>` without a timestamp.
pub fn age(object: &Value, now: Timestamp) -> Value {
    json!(
        since(&object["metadata"]["creationTimestamp"], now)
            .map(human_duration)
            .unwrap_or_else(|| "<unknown>".into())
    )
}

/// The short durations kubectl prints: more precision for recent times,
/// fewer units as they grow (`45s`, `2m30s`, `15m`, `5h10m`, `3d4h`, `400d`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if days < 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if years < 8 {
        let d = days % 365;
        return if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        };
    }
    format!("{years}y")
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 600), "3h10m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 4 * 3600), "3d4h");
        assert_eq!(human_duration(400 * 86400), "400d");
        assert_eq!(human_duration(3 * 365 * 86400), "3y");
    }
}
