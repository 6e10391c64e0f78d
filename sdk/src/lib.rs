//! What a Skiff Wasm guest links against (built for `wasm32-wasip2`).
//!
//! - [`config`]: settings and secrets, from the environment (`env`, `envFrom`) or
//!   from files (configMap and secret volumes), so a program reads both the same way.
//! - [`log`]: structured logs, one JSON object per line on stdout, which
//!   `kubectl logs` shows and log tools parse.
//! - [`http`]: responses for HTTP functions (`wasi:http/proxy` components served
//!   by the node, one fresh instance per request). The server entry point is
//!   wstd's `#[wstd::http_server]` attribute: its expansion names `::wstd`, so a
//!   function depends on `wstd = "0.6"` next to this crate.
//!
//! ```no_run
//! use skiff_sdk::http::{self, Body, Request, Response};
//!
//! #[wstd::http_server]
//! async fn main(request: Request<Body>) -> Result<Response<Body>, http::Error> {
//!     let greeting = skiff_sdk::config::setting("GREETING").unwrap_or("hello".into());
//!     skiff_sdk::log::info("request", &[("path", request.uri().path())]);
//!     http::text(200, format!("{greeting}\n"))
//! }
//! ```

pub mod config;
pub mod http;
pub mod log;

pub use wstd;
