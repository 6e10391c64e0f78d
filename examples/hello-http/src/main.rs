//! An HTTP function: a `wasi:http/proxy` component the node serves with a fresh
//! instance per request.
//!
//! - `GET /anything` answers `Hello from <POD_NAME>!` and echoes the path.
//! - `GET /count` counts requests in this instance. The node instantiates the
//!   component for every request, so the answer is always 1: no state leaks from
//!   one request to the next.
//! - `GET /trap` panics (a trap): the node answers 500 and keeps serving.
//! - `GET /outbound` calls `$OUTBOUND_URL` (default `http://example.com/`) and
//!   answers with what it got back. The node denies hosts the pod's
//!   `skiff.dev/allow-outbound` annotation does not list; the guest reports the error.

use std::sync::atomic::{AtomicU64, Ordering};

use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

/// Requests this instance has handled.
static HANDLED: AtomicU64 = AtomicU64::new(0);

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let handled = HANDLED.fetch_add(1, Ordering::Relaxed) + 1;
    let path = request.uri().path().to_string();
    // Goes to the container's log (`kubectl logs`).
    println!("{} {path}", request.method());
    match path.as_str() {
        "/count" => text(StatusCode::OK, format!("requests in this instance: {handled}\n")),
        "/trap" => panic!("asked to trap"),
        "/outbound" => outbound().await,
        _ => {
            let name = std::env::var("POD_NAME").unwrap_or_else(|_| "Skiff".to_string());
            text(StatusCode::OK, format!("Hello from {name}!\npath: {path}\n"))
        }
    }
}

async fn outbound() -> Result<Response<Body>, Error> {
    let url = std::env::var("OUTBOUND_URL").unwrap_or_else(|_| "http://example.com/".into());
    let request = Request::get(url).body(Body::empty())?;
    match Client::new().send(request).await {
        Ok(response) => {
            let status = response.status();
            let mut body = response.into_body();
            let body = body.str_contents().await?.to_string();
            text(
                StatusCode::OK,
                format!("outbound request answered {status}\n{body}"),
            )
        }
        Err(error) => {
            eprintln!("outbound request failed: {error:?}");
            text(
                StatusCode::BAD_GATEWAY,
                format!("outbound request failed: {error:?}\n"),
            )
        }
    }
}

fn text(status: StatusCode, body: String) -> Result<Response<Body>, Error> {
    Ok(Response::builder().status(status).body(Body::from(body))?)
}
