//! `kubectl exec` on the node: `GET /exec/{namespace}/{pod}/{container}?command=…`
//! upgraded to a WebSocket that speaks Kubernetes' channel protocol
//! (`v5.channel.k8s.io`, or `v4.channel.k8s.io`). The API server passes the
//! upgrade through untouched, as it does to a kubelet.
//!
//! Every binary message starts with a channel byte: 0 stdin (client → node),
//! 1 stdout, 2 stderr, 3 the final `Status` (a `metav1.Status`: `Success`, or
//! `NonZeroExitCode` with the code as an `ExitCode` cause), 4 terminal resize
//! (accepted, ignored), and in v5 255 "close": `[255, 0]` from the client means
//! stdin ended. The node closes the socket after the status.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::driver::{ContainerDriver, ContainerTemplate, ExecSpec, ExitStatus, error_chain};

/// The subprotocols served, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const CLOSE: u8 = 255;

/// Bytes buffered between the command and the socket in each direction.
const PIPE_BYTES: usize = 64 * 1024;

/// What the client asked for, from the request's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecRequest {
    /// Parses `command=…&command=…&stdin=true&…` (the repeated `command`
    /// parameters are argv, in order).
    pub fn parse(query: &str) -> Result<ExecRequest, String> {
        let mut request = ExecRequest {
            command: Vec::new(),
            stdin: false,
            stdout: false,
            stderr: false,
            tty: false,
        };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let flag = || match value.as_ref() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
                "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
                other => Err(format!("invalid boolean value {other:?} for {key}")),
            };
            match key.as_ref() {
                "command" => request.command.push(value.to_string()),
                "stdin" => request.stdin = flag()?,
                "stdout" => request.stdout = flag()?,
                "stderr" => request.stderr = flag()?,
                "tty" => request.tty = flag()?,
                _ => {}
            }
        }
        if request.command.is_empty() {
            return Err("you must specify at least one command for the container".into());
        }
        if !(request.stdin || request.stdout || request.stderr) {
            return Err("you must specify at least one of stdin, stdout, stderr".into());
        }
        Ok(request)
    }
}

/// The `Status` sent on the error channel for how the command ended.
pub fn status_of(command: &[String], result: &Result<ExitStatus, String>) -> Value {
    let non_zero = |code: i32, why: &str| {
        json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: {why}error executing command {command:?}, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    };
    match result {
        Ok(ExitStatus::Code(0)) => json!({"metadata": {}, "status": "Success"}),
        Ok(ExitStatus::Code(code)) => non_zero(*code, ""),
        Ok(ExitStatus::OomKilled) => non_zero(137, "out of memory (OOMKilled): "),
        Ok(ExitStatus::Killed) => non_zero(137, "killed: "),
        Ok(ExitStatus::Trap(message)) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command {command:?} trapped: {message}"),
            "reason": "InternalError",
            "code": 500,
        }),
        Err(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command {command:?} could not run: {message}"),
            "reason": "InternalError",
            "code": 500,
        }),
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// Copies what the command writes to `reader` into frames on `channel`.
async fn pump(mut reader: DuplexStream, channel: u8, out: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.send(frame(channel, &buf[..n])).await.is_err() {
                    // The client is gone; keep draining so the command never blocks.
                    while matches!(reader.read(&mut buf).await, Ok(n) if n > 0) {}
                    break;
                }
            }
        }
    }
}

/// Runs one exec session on an upgraded socket, to the end of the command.
pub async fn session(
    socket: WebSocket,
    driver: Arc<dyn ContainerDriver>,
    container: Arc<ContainerTemplate>,
    request: ExecRequest,
) {
    let v5 = socket
        .protocol()
        .is_some_and(|p| p.as_bytes() == PROTOCOLS[0].as_bytes());
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let (stdout_w, stdout_r) = tokio::io::duplex(PIPE_BYTES);
    let (stderr_w, stderr_r) = tokio::io::duplex(PIPE_BYTES);
    let stderr_channel = if request.tty { STDOUT } else { STDERR };
    let pumps = tokio::spawn({
        let (out, err) = (out_tx.clone(), out_tx.clone());
        async move {
            tokio::join!(
                pump(stdout_r, STDOUT, out),
                pump(stderr_r, stderr_channel, err)
            );
        }
    });

    // The client's messages: stdin data, its end, resizes; a closed socket
    // stops the command.
    let client_gone = CancellationToken::new();
    let (stdin_w, stdin_r) = tokio::io::duplex(PIPE_BYTES);
    let reader = tokio::spawn({
        let client_gone = client_gone.clone();
        let wants_stdin = request.stdin;
        async move {
            let mut stdin = wants_stdin.then_some(stdin_w);
            while let Some(Ok(message)) = incoming.next().await {
                match message {
                    Message::Binary(data) if !data.is_empty() => match data[0] {
                        STDIN => {
                            if let Some(pipe) = stdin.as_mut()
                                && pipe.write_all(&data[1..]).await.is_err()
                            {
                                stdin = None;
                            }
                        }
                        CLOSE if v5 && data.get(1) == Some(&STDIN) => stdin = None,
                        _ => {}
                    },
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            client_gone.cancel();
        }
    });

    let exec = ExecSpec {
        command: request.command.clone(),
        stdin: request
            .stdin
            .then(|| Box::new(stdin_r) as crate::driver::InputStream),
        stdout: Box::new(stdout_w),
        stderr: Box::new(stderr_w),
        tty: request.tty,
    };
    let result = driver
        .exec(&container, exec, client_gone.clone())
        .await
        .map_err(|error| error_chain(&error));
    // The command's writers are dropped by now, so the pumps end.
    let _ = pumps.await;
    if !client_gone.is_cancelled() {
        let status = status_of(&request.command, &result);
        let _ = out_tx
            .send(frame(ERROR, status.to_string().as_bytes()))
            .await;
        // A normal closure (1000): kubectl reads anything else as an error.
        let close = CloseFrame {
            code: close_code::NORMAL,
            reason: "".into(),
        };
        let _ = out_tx.send(Message::Close(Some(close))).await;
    }
    drop(out_tx);
    let _ = writer.await;
    reader.abort();
    tracing::debug!(command = ?request.command, ?result, "exec ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_argv_in_order_and_flags() {
        let request =
            ExecRequest::parse("command=cat&command=%2Fetc%2Fa+b&stdin=true&stdout=1&tty=false")
                .unwrap();
        assert_eq!(request.command, ["cat", "/etc/a b"]);
        assert!(request.stdin && request.stdout && !request.stderr && !request.tty);
        assert!(ExecRequest::parse("stdout=true").is_err());
        assert!(
            ExecRequest::parse("command=ls").is_err(),
            "no stream asked for"
        );
        assert!(ExecRequest::parse("command=ls&stdout=maybe").is_err());
    }

    #[test]
    fn exit_codes_become_statuses_kubectl_reads() {
        let argv = vec!["sh".to_string()];
        assert_eq!(
            status_of(&argv, &Ok(ExitStatus::Code(0)))["status"],
            "Success"
        );
        let failed = status_of(&argv, &Ok(ExitStatus::Code(3)));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        let oom = status_of(&argv, &Ok(ExitStatus::OomKilled));
        assert_eq!(oom["details"]["causes"][0]["message"], "137");
        let trap = status_of(&argv, &Ok(ExitStatus::Trap("unreachable".into())));
        assert_eq!(trap["reason"], "InternalError");
        assert!(trap["message"].as_str().unwrap().contains("unreachable"));
    }
}
