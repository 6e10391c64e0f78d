//! Commands run inside a running container through Docker exec: the OCI
//! driver's [`ContainerDriver::exec_in_container`](skiff_agent::driver::ContainerDriver::exec_in_container),
//! used by exec probes. The command shares the container's namespaces, user,
//! env and mounts, as `kubectl exec` and kubelet's exec probes do.

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures::StreamExt;
use skiff_agent::driver::{BoxError, ExecSpec, ExitStatus};
use tokio::io::AsyncWriteExt;

/// Runs `exec.command` in container `id` to its end; its output goes to the
/// spec's writers and its exit code is the result.
pub async fn run_in(docker: &Docker, id: &str, exec: ExecSpec) -> Result<ExitStatus, BoxError> {
    let ExecSpec {
        command,
        mut stdout,
        mut stderr,
    } = exec;
    if command.is_empty() {
        return Err("the command is empty".into());
    }
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(command),
        ..ExecConfig::default()
    };
    let created = docker.create_exec(id, config).await.map_err(message)?;
    let started = docker
        .start_exec(&created.id, Some(StartExecOptions::default()))
        .await
        .map_err(message)?;
    if let StartExecResults::Attached { mut output, .. } = started {
        while let Some(chunk) = output.next().await {
            let written = match chunk.map_err(message)? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    stdout.write_all(&message).await
                }
                LogOutput::StdErr { message } => stderr.write_all(&message).await,
                LogOutput::StdIn { .. } => Ok(()),
            };
            // A reader that went away does not stop the command; keep draining.
            if let Err(error) = written {
                tracing::debug!(%error, "an exec's output was not written");
            }
        }
    }
    let _ = stdout.flush().await;
    let _ = stderr.flush().await;
    let inspected = docker.inspect_exec(&created.id).await.map_err(message)?;
    let code = inspected.exit_code.unwrap_or(-1);
    Ok(ExitStatus::Code(i32::try_from(code).unwrap_or(i32::MAX)))
}

fn message(error: bollard::errors::Error) -> BoxError {
    crate::driver::engine_message(&error).into()
}
