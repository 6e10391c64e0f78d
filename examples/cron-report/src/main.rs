//! A report job for a CronJob: reads the todos that `examples/todo-api` keeps in
//! `$TODO_DIR` (default `/data`, the same PersistentVolumeClaim, read-only), logs a
//! structured summary, writes it to `$REPORT_DIR/report.json` when that is set,
//! and exits. Its title comes from the setting `REPORT_TITLE` (env or
//! `/etc/config/REPORT_TITLE`); the secret `REPORT_TOKEN` (from `/etc/secrets` or
//! env) is required, to show secrets reaching a job, and is never printed.

use serde::Deserialize;
use skiff_sdk::{config, log};

#[derive(Deserialize)]
struct Todo {
    done: bool,
}

fn main() {
    let title = config::setting("REPORT_TITLE").unwrap_or_else(|| "todo report".into());
    let Some(token) = config::secret("REPORT_TOKEN") else {
        log::error("the secret REPORT_TOKEN is missing", &[]);
        std::process::exit(2);
    };
    let dir = config::setting("TODO_DIR").unwrap_or_else(|| "/data".into());
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) => {
            log::error("cannot read the todos", &[("dir", &dir), ("error", &error.to_string())]);
            std::process::exit(1);
        }
    };
    let (mut total, mut done) = (0u64, 0u64);
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Some(todo) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<Todo>(&text).ok())
        else {
            continue;
        };
        total += 1;
        done += u64::from(todo.done);
    }
    let (total, done, open) = (total.to_string(), done.to_string(), (total - done).to_string());
    let fields = [
        ("title", title.as_str()),
        ("total", total.as_str()),
        ("done", done.as_str()),
        ("open", open.as_str()),
        ("token_bytes", &token.len().to_string()),
    ];
    log::info("report", &fields);
    if let Some(out) = config::setting("REPORT_DIR") {
        let report = serde_json::json!({"title": title, "total": total, "done": done, "open": open});
        if let Err(error) = std::fs::write(format!("{out}/report.json"), report.to_string()) {
            log::error("cannot write the report", &[("error", &error.to_string())]);
            std::process::exit(1);
        }
    }
}
