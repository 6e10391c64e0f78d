//! The clock that lets the engine interrupt guests.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

use wasmtime::Engine;

/// Advances the engine's epoch every `tick` on a thread of its own (so it keeps time
/// even when every tokio worker is busy). The thread ends when this is dropped.
pub(crate) struct EpochTicker {
    _stop: Sender<()>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<EpochTicker> {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                // Dropping the sender disconnects the channel, which ends the loop.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker { _stop: stop })
    }
}
