//! `pods/binding`: a pod is bound once, to the pod the binding names (its
//! UID), and a write to the pod between the read and the bind is retried
//! rather than failing the binding.

use axum::http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use skiff_store::{Store, StoreConfig};
use tokio_util::sync::CancellationToken;

use crate::ApiServer;

async fn call(base: &str, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let request = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn binding(uid: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "web", "uid": uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_is_bound_once_to_the_pod_the_binding_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).await.unwrap();
    let cancel = CancellationToken::new();
    let api = ApiServer::new(store.clone(), cancel.clone());
    api.bootstrap().await.unwrap();
    let router = api.router();
    let base = crate::serve_on_loopback(router).await;

    let pods = "/api/v1/namespaces/default/pods";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "x"}]}});
    let (status, created) = call(&base, Method::POST, pods, pod).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();

    let path = format!("{pods}/web/binding");
    let (status, body) = call(&base, Method::POST, &path, binding("someone-else", "n1")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Precondition failed: UID in precondition: someone-else"),
        "{body}"
    );

    // Writes racing the binding (as a node or controller makes them) do
    // not make it fail.
    let patches = async {
        let mut statuses = Vec::new();
        for round in 0..20 {
            let patch = json!({"metadata": {"labels": {"round": round.to_string()}}});
            let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
            let request = Request::builder()
                .method(Method::PATCH)
                .uri(format!("{base}/api/v1/namespaces/default/pods/web"))
                .header("content-type", "application/merge-patch+json")
                .body(Full::new(bytes::Bytes::from(patch.to_string())))
                .unwrap();
            statuses.push(client.request(request).await.unwrap().status());
        }
        statuses
    };
    let binds = async {
        let mut outcomes = Vec::new();
        for _ in 0..5 {
            outcomes.push(call(&base, Method::POST, &path, binding(&uid, "n1")).await);
        }
        outcomes
    };
    let (patched, bound) = tokio::join!(patches, binds);
    assert!(patched.iter().all(|s| *s == StatusCode::OK), "{patched:?}");
    assert_eq!(bound[0].0, StatusCode::CREATED, "{}", bound[0].1);
    assert!(
        bound[1..].iter().all(|(s, _)| *s == StatusCode::CONFLICT),
        "bound once: {bound:?}"
    );

    let (_, pod) = call(&base, Method::GET, &format!("{pods}/web"), Value::Null).await;
    assert_eq!(pod["spec"]["nodeName"], "n1");
    assert_eq!(pod["status"]["conditions"][0]["type"], "PodScheduled");

    let (status, body) = call(&base, Method::POST, &path, binding(&uid, "n2")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("is already assigned to node \"n1\""),
        "{body}"
    );
    cancel.cancel();
}
