//! A merge patch of `…/scale` names no resourceVersion of its own: when a
//! concurrent write to the parent wins, the API server applies it again to the
//! new state rather than answering 409 (the scale-from-zero gateway and the HPA
//! patch replicas while controllers write the same Deployment).

use axum::http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use skiff_store::{Store, StoreConfig};
use tokio_util::sync::CancellationToken;

use crate::ApiServer;

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments";

async fn send(
    base: &str,
    method: &str,
    path: &str,
    media: &str,
    body: Value,
) -> (StatusCode, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("content-type", media)
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_patches_racing_other_writes_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).await.unwrap();
    let cancel = CancellationToken::new();
    let router = ApiServer::new(store.clone(), cancel.clone()).router();
    let base = crate::serve_on_loopback(router).await;

    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    let (status, body) = send(
        &base,
        "POST",
        "/api/v1/namespaces",
        "application/json",
        namespace,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "example/web:1"}]},
            },
        },
    });
    let (status, body) = send(&base, "POST", DEPLOYMENT, "application/json", deployment).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let mut writers = Vec::new();
    for i in 0..6 {
        let base = base.clone();
        writers.push(tokio::spawn(async move {
            let scale_path = format!("{DEPLOYMENT}/web/scale");
            let parent_path = format!("{DEPLOYMENT}/web");
            let scale = send(
                &base,
                "PATCH",
                &scale_path,
                "application/merge-patch+json",
                json!({"spec": {"replicas": i}}),
            );
            let label = send(
                &base,
                "PATCH",
                &parent_path,
                "application/merge-patch+json",
                json!({"metadata": {"labels": {format!("writer-{i}"): "yes"}}}),
            );
            let ((scale_status, scale_body), (label_status, _)) = tokio::join!(scale, label);
            (scale_status, scale_body, label_status)
        }));
    }
    for writer in writers {
        let (scale_status, scale_body, label_status) = writer.await.unwrap();
        assert_eq!(scale_status, StatusCode::OK, "scale patch: {scale_body}");
        assert_eq!(label_status, StatusCode::OK);
    }
    // A patch that names an older version is still refused.
    let (status, body) = send(
        &base,
        "PATCH",
        &format!("{DEPLOYMENT}/web/scale"),
        "application/merge-patch+json",
        json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 3}}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    cancel.cancel();
}
