//! The peer: a native HTTP/1.1 hello server on hyper, answering what the
//! hello-http guest answers.

use std::net::SocketAddr;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[derive(clap::Args, Debug)]
pub struct HelloServerOptions {
    #[arg(long)]
    pub port: u16,
}

pub async fn serve_hello(options: HelloServerOptions) -> Result<()> {
    let address: SocketAddr = ([127, 0, 0, 1], options.port).into();
    let listener = tokio::net::TcpListener::bind(address).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(
                |request: hyper::Request<hyper::body::Incoming>| async move {
                    let body = format!("Hello from native!\npath: {}\n", request.uri().path());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        body,
                    ))))
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
