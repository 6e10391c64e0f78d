//! Structured logs: one JSON object per line on stdout, e.g.
//! `{"ts":"1763856000.123","level":"info","msg":"saved","id":"3"}`. The node keeps
//! each container's stdout as its log (`kubectl logs`).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// Writes one log line at `level` with `msg` and the given fields.
pub fn log(level: &str, msg: &str, fields: &[(&str, &str)]) {
    let mut line = Map::new();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    line.insert(
        "ts".into(),
        Value::String(format!("{}.{:03}", now.as_secs(), now.subsec_millis())),
    );
    line.insert("level".into(), Value::String(level.into()));
    line.insert("msg".into(), Value::String(msg.into()));
    for (key, value) in fields {
        line.insert((*key).into(), Value::String((*value).into()));
    }
    let mut out = std::io::stdout().lock();
    // A log line that cannot be written has nowhere else to go.
    let _ = writeln!(out, "{}", Value::Object(line));
    let _ = out.flush();
}

pub fn info(msg: &str, fields: &[(&str, &str)]) {
    log("info", msg, fields);
}

pub fn warn(msg: &str, fields: &[(&str, &str)]) {
    log("warn", msg, fields);
}

pub fn error(msg: &str, fields: &[(&str, &str)]) {
    log("error", msg, fields);
}
