//! [`ContainerDriver`] for the Wasm runtime: the one place the agent touches
//! `skiff-wasm`, translating its types to and from the driver trait's.

use futures::FutureExt;
use futures::future::BoxFuture;
use skiff_wasm::{Exit, Process, Program, WasmRuntime};
use tokio_util::sync::CancellationToken;

use crate::driver::{
    ContainerDriver, ExitStatus, PrepareError, PreparedImage, ProcessSpec, RunError,
};

impl ContainerDriver for WasmRuntime {
    fn prepare<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<PreparedImage, PrepareError>> {
        async move {
            match WasmRuntime::prepare(self, image).await {
                Ok(program) => Ok(PreparedImage::new(program.digest().to_string(), program)),
                Err(error) if error.is_pull_error() => Err(PrepareError::Pull {
                    image: image.to_string(),
                    source: Box::new(error),
                }),
                Err(error) => Err(PrepareError::Create {
                    image: image.to_string(),
                    source: Box::new(error),
                }),
            }
        }
        .boxed()
    }

    fn run<'a>(
        &'a self,
        image: &'a PreparedImage,
        process: ProcessSpec,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, RunError>> {
        async move {
            let program = image.program::<Program>().ok_or_else(|| RunError {
                source: format!(
                    "image {} was not prepared by the Wasm driver",
                    image.image_id()
                )
                .into(),
            })?;
            let process = Process {
                args: process.args,
                env: process.env,
                stdout: process.stdout,
                stderr: process.stderr,
            };
            let exit = WasmRuntime::run(self, program, process, cancel)
                .await
                .map_err(|error| RunError {
                    source: Box::new(error),
                })?;
            Ok(match exit {
                Exit::Code(code) => ExitStatus::Code(code),
                Exit::Trap(message) => ExitStatus::Trap(message),
                Exit::Killed => ExitStatus::Killed,
            })
        }
        .boxed()
    }
}
