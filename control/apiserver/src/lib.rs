//! The Skiff API server: the Kubernetes REST API over `skiff-store`.
//!
//! It serves what the real `kubectl` and client libraries need: `/version`,
//! discovery, OpenAPI v3 (enough for `kubectl apply`'s default validation),
//! and for each registered resource create/get/list/watch/update/patch/delete
//! with `Status` errors, Table output, and the pod subresources `status`,
//! `binding` and `log`. Objects are stored as JSON under
//! `/registry/<group>/<plural>/<namespace>/<name>`; `resourceVersion` is the
//! store's mod revision.
//!
//! ```no_run
//! # async fn demo(store: skiff_store::Store) -> std::io::Result<()> {
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:6443").await?;
//! let server = skiff_apiserver::ApiServer::new(store, cancel.clone());
//! server.bootstrap().await.expect("default namespaces");
//! server.serve(listener).await?;
//! # Ok(()) }
//! ```

mod aggregated;
mod auth;
mod binding;
mod crd;
mod decode;
mod discovery;
pub mod error;
mod eviction;
mod exec;
mod kinds;
mod lifecycle;
mod logs;
mod meta;
mod metrics;
mod objects;
mod openapi;
mod proto;
mod request;
mod resources;
mod rest;
mod scale;
mod schemas;
mod selectors;
mod table;
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use skiff_store::Store;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::objects::{Objects, WriteOptions};
use crate::request::Query;
use crate::resources::Registry;

/// The built-in registry, for tests of the documents built from it.
#[cfg(test)]
pub(crate) fn registry() -> &'static Registry {
    static REGISTRY: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(Registry::builtin);
    &REGISTRY
}

/// Shared by every request handler.
pub(crate) struct AppState {
    pub store: Store,
    pub cancel: CancellationToken,
    /// Talks to node agents (logs).
    pub http: Client<HttpConnector, Empty<Bytes>>,
    /// What is served now: the built-in kinds and the custom resources.
    pub registry: crd::Live,
}

impl AppState {
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.get()
    }
}

/// The API server: build it over a store, then [`ApiServer::serve`].
pub struct ApiServer {
    state: Arc<AppState>,
}

/// The namespaces every cluster starts with.
const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

impl ApiServer {
    pub fn new(store: Store, cancel: CancellationToken) -> ApiServer {
        let http = Client::builder(TokioExecutor::new()).build_http();
        ApiServer {
            state: Arc::new(AppState {
                store,
                cancel,
                http,
                registry: crd::Live::default(),
            }),
        }
    }

    /// Create the system namespaces and the `skiff` IngressClass if they are missing.
    pub async fn bootstrap(&self) -> Result<(), ApiError> {
        let namespaces = crate::kinds::namespace::resource();
        let objects = Objects::new(&self.state.store, &namespaces);
        for name in SYSTEM_NAMESPACES {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            match objects.create(None, &ns, &WriteOptions::default()).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        let priority = crate::kinds::priorityclass::resource();
        let objects = Objects::new(&self.state.store, &priority);
        for class in crate::kinds::priorityclass::system_classes() {
            match objects.create(None, &class, &WriteOptions::default()).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        // The node gateway serves Ingresses of this class (and of none).
        let classes = crate::kinds::ingress::ingress_class();
        let objects = Objects::new(&self.state.store, &classes);
        let class = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "skiff",
                "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {"controller": "skiff.dev/gateway"}
        });
        match objects.create(None, &class, &WriteOptions::default()).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(err) => return Err(err),
        }
        Ok(())
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/version",
                get(|| async { axum::Json(discovery::version()) }),
            )
            // The Python client asks for `/version/`.
            .route(
                "/version/",
                get(|| async { axum::Json(discovery::version()) }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .route("/livez", get(|| async { "ok" }))
            .route("/readyz", get(|| async { "ok" }))
            .route(
                "/api",
                get(
                    |State(state): State<Arc<AppState>>, headers: HeaderMap| async move {
                        aggregated::respond(&state.registry(), aggregated::Root::Core, &headers)
                    },
                ),
            )
            .route(
                "/apis",
                get(
                    |State(state): State<Arc<AppState>>, headers: HeaderMap| async move {
                        aggregated::respond(&state.registry(), aggregated::Root::Groups, &headers)
                    },
                ),
            )
            .route("/apis/{group}", get(group_discovery))
            .route(
                "/apis/metrics.k8s.io",
                get(|| async { axum::Json(metrics::api_group()) }),
            )
            .route(
                "/apis/metrics.k8s.io/v1beta1",
                get(|| async { axum::Json(metrics::resource_list()) }),
            )
            .route("/apis/metrics.k8s.io/v1beta1/{*rest}", any(metrics::handle))
            .route(
                "/openapi/v3",
                get(|State(state): State<Arc<AppState>>| async move {
                    openapi::index_response(&state.registry())
                }),
            )
            .route("/openapi/v3/{*path}", get(openapi_document))
            .route("/api/{version}", get(core_resources))
            .route(
                "/api/v1/namespaces/{namespace}/pods/{name}/exec",
                any(exec::handle),
            )
            .route("/api/{version}/{*rest}", any(core_request))
            .route("/apis/{group}/{version}", get(group_resources))
            .route("/apis/{group}/{version}/{*rest}", any(group_request))
            .fallback(|| async { ApiError::NoRoute })
            .with_state(self.state.clone())
    }

    /// Serve until the cancellation token fires; watches end then too.
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        self.serve_with(listener, Router::new()).await
    }

    /// [`ApiServer::serve`] with `extra` routes merged in: paths outside the
    /// Kubernetes API that the binary adds (`skiff control`'s membership endpoint).
    pub async fn serve_with(
        &self,
        listener: tokio::net::TcpListener,
        extra: Router,
    ) -> std::io::Result<()> {
        let cancel = self.state.cancel.clone();
        // The served custom resources are known before the first request.
        crd::refresh(&self.state).await;
        let lifecycle = tokio::spawn(lifecycle::run(self.state.clone()));
        let definitions = tokio::spawn(crd::run(self.state.clone()));
        // Watch events are small writes: without TCP_NODELAY, Nagle's algorithm
        // holds each behind the previous one's delayed ACK (~40 ms on loopback).
        let listener = listener.tap_io(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "TCP_NODELAY");
            }
        });
        let result = axum::serve(listener, self.router().merge(extra))
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        lifecycle.abort();
        definitions.abort();
        result
    }
}

/// A kubeconfig for a cluster served at `server` without credentials
/// (`skiff up` listens on loopback only).
pub fn kubeconfig(server: &str, cluster: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n\
         contexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {cluster}-admin\n    namespace: default\n\
         current-context: {cluster}\nusers:\n- name: {cluster}-admin\n  user: {{}}\npreferences: {{}}\n"
    )
}

async fn openapi_document(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = Query::parse(query.as_deref());
    openapi::document_response(&state.registry(), &path, query.get("hash"))
        .unwrap_or_else(|| ApiError::NoRoute.into_response())
}

async fn group_discovery(
    State(state): State<Arc<AppState>>,
    Path(group): Path<String>,
) -> Response {
    match discovery::api_group(&state.registry(), &group) {
        Some(group) => axum::Json(group).into_response(),
        None => ApiError::NoRoute.into_response(),
    }
}

async fn core_resources(
    State(state): State<Arc<AppState>>,
    Path(version): Path<String>,
) -> Response {
    match discovery::resource_list(&state.registry(), "", &version) {
        Some(list) => axum::Json(list).into_response(),
        None => ApiError::NoRoute.into_response(),
    }
}

async fn group_resources(
    State(state): State<Arc<AppState>>,
    Path((group, version)): Path<(String, String)>,
) -> Response {
    match discovery::resource_list(&state.registry(), &group, &version) {
        Some(list) => axum::Json(list).into_response(),
        None => ApiError::NoRoute.into_response(),
    }
}

async fn core_request(
    State(state): State<Arc<AppState>>,
    Path((version, rest)): Path<(String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    dispatch(state, "", &version, &rest, method, query, headers, body).await
}

async fn group_request(
    State(state): State<Arc<AppState>>,
    Path((group, version, rest)): Path<(String, String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    dispatch(state, &group, &version, &rest, method, query, headers, body).await
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    state: Arc<AppState>,
    group: &str,
    version: &str,
    rest: &str,
    method: Method,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = Query::parse(query.as_deref());
    let target = match request::resolve(&state.registry(), group, version, rest) {
        Ok(target) => target,
        Err(err) => return err.into_response(),
    };
    let span = tracing::debug_span!("request", %method, resource = target.resource.plural,
        namespace = target.namespace.as_deref().unwrap_or(""), name = target.name.as_deref().unwrap_or(""));
    let _enter = span.enter();
    match rest::handle(state, method, target, query, headers, body).await {
        Ok(response) => response,
        Err(err) => {
            if err.code() == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(%err, "request failed");
            }
            err.into_response()
        }
    }
}

#[cfg(test)]
mod fuzz_tests;

/// Serves `router` on a free loopback port for a test; returns its base URL.
#[cfg(test)]
pub(crate) async fn serve_on_loopback(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

#[cfg(test)]
mod list_page_tests;
#[cfg(test)]
mod scale_tests;

#[cfg(test)]
mod binding_tests;
