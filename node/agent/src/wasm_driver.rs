//! [`ContainerDriver`] for the Wasm runtime: the one place the agent touches
//! `skiff-wasm`, translating its types to and from the driver trait's.

use futures::FutureExt;
use futures::future::BoxFuture;
use skiff_wasm::{Credentials, Exit, Process, Program, PullOptions, PullPolicy, WasmRuntime};
use tokio_util::sync::CancellationToken;

use crate::driver::{
    ContainerDriver, ExitStatus, ImagePullPolicy, PrepareError, PreparedImage, ProcessSpec,
    PullRequest, RunError, error_chain,
};

/// The runtime's pull options for a request: the policy, and the credentials of
/// every pull secret that parses (a broken one is logged and skipped, as kubelet does).
fn pull_options(image: &str, pull: &PullRequest) -> PullOptions {
    let mut credentials = Credentials::default();
    for config in &pull.docker_configs {
        match Credentials::from_docker_config_json(config) {
            Ok(found) => credentials.extend(found),
            Err(error) => {
                tracing::warn!(%image, error = %error_chain(&error), "ignoring an unusable image pull secret")
            }
        }
    }
    let policy = match pull.policy {
        ImagePullPolicy::Always => PullPolicy::Always,
        ImagePullPolicy::IfNotPresent => PullPolicy::IfNotPresent,
        ImagePullPolicy::Never => PullPolicy::Never,
    };
    PullOptions {
        policy,
        credentials,
    }
}

impl ContainerDriver for WasmRuntime {
    fn prepare<'a>(
        &'a self,
        image: &'a str,
        pull: &'a PullRequest,
    ) -> BoxFuture<'a, Result<PreparedImage, PrepareError>> {
        async move {
            let options = pull_options(image, pull);
            match WasmRuntime::prepare_with(self, image, &options).await {
                Ok(prepared) => Ok(PreparedImage::new(prepared.image_id, prepared.program)),
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
