//! Responses for HTTP functions, over wstd's `http` types (re-exported).

pub use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

/// A `text/plain` response.
pub fn text(status: u16, body: impl Into<String>) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from(body.into()))?)
}

/// A JSON response of `value`.
pub fn json<T: serde::Serialize>(status: u16, value: &T) -> Result<Response<Body>, Error> {
    let body = serde_json::to_string(value)?;
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))?)
}

/// The request body parsed as JSON; `Err` with a 400 response to send when it is not.
pub async fn read_json<T: for<'a> serde::Deserialize<'a>>(
    request: Request<Body>,
) -> Result<T, Response<Body>> {
    let mut body = request.into_body();
    match body.json::<T>().await {
        Ok(value) => Ok(value),
        Err(error) => Err(text(400, format!("invalid JSON body: {error}\n"))
            .unwrap_or_else(|_| Response::new(Body::empty()))),
    }
}
