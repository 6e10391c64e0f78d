//! Serving a real `wasi:http/proxy` guest (`examples/hello-http`): a fresh
//! instance per request, traps answered with 500, concurrency, denied outbound
//! requests and a graceful stop.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use skiff_wasm::{
    Egress, Exit, HttpService, PodIdentity, ProgramKind, RunError, RuntimeConfig, ServiceNames,
    WasmRuntime,
};
use support::{Captured, PATIENCE, captured_process, image, runtime};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

struct Served {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<Result<Exit, RunError>>,
    out: Captured,
    err: Captured,
    client: HttpClient,
    _cache: tempfile::TempDir,
}

async fn serve_hello() -> Served {
    serve_hello_with(&[], Egress::default()).await
}

async fn serve_hello_with(env: &[(&str, &str)], egress: Egress) -> Served {
    serve_hello_in(env, egress, None).await
}

/// hello-http as pod `shop/web-1`, on a runtime that knows `services`.
async fn serve_hello_in(
    env: &[(&str, &str)],
    egress: Egress,
    services: Option<Arc<dyn ServiceNames>>,
) -> Served {
    let cache = tempfile::tempdir().unwrap();
    // Room for every concurrent request of the tests: a full instance pool
    // answers 503.
    let runtime = WasmRuntime::new(RuntimeConfig {
        cache_dir: cache.path().to_owned(),
        max_instances: 64,
        ..RuntimeConfig::default()
    })
    .unwrap();
    if let Some(services) = services {
        assert!(runtime.set_services(services));
    }
    let program = runtime.prepare(&image("hello-http")).await.unwrap();
    assert_eq!(program.kind(), ProgramKind::HttpProxy);
    let mut vars = vec![("POD_NAME", "web-1")];
    vars.extend_from_slice(env);
    let (mut process, out, err) = captured_process(&["hello-http"], &vars);
    process.sandbox.egress = egress;
    process.sandbox.pod = Some(PodIdentity {
        namespace: "shop".into(),
        name: "web-1".into(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let service = HttpService {
        process,
        listeners: vec![listener],
        drain_timeout: PATIENCE,
    };
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move { runtime.serve(&program, service, cancel).await }
    });
    Served {
        addr,
        cancel,
        task,
        out,
        err,
        client: Client::builder(TokioExecutor::new()).build_http(),
        _cache: cache,
    }
}

impl Served {
    async fn get(&self, path: &str) -> (u16, String) {
        let uri = format!("http://{}{path}", self.addr).parse().unwrap();
        let response = tokio::time::timeout(PATIENCE, self.client.get(uri))
            .await
            .expect("response in time")
            .expect("request succeeds");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn stop(self) -> Exit {
        self.cancel.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("serve ends in time")
            .unwrap()
            .unwrap()
    }
}

#[tokio::test]
async fn greets_with_env_echoes_path_and_logs() {
    let mut served = serve_hello().await;
    let (status, body) = served.get("/some/where?x=1").await;
    assert_eq!(status, 200);
    assert_eq!(body, "Hello from web-1!\npath: /some/where\n");
    served.out.wait_for("GET /some/where\n").await;
    let addr = served.addr;
    assert_eq!(served.stop().await, Exit::Code(0));
    // Stopped: the listener is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn every_request_gets_a_fresh_instance() {
    let served = serve_hello().await;
    for _ in 0..3 {
        assert_eq!(
            served.get("/count").await,
            (200, "requests in this instance: 1\n".into())
        );
    }
    served.stop().await;
}

#[tokio::test]
async fn a_trap_answers_500_and_the_next_request_works() {
    let mut served = serve_hello().await;
    let (status, body) = served.get("/trap").await;
    assert_eq!(status, 500, "{body}");
    served.err.wait_for("asked to trap").await;
    served.err.wait_for("skiff: request handler trapped").await;
    assert_eq!(served.get("/after").await.0, 200);
    served.stop().await;
}

#[tokio::test]
async fn concurrent_requests_are_all_answered() {
    let served = std::sync::Arc::new(serve_hello().await);
    let requests: Vec<_> = (0..24)
        .map(|i| {
            let served = served.clone();
            tokio::spawn(async move { served.get(&format!("/r{i}")).await })
        })
        .collect();
    for (i, request) in requests.into_iter().enumerate() {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200);
        assert!(body.ends_with(&format!("path: /r{i}\n")), "{body}");
    }
    let served = std::sync::Arc::into_inner(served).unwrap();
    served.stop().await;
}

#[tokio::test]
async fn outbound_requests_are_denied() {
    let mut served = serve_hello().await;
    let (status, body) = served.get("/outbound").await;
    // What the guest makes of the refusal is up to its HTTP library (wstd reports
    // the request body stream as reset); the node's own note is in the log.
    assert_eq!(status, 502, "{body}");
    assert!(body.starts_with("outbound request failed"), "{body}");
    served
        .err
        .wait_for("skiff: outbound HTTP request (GET example.com:80) denied")
        .await;
    served.stop().await;
}

/// A plain HTTP server on loopback that answers every request with `body`.
async fn upstream(body: &'static str) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn outbound_requests_reach_only_the_hosts_the_pod_allows() {
    let allowed = upstream("from the allowed upstream\n").await;
    let other = upstream("from another upstream\n").await;
    let url = format!("http://{allowed}/");
    let egress = Egress::parse(&format!("{allowed}, example.org:443")).unwrap();
    let served = serve_hello_with(&[("OUTBOUND_URL", &url)], egress.clone()).await;
    let (status, body) = served.get("/outbound").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "outbound request answered 200 OK\nfrom the allowed upstream\n"
    );
    served.stop().await;

    // The same list does not open another port on the same host.
    let url = format!("http://{other}/");
    let mut served = serve_hello_with(&[("OUTBOUND_URL", &url)], egress).await;
    let (status, body) = served.get("/outbound").await;
    assert_eq!(status, 502, "{body}");
    served
        .err
        .wait_for(&format!(
            "skiff: outbound HTTP request (GET 127.0.0.1:{}) denied",
            other.port()
        ))
        .await;
    served.stop().await;
}

/// A stand-in for the node gateway: answers every request with its Host and
/// caller headers.
async fn echo_gateway() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let mut body = String::new();
                for line in head.lines() {
                    if line.starts_with("get ")
                        || line.starts_with("host:")
                        || line.starts_with("x-test-caller:")
                    {
                        body.push_str(line);
                        body.push('\n');
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// The Services of a test cluster: `shop/db` and `other/api`.
struct TestServices(SocketAddr);

impl ServiceNames for TestServices {
    fn exists(&self, namespace: &str, name: &str) -> bool {
        matches!((namespace, name), ("shop", "db") | ("other", "api"))
    }
    fn gateway(&self) -> SocketAddr {
        self.0
    }
    fn caller_header(&self) -> Option<(http::HeaderName, String)> {
        Some((
            http::HeaderName::from_static("x-test-caller"),
            "token ".into(),
        ))
    }
}

#[tokio::test]
async fn service_names_go_to_the_gateway_without_an_allow_list() {
    let gateway = echo_gateway().await;
    let services: Arc<dyn ServiceNames> = Arc::new(TestServices(gateway));
    for (url, host) in [
        ("http://db/items?x=1", "db.shop.svc.cluster.local"),
        (
            "http://db.shop:5000/items?x=1",
            "db.shop.svc.cluster.local:5000",
        ),
        (
            "http://api.other.svc/items?x=1",
            "api.other.svc.cluster.local",
        ),
        (
            "http://api.other.svc.cluster.local/items?x=1",
            "api.other.svc.cluster.local",
        ),
    ] {
        let served = serve_hello_in(
            &[("OUTBOUND_URL", url)],
            Egress::default(),
            Some(Arc::clone(&services)),
        )
        .await;
        let (status, body) = served.get("/outbound").await;
        assert_eq!(status, 200, "{url}: {body}");
        assert_eq!(
            body,
            format!(
                "outbound request answered 200 OK\nget /items?x=1 http/1.1\nhost: {host}\nx-test-caller: token shop/web-1\n"
            ),
            "{url}"
        );
        served.stop().await;
    }

    // A qualified name of a Service that does not exist fails, and says so.
    let mut served = serve_hello_in(
        &[("OUTBOUND_URL", "http://gone.shop.svc.cluster.local/")],
        Egress::default(),
        Some(Arc::clone(&services)),
    )
    .await;
    let (status, body) = served.get("/outbound").await;
    assert_eq!(status, 502, "{body}");
    served.err.wait_for("there is no Service shop/gone").await;
    served.stop().await;

    // A bare name that is no Service is an ordinary host: the allow-list decides.
    let mut served = serve_hello_in(
        &[("OUTBOUND_URL", "http://api/")],
        Egress::default(),
        Some(services),
    )
    .await;
    let (status, body) = served.get("/outbound").await;
    assert_eq!(status, 502, "{body}");
    served
        .err
        .wait_for("skiff: outbound HTTP request (GET api:80) denied")
        .await;
    served.stop().await;
}

/// A request still running when the stop comes is finished, not cut off, and the
/// stop waits for it.
#[tokio::test]
async fn stopping_lets_in_flight_requests_finish() {
    let served = serve_hello().await;
    // `/count` is quick, so hold a connection mid-request by sending only the head.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    stream
        .write_all(b"POST /late HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
        .await
        .unwrap();
    // Make sure the server has the request before stopping.
    served.get("/ready").await;
    served.cancel.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(b"cde").await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("path: /late"), "{response}");
    let exit = tokio::time::timeout(PATIENCE, served.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(exit, Exit::Code(0));
}

#[tokio::test]
async fn kinds_are_not_mixed_up() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(cache.path());
    let http = runtime.prepare(&image("hello-http")).await.unwrap();
    let (process, _, _) = captured_process(&["x"], &[]);
    let ran = runtime.run(&http, process, CancellationToken::new()).await;
    assert!(matches!(ran, Err(RunError::WrongKind { .. })), "{ran:?}");

    let command = runtime.prepare(&image("hello")).await.unwrap();
    let (process, _, _) = captured_process(&["x"], &[]);
    let service = HttpService {
        process,
        listeners: vec![TcpListener::bind("127.0.0.1:0").await.unwrap()],
        drain_timeout: PATIENCE,
    };
    let served = runtime
        .serve(&command, service, CancellationToken::new())
        .await;
    assert!(
        matches!(served, Err(RunError::WrongKind { .. })),
        "{served:?}"
    );

    let (process, _, _) = captured_process(&["x"], &[]);
    let service = HttpService {
        process,
        listeners: vec![],
        drain_timeout: PATIENCE,
    };
    let served = runtime
        .serve(&http, service, CancellationToken::new())
        .await;
    assert!(
        matches!(served, Err(RunError::NoListener { .. })),
        "{served:?}"
    );
}
