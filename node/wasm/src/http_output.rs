//! Guest output of an HTTP program. Many instances run at once (one per request),
//! and each needs a stdout and stderr of its own, yet all of them write into the
//! container's one log: every instance gets a writer over a bounded channel, and
//! one task copies what arrives into the container's writer.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;
use wasmtime_wasi::cli::AsyncStdoutStream;

use crate::run::OUTPUT_BUDGET;

/// Writes queued before a writing guest waits for the log to catch up.
const QUEUED_WRITES: usize = 256;

/// One of the container's output streams, shared by all its instances. The copy
/// task ends, dropping the container's writer, once every clone is gone.
#[derive(Clone)]
pub(crate) struct SharedOutput {
    tx: mpsc::Sender<Bytes>,
}

impl SharedOutput {
    pub(crate) fn start(
        mut writer: Box<dyn AsyncWrite + Send + Sync + Unpin>,
    ) -> (SharedOutput, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUED_WRITES);
        let copy = tokio::spawn(async move {
            let mut failed = false;
            while let Some(bytes) = rx.recv().await {
                // After a failed write keep draining, so guests never block on a
                // log that is gone.
                if failed {
                    continue;
                }
                let written = async {
                    writer.write_all(&bytes).await?;
                    writer.flush().await
                };
                if let Err(error) = written.await {
                    tracing::warn!(%error, "cannot write guest output; discarding the rest");
                    failed = true;
                }
            }
        });
        (SharedOutput { tx }, copy)
    }

    /// A stream for one instance's WASI context.
    pub(crate) fn stream(&self) -> AsyncStdoutStream {
        AsyncStdoutStream::new(
            OUTPUT_BUDGET,
            ChannelWriter {
                tx: PollSender::new(self.tx.clone()),
            },
        )
    }

    /// A line from the node itself (a trap, a denied request), if there is room.
    pub(crate) fn notice(&self, line: String) {
        let _ = self.tx.try_send(Bytes::from(line));
    }
}

struct ChannelWriter {
    tx: PollSender<Bytes>,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let closed = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "log closed");
        ready!(self.tx.poll_reserve(cx)).map_err(|_| closed())?;
        self.tx
            .send_item(Bytes::copy_from_slice(buf))
            .map_err(|_| closed())?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.tx.close();
        Poll::Ready(Ok(()))
    }
}
