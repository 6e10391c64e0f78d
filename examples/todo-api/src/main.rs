//! A JSON API of todos, as an HTTP function whose data lives on a
//! PersistentVolumeClaim mounted at `$TODO_DIR` (default `/data`): one file per
//! todo, `<id>.json`, so every fresh instance (one per request) sees all of them.
//!
//! - `GET /todos` → `[{"id":1,"title":"…","done":false}, …]` (by id)
//! - `POST /todos` with `{"title":"…"}` → 201 and the new todo
//! - `GET /todos/<id>`, `PUT /todos/<id>` with `{"title"?, "done"?}`, `DELETE /todos/<id>`
//! - `GET /healthz` → `ok`
//!
//! Every change is logged as a structured line (`kubectl logs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use skiff_sdk::http::{self, Body, Method, Request, Response};
use skiff_sdk::{config, log};

#[derive(Serialize, Deserialize, Clone)]
struct Todo {
    id: u64,
    title: String,
    done: bool,
}

#[derive(Deserialize)]
struct NewTodo {
    title: String,
}

#[derive(Deserialize)]
struct Change {
    title: Option<String>,
    done: Option<bool>,
}

fn dir() -> PathBuf {
    PathBuf::from(config::setting("TODO_DIR").unwrap_or_else(|| "/data".into()))
}

fn all() -> std::io::Result<Vec<Todo>> {
    let mut todos = Vec::new();
    for entry in std::fs::read_dir(dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json")
            && let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(todo) = serde_json::from_str::<Todo>(&text)
        {
            todos.push(todo);
        }
    }
    todos.sort_by_key(|t| t.id);
    Ok(todos)
}

fn save(todo: &Todo) -> std::io::Result<()> {
    let path = dir().join(format!("{}.json", todo.id));
    let tmp = dir().join(format!(".{}.json.tmp", todo.id));
    std::fs::write(&tmp, serde_json::to_vec(todo)?)?;
    std::fs::rename(tmp, path)
}

fn storage_error(error: std::io::Error) -> Result<Response<Body>, http::Error> {
    log::error("storage failed", &[("error", &error.to_string())]);
    http::text(500, format!("storage failed: {error}\n"))
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, http::Error> {
    let path = request.uri().path().trim_end_matches('/').to_string();
    let method = request.method().clone();
    let id = path
        .strip_prefix("/todos/")
        .map(|id| id.parse::<u64>().ok());
    match (method, path.as_str(), id) {
        (Method::GET, "/healthz", _) => http::text(200, "ok\n"),
        (Method::GET, "/todos", _) => match all() {
            Ok(todos) => http::json(200, &todos),
            Err(error) => storage_error(error),
        },
        (Method::POST, "/todos", _) => {
            let new: NewTodo = match http::read_json(request).await {
                Ok(new) => new,
                Err(response) => return Ok(response),
            };
            if new.title.trim().is_empty() {
                return http::text(400, "title: must not be empty\n");
            }
            let next = match all() {
                Ok(todos) => todos.last().map_or(1, |t| t.id + 1),
                Err(error) => return storage_error(error),
            };
            let todo = Todo {
                id: next,
                title: new.title,
                done: false,
            };
            if let Err(error) = save(&todo) {
                return storage_error(error);
            }
            log::info("created", &[("id", &todo.id.to_string()), ("title", &todo.title)]);
            http::json(201, &todo)
        }
        (_, _, Some(None)) => http::text(400, "the id must be a number\n"),
        (method, _, Some(Some(id))) => {
            let found = match all() {
                Ok(todos) => todos.into_iter().find(|t| t.id == id),
                Err(error) => return storage_error(error),
            };
            let Some(mut todo) = found else {
                return http::text(404, format!("no todo {id}\n"));
            };
            match method {
                Method::GET => http::json(200, &todo),
                Method::PUT => {
                    let change: Change = match http::read_json(request).await {
                        Ok(change) => change,
                        Err(response) => return Ok(response),
                    };
                    todo.title = change.title.unwrap_or(todo.title);
                    todo.done = change.done.unwrap_or(todo.done);
                    if let Err(error) = save(&todo) {
                        return storage_error(error);
                    }
                    log::info("updated", &[("id", &id.to_string())]);
                    http::json(200, &todo)
                }
                Method::DELETE => {
                    if let Err(error) = std::fs::remove_file(dir().join(format!("{id}.json"))) {
                        return storage_error(error);
                    }
                    log::info("deleted", &[("id", &id.to_string())]);
                    http::text(204, "")
                }
                _ => http::text(405, "use GET, PUT or DELETE\n"),
            }
        }
        _ => http::text(404, "try /todos\n"),
    }
}
