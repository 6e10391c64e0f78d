//! `kubectl exec` and `kubectl top` for OCI pods: commands run inside the
//! running container through Docker's exec API, and usage comes from Docker's
//! container stats.

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::StatsOptionsBuilder;
use futures::StreamExt;
use skiff_agent::driver::{
    BoxError, ContainerTemplate, ContainerUsage, ExecSpec, ExitStatus, RunError,
};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::driver::{OciDriver, engine_message};
use crate::labels;

/// How long exec waits for a container that is starting.
const START_WAIT: Duration = Duration::from_secs(10);
const START_POLL: Duration = Duration::from_millis(100);

impl OciDriver {
    /// The id of the running container of `container`.
    async fn running_container(&self, container: &ContainerTemplate) -> Result<String, BoxError> {
        let context = container
            .context
            .as_ref()
            .ok_or("the OCI driver needs the pod of each command")?;
        let filters = [
            format!("{}={}", labels::POD_UID, context.pod.uid),
            format!("{}={}", labels::CONTAINER, context.container.name),
        ];
        let found = self.find(&filters).await.map_err(|e| engine_message(&e))?;
        found
            .into_iter()
            .find_map(|(id, running)| running.then_some(id))
            .ok_or_else(|| {
                format!(
                    "container {:?} of pod {}/{} is not running",
                    context.container.name, context.pod.namespace, context.pod.name
                )
                .into()
            })
    }

    /// Runs `exec` inside the running container, copying its input and
    /// output, and reads its exit code.
    pub(crate) async fn exec_in(
        &self,
        container: &ContainerTemplate,
        exec: ExecSpec,
        cancel: CancellationToken,
    ) -> Result<ExitStatus, RunError> {
        let run_error = |source: BoxError| RunError { source };
        // The agent counts a container as running from the moment it asks
        // the engine to start it: give the engine a moment to have it.
        let mut waited = Duration::ZERO;
        let id = loop {
            match self.running_container(container).await {
                Ok(id) => break id,
                Err(_) if waited < START_WAIT && !cancel.is_cancelled() => {
                    tokio::time::sleep(START_POLL).await;
                    waited += START_POLL;
                }
                Err(error) => return Err(run_error(error)),
            }
        };
        let ExecSpec {
            command: args,
            stdin,
            mut stdout,
            mut stderr,
            tty,
        } = exec;
        let config = ExecConfig {
            attach_stdin: Some(stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty),
            cmd: Some(args),
            ..ExecConfig::default()
        };
        let docker = self.docker();
        let created = docker
            .create_exec(&id, config)
            .await
            .map_err(|e| run_error(engine_message(&e).into()))?;
        let options = StartExecOptions {
            detach: false,
            tty,
            output_capacity: None,
        };
        let started = docker
            .start_exec(&created.id, Some(options))
            .await
            .map_err(|e| run_error(engine_message(&e).into()))?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Err(run_error("the engine detached the exec".into()));
        };
        let feed = async move {
            if let Some(mut stdin) = stdin {
                let _ = tokio::io::copy(&mut stdin, &mut input).await;
                // End of input: the command reads end-of-file.
                let _ = input.shutdown().await;
            }
            // Without stdin the connection's write half stays open: a shutdown
            // could end the engine's stream before the command's output.
            input
        };
        let copy = async {
            while let Some(chunk) = output.next().await {
                let written = match chunk {
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                        stdout.write_all(&message).await
                    }
                    Ok(LogOutput::StdErr { message }) => stderr.write_all(&message).await,
                    Ok(LogOutput::StdIn { .. }) => Ok(()),
                    Err(error) => {
                        tracing::debug!(error = %engine_message(&error), "the exec's output ended");
                        break;
                    }
                };
                if written.is_err() {
                    break;
                }
            }
            let _ = stdout.flush().await;
            let _ = stderr.flush().await;
        };
        let finished = async {
            let (input, ()) = tokio::join!(feed, copy);
            drop(input);
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(ExitStatus::Killed),
            () = finished => {}
        }
        let inspected = docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| run_error(engine_message(&e).into()))?;
        let code = inspected.exit_code.unwrap_or(0);
        Ok(ExitStatus::Code(i32::try_from(code).unwrap_or(i32::MAX)))
    }

    /// Each running container of the pod with its CPU time and memory working
    /// set (usage minus inactive file pages, as kubelet counts it).
    pub(crate) async fn usage_of(&self, pod_uid: &str) -> Vec<ContainerUsage> {
        let filters = [format!("{}={pod_uid}", labels::POD_UID)];
        let Ok(found) = self.find(&filters).await else {
            return Vec::new();
        };
        let docker = self.docker();
        let mut usage = Vec::new();
        for (id, running) in found {
            if !running {
                continue;
            }
            let Ok(inspected) = docker.inspect_container(&id, None).await else {
                continue;
            };
            let name = inspected
                .config
                .and_then(|c| c.labels)
                .and_then(|l| l.get(labels::CONTAINER).cloned());
            let Some(name) = name.filter(|n| n != labels::SANDBOX) else {
                continue;
            };
            let options = StatsOptionsBuilder::default()
                .stream(false)
                .one_shot(true)
                .build();
            let Some(Ok(stats)) = docker.stats(&id, Some(options)).next().await else {
                continue;
            };
            let cpu_nanos = stats
                .cpu_stats
                .and_then(|c| c.cpu_usage)
                .and_then(|u| u.total_usage)
                .unwrap_or(0);
            let memory_bytes = stats
                .memory_stats
                .map(|m| {
                    let inactive = m
                        .stats
                        .as_ref()
                        .and_then(|s| {
                            s.get("inactive_file")
                                .or_else(|| s.get("total_inactive_file"))
                        })
                        .copied()
                        .unwrap_or(0);
                    m.usage.unwrap_or(0).saturating_sub(inactive)
                })
                .unwrap_or(0);
            usage.push(ContainerUsage {
                container: name,
                cpu_nanos,
                memory_bytes,
                in_process: false,
            });
        }
        usage
    }
}
