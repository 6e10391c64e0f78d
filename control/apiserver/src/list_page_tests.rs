//! Lists with `limit` and `continue` read every page at the first page's revision,
//! whatever is written between pages; a continue token whose revision was compacted
//! answers 410.

use axum::http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use skiff_store::{Op, Store, StoreConfig, Txn};
use tokio_util::sync::CancellationToken;

use crate::ApiServer;

const PREFIX: &str = "/registry/core/configmaps/default/";

async fn put(store: &Store, name: &str, value: &str) -> i64 {
    let object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"v": value},
    });
    let op = Op::put(format!("{PREFIX}{name}"), object.to_string());
    store.txn(Txn::ops(vec![op])).await.unwrap().revision
}

async fn get(base: &str, query: &str) -> (StatusCode, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let uri = format!("{base}/api/v1/namespaces/default/configmaps?{query}");
    let response = client.get(uri.parse().unwrap()).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

fn names(list: &Value) -> Vec<(String, String)> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().to_owned(),
                o["data"]["v"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_stay_at_the_first_pages_revision_and_expire_with_410() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).await.unwrap();
    let cancel = CancellationToken::new();
    let router = ApiServer::new(store.clone(), cancel.clone()).router();
    let base = crate::serve_on_loopback(router).await;

    for i in 0..5 {
        put(&store, &format!("cm-{i}"), "old").await;
    }
    let (status, first) = get(&base, "limit=2").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let revision = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        names(&first),
        [("cm-0".into(), "old".into()), ("cm-1".into(), "old".into())]
    );

    // Between pages: one changed, one deleted, one created before the cut.
    put(&store, "cm-3", "new").await;
    put(&store, "cm-1a", "new").await;
    store
        .txn(Txn::ops(vec![Op::delete(format!("{PREFIX}cm-2"))]))
        .await
        .unwrap();

    let mut seen = names(&first);
    let mut token = first["metadata"]["continue"].as_str().unwrap().to_owned();
    let mut pages = 1;
    loop {
        let (status, page) = get(&base, &format!("limit=2&continue={token}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["metadata"]["resourceVersion"], revision.as_str());
        seen.extend(names(&page));
        pages += 1;
        match page["metadata"]["continue"].as_str() {
            Some(next) => token = next.to_owned(),
            None => break,
        }
    }
    let want: Vec<(String, String)> = (0..5)
        .map(|i| (format!("cm-{i}"), "old".to_owned()))
        .collect();
    assert_eq!(
        seen, want,
        "the pages are not the list at revision {revision}"
    );
    assert_eq!(pages, 3);

    // A fresh list sees the writes.
    let (_, now) = get(&base, "").await;
    let now: Vec<String> = names(&now).into_iter().map(|(n, _)| n).collect();
    assert_eq!(now, ["cm-0", "cm-1", "cm-1a", "cm-3", "cm-4"]);

    // Once history at that revision is compacted, its token is gone.
    store.compact(store.revision()).await.unwrap();
    let (status, gone) = get(&base, &format!("limit=2&continue={token}")).await;
    assert_eq!(status, StatusCode::GONE, "{gone}");
    assert_eq!(gone["reason"], "Expired");

    // A token for another list, or garbage, is a 400.
    let other = hex::encode(format!("{revision}:/registry/core/secrets/default/x"));
    let (status, _) = get(&base, &format!("limit=2&continue={other}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get(&base, "limit=2&continue=zz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    cancel.cancel();
    store.close().await;
}

/// `resourceVersion` and `resourceVersionMatch` choose the state a list reads: unset
/// the latest, `0` any, `Exact` that revision (410 once compacted), `NotOlderThan` at
/// least that revision (504 if the store has not reached it); bad combinations are
/// refused as Kubernetes refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_version_and_match_choose_the_state_a_list_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).await.unwrap();
    let cancel = CancellationToken::new();
    let router = ApiServer::new(store.clone(), cancel.clone()).router();
    let base = crate::serve_on_loopback(router).await;

    let early = put(&store, "cm-a", "1").await;
    put(&store, "cm-a", "2").await;
    let latest = put(&store, "cm-b", "1").await;
    let now = vec![("cm-a".into(), "2".into()), ("cm-b".into(), "1".into())];

    for query in ["", "resourceVersion=", "resourceVersion=0"] {
        let (status, list) = get(&base, query).await;
        assert_eq!(status, StatusCode::OK, "{query}: {list}");
        assert_eq!(names(&list), now, "{query}");
        assert_eq!(list["metadata"]["resourceVersion"], latest.to_string());
    }

    let (status, old) = get(
        &base,
        &format!("resourceVersion={early}&resourceVersionMatch=Exact"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{old}");
    assert_eq!(names(&old), [("cm-a".into(), "1".into())]);
    assert_eq!(old["metadata"]["resourceVersion"], early.to_string());

    // Exact pages stay at that revision.
    let (status, page) = get(
        &base,
        &format!("resourceVersion={latest}&resourceVersionMatch=Exact&limit=1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    put(&store, "cm-a", "3").await;
    let token = page["metadata"]["continue"].as_str().unwrap();
    let (status, rest) = get(&base, &format!("limit=1&continue={token}")).await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    assert_eq!(names(&rest), [("cm-b".into(), "1".into())]);
    assert_eq!(rest["metadata"]["resourceVersion"], latest.to_string());

    for query in [
        format!("resourceVersion={early}&resourceVersionMatch=NotOlderThan"),
        format!("resourceVersion={early}"),
    ] {
        let (status, list) = get(&base, &query).await;
        assert_eq!(status, StatusCode::OK, "{query}: {list}");
        assert_eq!(
            names(&list),
            [("cm-a".into(), "3".into()), ("cm-b".into(), "1".into())],
            "{query}"
        );
    }

    let future = latest + 100;
    for query in [
        format!("resourceVersion={future}&resourceVersionMatch=NotOlderThan"),
        format!("resourceVersion={future}&resourceVersionMatch=Exact"),
    ] {
        let (status, error) = get(&base, &query).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{query}: {error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("Too large resource version"),
            "{error}"
        );
    }

    for (query, want) in [
        (
            "resourceVersionMatch=Exact",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "resourceVersion=0&resourceVersionMatch=Exact",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "resourceVersion=5&resourceVersionMatch=Newest",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("resourceVersion=five", StatusCode::BAD_REQUEST),
    ] {
        let (status, error) = get(&base, query).await;
        assert_eq!(status, want, "{query}: {error}");
    }
    let (status, error) = get(
        &base,
        &format!("resourceVersion={latest}&limit=1&continue={token}"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");

    store.compact(latest).await.unwrap();
    let (status, gone) = get(
        &base,
        &format!("resourceVersion={early}&resourceVersionMatch=Exact"),
    )
    .await;
    assert_eq!(status, StatusCode::GONE, "{gone}");
    assert_eq!(gone["reason"], "Expired");

    cancel.cancel();
    store.close().await;
}
