//! The reader side: a whole log, its last lines, or a live follow that ends
//! when the attempt ends.

use std::io::{self, SeekFrom};
use std::path::PathBuf;

use bytes::Bytes;
use futures::Stream;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use super::LogProgress;

const READ_CHUNK: u64 = 64 * 1024;

/// One attempt's log, ready to be read.
pub struct LogSource {
    path: PathBuf,
    pub(super) progress: watch::Receiver<LogProgress>,
}

struct Cursor {
    file: File,
    pos: u64,
    /// Where a non-following read stops: the length when the request came in.
    end: Option<u64>,
    progress: watch::Receiver<LogProgress>,
}

impl LogSource {
    pub(super) fn new(path: PathBuf, progress: watch::Receiver<LogProgress>) -> LogSource {
        LogSource { path, progress }
    }

    /// The log from its start, or from the start of its last `tail_lines`
    /// lines. With `follow`, the stream carries new bytes as they are written
    /// and ends when the attempt ends; without, it ends at what was written when
    /// it was opened.
    pub async fn open(
        mut self,
        tail_lines: Option<u64>,
        follow: bool,
    ) -> io::Result<impl Stream<Item = io::Result<Bytes>> + Send + 'static> {
        let written = self.progress.borrow_and_update().len;
        let mut file = File::open(&self.path).await?;
        let pos = match tail_lines {
            Some(lines) => tail_offset(&mut file, written, lines).await?,
            None => 0,
        };
        file.seek(SeekFrom::Start(pos)).await?;
        let cursor = Cursor {
            file,
            pos,
            end: (!follow).then_some(written),
            progress: self.progress,
        };
        Ok(futures::stream::unfold(cursor, |mut cursor| async move {
            match cursor.next_chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), cursor)),
                Ok(None) => None,
                Err(error) => {
                    // Report the error once, then end the stream.
                    cursor.end = Some(cursor.pos);
                    Some((Err(error), cursor))
                }
            }
        }))
    }
}

impl Cursor {
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let progress = *self.progress.borrow_and_update();
            let end = self.end.unwrap_or(progress.len);
            if self.pos < end {
                let want = (end - self.pos).min(READ_CHUNK) as usize;
                let mut buf = vec![0u8; want];
                let n = self.file.read(&mut buf).await?;
                if n == 0 {
                    // The file is shorter than announced (removed or truncated under us).
                    return Ok(None);
                }
                buf.truncate(n);
                self.pos += n as u64;
                return Ok(Some(Bytes::from(buf)));
            }
            if self.end.is_some() || progress.finished {
                return Ok(None);
            }
            if self.progress.changed().await.is_err() {
                // The pump is gone; serve what it announced last, then stop.
                self.end = Some(self.progress.borrow().len);
            }
        }
    }
}

/// The offset where the last `lines` lines of the first `len` bytes start. A
/// final newline ends the last line rather than starting an empty one.
pub async fn tail_offset(file: &mut File, len: u64, lines: u64) -> io::Result<u64> {
    if lines == 0 {
        return Ok(len);
    }
    let mut seen = 0u64;
    let mut chunk_end = len;
    let mut buf = Vec::new();
    while chunk_end > 0 {
        let chunk_start = chunk_end.saturating_sub(READ_CHUNK);
        buf.resize((chunk_end - chunk_start) as usize, 0);
        file.seek(SeekFrom::Start(chunk_start)).await?;
        file.read_exact(&mut buf).await?;
        for (i, byte) in buf.iter().enumerate().rev() {
            let offset = chunk_start + i as u64;
            if *byte != b'\n' || offset + 1 == len {
                continue;
            }
            seen += 1;
            if seen == lines {
                return Ok(offset + 1);
            }
        }
        chunk_end = chunk_start;
    }
    Ok(0)
}
