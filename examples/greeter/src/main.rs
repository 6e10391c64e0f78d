//! A function that calls another Service by its name: a `wasi:http/proxy`
//! component whose answer includes what `hello-http` answered it.
//!
//! - `GET /direct` answers `Greeter <POD_NAME> here.` without calling anyone
//!   (what hello-http's `/outbound` calls back in the example, so neither
//!   Service calls the other forever).
//! - any other path calls `$UPSTREAM_URL` (default `http://hello-http/greeter`:
//!   the Service `hello-http` in the pod's own namespace) and answers with its
//!   own line followed by the upstream's status and body.
//!
//! The guest uses plain URLs: the node sends requests for Service names to its
//! gateway, which picks a ready endpoint (and wakes a Deployment scaled to zero).

use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_string();
    println!("{} {path}", request.method());
    let name = std::env::var("POD_NAME").unwrap_or_else(|_| "greeter".to_string());
    if path == "/direct" {
        return text(StatusCode::OK, format!("Greeter {name} here.\n"));
    }
    let url = std::env::var("UPSTREAM_URL").unwrap_or_else(|_| "http://hello-http/greeter".into());
    let upstream = Request::get(url.as_str()).body(Body::empty())?;
    match Client::new().send(upstream).await {
        Ok(response) => {
            let status = response.status();
            let mut body = response.into_body();
            let body = body.str_contents().await?.to_string();
            text(
                StatusCode::OK,
                format!("Greeter {name} here. {url} answered {status}:\n{body}"),
            )
        }
        Err(error) => {
            eprintln!("calling {url} failed: {error:?}");
            text(
                StatusCode::BAD_GATEWAY,
                format!("Greeter {name} could not reach {url}: {error:?}\n"),
            )
        }
    }
}

fn text(status: StatusCode, body: String) -> Result<Response<Body>, Error> {
    Ok(Response::builder().status(status).body(Body::from(body))?)
}
