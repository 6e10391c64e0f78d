//! The writer side: pipes handed to the process, and a pump that copies both
//! into the attempt's file and announces each write.

use std::io;
use std::path::Path;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;

use super::LogProgress;

/// Bytes buffered in each pipe before the process's writes wait for the pump.
const PIPE_CAPACITY: usize = 64 * 1024;

/// The log of one container attempt: the write ends for the process and the pump.
pub struct AttemptLog {
    pub stdout: DuplexStream,
    pub stderr: DuplexStream,
    pub pump: LogPump,
}

/// Copies the process's output into the log file until both streams close.
pub struct LogPump {
    file: File,
    stdout: DuplexStream,
    stderr: DuplexStream,
    progress: watch::Sender<LogProgress>,
}

impl AttemptLog {
    pub(super) async fn create(
        path: &Path,
    ) -> io::Result<(AttemptLog, watch::Receiver<LogProgress>)> {
        let file = File::create(path).await?;
        let (stdout, stdout_reader) = tokio::io::duplex(PIPE_CAPACITY);
        let (stderr, stderr_reader) = tokio::io::duplex(PIPE_CAPACITY);
        let (progress, receiver) = watch::channel(LogProgress::default());
        let pump = LogPump {
            file,
            stdout: stdout_reader,
            stderr: stderr_reader,
            progress,
        };
        Ok((
            AttemptLog {
                stdout,
                stderr,
                pump,
            },
            receiver,
        ))
    }
}

impl LogPump {
    /// Runs until both write ends are dropped, then marks the log finished.
    /// A failing disk does not stop the pump: the output is then discarded so
    /// the process never blocks on a full pipe.
    pub async fn run(mut self) {
        let mut out_buf = vec![0u8; 8192];
        let mut err_buf = vec![0u8; 8192];
        let (mut out_open, mut err_open) = (true, true);
        let mut disk_ok = true;
        while out_open || err_open {
            let (read, from_stdout) = tokio::select! {
                read = self.stdout.read(&mut out_buf), if out_open => (read, true),
                read = self.stderr.read(&mut err_buf), if err_open => (read, false),
            };
            let n = match read {
                Ok(0) | Err(_) => {
                    if from_stdout {
                        out_open = false;
                    } else {
                        err_open = false;
                    }
                    continue;
                }
                Ok(n) => n,
            };
            let buf = if from_stdout { &out_buf } else { &err_buf };
            if !disk_ok {
                continue;
            }
            // Flushing before announcing makes the bytes visible to readers
            // that open the file themselves.
            let written = async {
                self.file.write_all(&buf[..n]).await?;
                self.file.flush().await
            };
            match written.await {
                Ok(()) => self.progress.send_modify(|p| p.len += n as u64),
                Err(error) => {
                    tracing::warn!(%error, "writing container log failed; discarding further output");
                    disk_ok = false;
                }
            }
        }
        self.progress.send_modify(|p| p.finished = true);
    }
}
