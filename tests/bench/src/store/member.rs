//! `skiff-bench store-member` (hidden): one `skiff-store` member as its own process,
//! the way the benchmark runs Skiff next to etcd. Members talk Raft over the store's
//! real TCP transport (`TcpTransport` + `serve_peers`); clients reach each member over
//! loopback HTTP/1.1 with the subset of etcd's v3 gRPC-gateway JSON API the workload
//! uses (`/v3/kv/put`, `/v3/kv/range`, `/v3/watch`, `/health`), so the very same
//! client code, JSON and base64 drive both sides.
//!
//! Not etcd's whole API: a range reads one key (no `range_end`), a watch watches the
//! prefix its `range_end` implies from the current revision. Errors answer 500 (503
//! for a store timeout) with the store's message.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use skiff_store::{
    EventKind, KeyValue, Member, Op, Store, StoreConfig, StoreError, TcpTransport, Txn,
};
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug)]
pub struct MemberOptions {
    /// This member's id (1-based position in `--peers`).
    #[arg(long)]
    pub id: u64,
    /// Data directory (the sled database).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Loopback address of the client (HTTP) listener.
    #[arg(long)]
    pub client_addr: SocketAddr,
    /// Every member's peer address, `1=HOST:PORT,2=HOST:PORT,…`.
    #[arg(long)]
    pub peers: String,
}

pub async fn run(options: MemberOptions) -> Result<()> {
    let mut members = Vec::new();
    for entry in options.peers.split(',') {
        let (id, addr) = entry
            .split_once('=')
            .with_context(|| format!("--peers entry {entry:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .parse()
            .with_context(|| format!("member id in {entry:?}"))?;
        members.push(Member {
            id,
            name: format!("m{id}"),
            peer_addr: addr.to_string(),
        });
    }
    let Some(me) = members.iter().find(|m| m.id == options.id).cloned() else {
        bail!("--peers does not name member {}", options.id);
    };
    let transport = TcpTransport::new(options.id);
    transport.set_members(&members);
    let config = StoreConfig {
        id: options.id,
        members: members.iter().map(|m| m.id).collect(),
        member_info: members.clone(),
        ..StoreConfig::new(&options.data_dir)
    };
    let peer_listener = tokio::net::TcpListener::bind(&me.peer_addr)
        .await
        .with_context(|| format!("binding the peer address {}", me.peer_addr))?;
    let store = Store::open_member(config, transport)
        .await
        .context("opening the store")?;
    let cancel = CancellationToken::new();
    tokio::spawn(skiff_store::serve_peers(
        peer_listener,
        store.clone(),
        cancel.clone(),
    ));
    let app = Router::new()
        .route("/health", get(health))
        .route("/v3/kv/put", post(put))
        .route("/v3/kv/range", post(range))
        .route("/v3/watch", post(watch))
        .with_state(store.clone());
    let listener = tokio::net::TcpListener::bind(options.client_addr)
        .await
        .with_context(|| format!("binding the client address {}", options.client_addr))?;
    // Small writes (a watch event, a short answer) go out at once, as etcd's do: with
    // Nagle's algorithm a second small write waits for the peer's delayed ACK (~40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            eprintln!("store-member: TCP_NODELAY: {error}");
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Open watch streams would hold a graceful shutdown forever: stop on the signal.
    let result = tokio::select! {
        result = axum::serve(listener, app).into_future() => result.context("serving clients"),
        _ = term.recv() => Ok(()),
    };
    cancel.cancel();
    store.close().await;
    result
}

async fn health(State(store): State<Store>) -> Response {
    // etcd answers healthy once it has a leader.
    let healthy = store.leader().is_some();
    axum::Json(json!({"health": if healthy { "true" } else { "false" }})).into_response()
}

#[derive(Deserialize)]
struct PutRequest {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct RangeRequest {
    key: String,
}

#[derive(Deserialize)]
struct WatchRequest {
    create_request: WatchCreate,
}

#[derive(Deserialize)]
struct WatchCreate {
    key: String,
}

fn bad_request(what: &str, error: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("{what}: {error}")).into_response()
}

fn store_error(error: StoreError) -> Response {
    let status = match error {
        StoreError::Timeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, error.to_string()).into_response()
}

fn decode_key(encoded: &str) -> Result<String, (StatusCode, String)> {
    let bad =
        |what: &str, e: &dyn std::fmt::Display| (StatusCode::BAD_REQUEST, format!("{what}: {e}"));
    let bytes = B64
        .decode(encoded)
        .map_err(|e| bad("key is not base64", &e))?;
    String::from_utf8(bytes).map_err(|e| bad("key is not UTF-8", &e))
}

/// etcd's JSON for a key-value (int64 fields as strings, as the gateway writes them).
fn kv_json(kv: &KeyValue) -> serde_json::Value {
    json!({
        "key": B64.encode(&kv.key),
        "value": B64.encode(&kv.value),
        "create_revision": kv.create_revision.to_string(),
        "mod_revision": kv.mod_revision.to_string(),
        "version": kv.version.to_string(),
    })
}

async fn put(State(store): State<Store>, body: String) -> Response {
    let request: PutRequest = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(e) => return bad_request("put body", e),
    };
    let key = match decode_key(&request.key) {
        Ok(key) => key,
        Err(response) => return response.into_response(),
    };
    let value = match B64.decode(&request.value) {
        Ok(value) => value,
        Err(e) => return bad_request("value is not base64", e),
    };
    match store.txn(Txn::ops(vec![Op::put(key, value)])).await {
        Ok(response) => axum::Json(json!({"header": {"revision": response.revision.to_string()}}))
            .into_response(),
        Err(error) => store_error(error),
    }
}

async fn range(State(store): State<Store>, body: String) -> Response {
    let request: RangeRequest = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(e) => return bad_request("range body", e),
    };
    let key = match decode_key(&request.key) {
        Ok(key) => key,
        Err(response) => return response.into_response(),
    };
    // Linearizable, like etcd's default range.
    match store.get(&key).await {
        Ok(found) => {
            let revision = store.revision().to_string();
            let answer = match found {
                Some(kv) => json!({
                    "header": {"revision": revision},
                    "kvs": [kv_json(&kv)],
                    "count": "1",
                }),
                None => json!({"header": {"revision": revision}}),
            };
            axum::Json(answer).into_response()
        }
        Err(error) => store_error(error),
    }
}

async fn watch(State(store): State<Store>, body: String) -> Response {
    let request: WatchRequest = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(e) => return bad_request("watch body", e),
    };
    let prefix = match decode_key(&request.create_request.key) {
        Ok(prefix) => prefix,
        Err(response) => return response.into_response(),
    };
    let start = store.revision();
    let events = match store.watch(&prefix, start) {
        Ok(events) => events,
        Err(error) => return store_error(error),
    };
    let created = json!({"result": {"header": {"revision": start.to_string()}, "created": true}});
    let line = |value: serde_json::Value| {
        let mut text = value.to_string();
        text.push('\n');
        Ok::<_, std::io::Error>(bytes::Bytes::from(text))
    };
    let head = futures::stream::once(async move { line(created) });
    let tail = events.map(move |event| match event {
        Ok(event) => {
            let kind = if event.kind == EventKind::Delete {
                "DELETE"
            } else {
                "PUT"
            };
            line(json!({"result": {
                "header": {"revision": event.kv.mod_revision.to_string()},
                "events": [{"type": kind, "kv": kv_json(&event.kv)}],
            }}))
        }
        Err(error) => line(json!({"error": {"message": error.to_string()}})),
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(head.chain(tail)))
        .expect("a static response builds")
}
