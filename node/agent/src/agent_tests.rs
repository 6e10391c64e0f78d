//! The whole agent against the in-memory cluster and fake driver, on the real
//! clock (it serves real HTTP, which a paused clock would race).

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::testing::{Attempt, FakeCluster, FakeDriver, Recorded};

fn pod(name: &str, uid: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            containers: vec![Container {
                name: "app".into(),
                image: Some("img".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn phase(recorded: &Recorded, name: &str) -> Option<String> {
    recorded.last_status(name)?.phase.clone()
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn runs_pods_serves_logs_and_finishes_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, changes) = FakeCluster::new();
    let driver = FakeDriver::default();
    let output = Attempt::Exit {
        code: 0,
        output: "hello from app\n".into(),
        after: Duration::from_secs(3600),
    };
    driver.attempts("img", [output]);
    let config = AgentConfig {
        node_name: "n1".into(),
        data_dir: dir.path().to_path_buf(),
        ..AgentConfig::default()
    };
    let agent = NodeAgent::with_cluster(config, cluster.clone(), Arc::new(driver));
    let cancel = CancellationToken::new();
    let running = tokio::spawn(agent.run(cancel.clone()));

    let recorded = cluster.wait_for("the node", |r| !r.nodes.is_empty()).await;
    let status = recorded.nodes[0].status.clone().unwrap();
    let port = status
        .daemon_endpoints
        .unwrap()
        .kubelet_endpoint
        .unwrap()
        .port;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(http_get(addr, "/healthz").await.ends_with("\r\n\r\nok"));

    changes.send(PodChange::Relisting).unwrap();
    changes
        .send(PodChange::Applied(Box::new(pod("web", "u1"))))
        .unwrap();
    changes.send(PodChange::Listed).unwrap();
    cluster
        .wait_for("web running", |r| {
            phase(r, "web").as_deref() == Some("Running")
        })
        .await;
    let mut logs = dir.path().join("pods/default_web_u1/app/0.log");
    // The fake writes its output right after starting; wait for the pump to store it.
    let stored = async {
        while !std::fs::read_to_string(&logs)
            .unwrap_or_default()
            .contains("hello")
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), stored)
        .await
        .expect("log written");
    let response = http_get(addr, "/containerLogs/default/web/app").await;
    assert!(response.ends_with("\r\n\r\nhello from app\n"), "{response}");
    assert!(
        http_get(addr, "/containerLogs/default/nope/app")
            .await
            .starts_with("HTTP/1.0 404")
    );

    let mut deleting = pod("web", "u1");
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    changes
        .send(PodChange::Applied(Box::new(deleting)))
        .unwrap();
    let recorded = cluster
        .wait_for("web deleted", |r| !r.deleted.is_empty())
        .await;
    assert_eq!(recorded.deleted[0].2, "u1");
    logs.pop();
    // The worker removes the directory right after the final delete call.
    for _ in 0..500 {
        if !logs.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!logs.exists(), "the pod's logs are removed with it");

    // A relist that no longer contains a pod stops its worker without deleting it.
    changes
        .send(PodChange::Applied(Box::new(pod("api", "u2"))))
        .unwrap();
    cluster
        .wait_for("api running", |r| {
            phase(r, "api").as_deref() == Some("Running")
        })
        .await;
    changes.send(PodChange::Relisting).unwrap();
    changes.send(PodChange::Listed).unwrap();
    cluster
        .wait_for("api stopped", |r| {
            r.events.iter().any(|e| {
                e.reason.as_deref() == Some("Killing")
                    && e.involved_object.name.as_deref() == Some("api")
            })
        })
        .await;

    // A finished pod seen after a restart is not run again.
    let mut done = pod("old", "u3");
    done.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Succeeded".into()),
        ..Default::default()
    });
    changes.send(PodChange::Applied(Box::new(done))).unwrap();

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let recorded = cluster.recorded();
    assert_eq!(recorded.deleted.len(), 1);
    assert!(recorded.last_status("old").is_none());
}

#[tokio::test]
async fn an_invalid_config_is_refused() {
    let (cluster, _changes) = FakeCluster::new();
    let config = AgentConfig {
        node_name: String::new(),
        ..AgentConfig::default()
    };
    let agent = NodeAgent::with_cluster(config, cluster, Arc::new(FakeDriver::default()));
    let result = agent.run(CancellationToken::new()).await;
    assert!(matches!(result, Err(AgentError::Config(_))));
}
