//! [`OciDriver`]: the agent's [`ContainerDriver`] over the Docker Engine API.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Container;
use skiff_agent::driver::{
    BoxError, ContainerDriver, ContainerTemplate, ContainerUsage, DriverCondition, ExecSpec,
    ExitStatus, ImagePullPolicy, MountSpec, PodAddress, PodSandbox, PrepareError, PreparedImage,
    ProcessContext, ProcessSpec, PullRequest, RunError, ServedPort,
};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::auth::credentials_for;
use crate::labels;
use crate::pause;
use crate::resources;
use crate::security;

fn non_empty_mounts(mounts: Vec<bollard::models::Mount>) -> Option<Vec<bollard::models::Mount>> {
    (!mounts.is_empty()).then_some(mounts)
}

/// How the driver reaches the engine and builds its sandboxes.
#[derive(Debug, Clone)]
pub struct OciConfig {
    /// The engine's Unix socket; `None` means `DOCKER_HOST` or `/var/run/docker.sock`.
    pub socket: Option<String>,
    /// Tells this node's containers apart from other nodes' on a shared engine
    /// (e.g. `<node name>@<data dir>`); stored in every container's labels.
    pub node_id: String,
    /// The image of the per-pod sandbox container.
    pub pause_image: String,
    /// The static busybox the default pause image is built from.
    pub busybox: PathBuf,
    /// How often the engine is pinged for the node's `OCIRuntimeReady` condition.
    pub health_interval: Duration,
}

impl OciConfig {
    pub fn new(node_id: impl Into<String>) -> OciConfig {
        OciConfig {
            socket: None,
            node_id: node_id.into(),
            pause_image: pause::DEFAULT_PAUSE_IMAGE.to_string(),
            busybox: PathBuf::from(pause::DEFAULT_BUSYBOX),
            health_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("cannot connect to the Docker engine")]
    Connect(#[source] bollard::errors::Error),
}

/// A pod's sandbox: the pause container and its IP on the engine's bridge.
#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    ip: Option<IpAddr>,
}

/// What `prepare` hands to `run`: the image's local id (config digest) and
/// the user its config runs as (for `runAsNonRoot`).
struct LocalImage {
    id: String,
    user: String,
}

struct Inner {
    docker: RwLock<Docker>,
    /// Whether the engine answered the last health check, and why not.
    health: Mutex<Result<String, String>>,
    config: OciConfig,
    /// Per pod uid: the sandbox, created once (guarded so two containers of a
    /// pod starting together make one).
    sandboxes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Sandbox>>>>>,
    ips: Mutex<HashMap<String, IpAddr>>,
    /// The running container of each (pod uid, container name), for exec.
    running: Mutex<HashMap<(String, String), String>>,
    /// Serialises the one-time build of the default pause image.
    pause_ready: tokio::sync::Mutex<bool>,
}

/// Runs containers as Docker containers, one pause container per pod holding
/// its network namespace. Cheap to clone.
#[derive(Clone)]
pub struct OciDriver {
    inner: Arc<Inner>,
    /// When cancelled (the agent shuts down), running containers are left
    /// running for the next agent to adopt instead of being stopped.
    detach: CancellationToken,
}

fn other(error: impl Into<BoxError>) -> BoxError {
    error.into()
}

/// The engine's text for an error, without bollard's wrapping.
pub(crate) fn engine_message(error: &bollard::errors::Error) -> String {
    match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

fn not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// `repo` and `tag` for a pull: a digest reference is pulled by digest, an
/// untagged one as `latest` (an empty tag would pull every tag).
fn split_reference(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(at) => (&image[..name_start + at], &image[name_start + at + 1..]),
        None => (image, "latest"),
    }
}

impl OciDriver {
    /// Connects to the engine (lazily: a daemon that is down now makes pods
    /// wait with `ErrImagePull` and the node report `OCIRuntimeReady=False`
    /// until it comes up). The health task stops with `detach`.
    pub fn connect(config: OciConfig, detach: CancellationToken) -> Result<OciDriver, OciError> {
        let docker = match &config.socket {
            Some(path) => Docker::connect_with_socket(path, 120, bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_defaults(),
        }
        .map_err(OciError::Connect)?;
        let driver = OciDriver {
            inner: Arc::new(Inner {
                docker: RwLock::new(docker),
                health: Mutex::new(Err("not checked yet".to_string())),
                config,
                sandboxes: Mutex::default(),
                ips: Mutex::default(),
                running: Mutex::default(),
                pause_ready: tokio::sync::Mutex::new(false),
            }),
            detach,
        };
        Ok(driver)
    }

    /// Checks the engine once (negotiating the API version), then keeps
    /// checking in the background until `detach` fires. True if it answered.
    pub async fn start_health_checks(&self) -> bool {
        let up = self.check().await;
        let driver = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = driver.detach.cancelled() => return,
                    _ = tokio::time::sleep(driver.inner.config.health_interval) => {}
                }
                driver.check().await;
            }
        });
        up
    }

    /// Pings the engine; on the way from down to up, negotiates the API version
    /// (an engine older than the client's default speaks an older one).
    async fn check(&self) -> bool {
        let was_up = self.inner.health.lock().expect("health").is_ok();
        let docker = self.docker();
        let result = if was_up {
            docker.ping().await.map(|_| docker)
        } else {
            docker.negotiate_version().await
        };
        let result = match result {
            Ok(docker) => match docker.version().await {
                Ok(version) => {
                    *self.inner.docker.write().expect("docker") = docker;
                    Ok(version.version.unwrap_or_default())
                }
                Err(error) => Err(engine_message(&error)),
            },
            Err(error) => Err(engine_message(&error)),
        };
        let up = result.is_ok();
        if up != was_up {
            match &result {
                Ok(version) => tracing::info!(%version, "the Docker engine is reachable"),
                Err(error) => tracing::warn!(%error, "the Docker engine is unreachable"),
            }
        }
        *self.inner.health.lock().expect("health") = result;
        up
    }

    pub(crate) fn docker(&self) -> Docker {
        self.inner.docker.read().expect("docker").clone()
    }

    fn node_filter(&self) -> String {
        format!("{}={}", labels::NODE, self.inner.config.node_id)
    }

    /// Ids of this node's containers whose labels match all `filters`
    /// (`key=value`), running or not.
    pub(crate) async fn find(
        &self,
        filters: &[String],
    ) -> Result<Vec<(String, bool)>, bollard::errors::Error> {
        let mut label = vec![self.node_filter()];
        label.extend(filters.iter().cloned());
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&HashMap::from([("label".to_string(), label)]))
            .build();
        let found = self.docker().list_containers(Some(options)).await?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let running = matches!(
                    c.state,
                    Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                );
                Some((c.id?, running))
            })
            .collect())
    }

    async fn remove(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker().remove_container(id, Some(options)).await {
            Ok(()) => {}
            Err(error) if not_found(&error) => {}
            Err(error) => {
                tracing::warn!(id, error = %engine_message(&error), "removing a container failed")
            }
        }
    }

    async fn pull(&self, image: &str, pull: &PullRequest) -> Result<(), BoxError> {
        let (repo, tag) = split_reference(image);
        let options = CreateImageOptionsBuilder::default()
            .from_image(repo)
            .tag(tag)
            .build();
        let credentials = credentials_for(image, &pull.docker_configs);
        let mut progress = self.docker().create_image(Some(options), None, credentials);
        while let Some(step) = progress.next().await {
            step.map_err(|e| other(engine_message(&e)))?;
        }
        Ok(())
    }

    /// The image's local id and the digest shown as `imageID` (the registry
    /// digest when it came from one, else the local id).
    async fn local_image(&self, image: &str) -> Result<Option<(LocalImage, String)>, BoxError> {
        match self.docker().inspect_image(image).await {
            Ok(found) => {
                let id = found.id.unwrap_or_default();
                let user = found.config.and_then(|c| c.user).unwrap_or_default();
                // One image can have digests in several registries: the one
                // of the repository named is shown.
                let repo = split_reference(image).0.split('@').next().unwrap_or(image);
                let digests = found.repo_digests.unwrap_or_default();
                let shown = digests
                    .iter()
                    .find(|d| d.split('@').next() == Some(repo))
                    .or(digests.first())
                    .cloned()
                    .unwrap_or_else(|| id.clone());
                Ok(Some((LocalImage { id, user }, shown)))
            }
            Err(error) if not_found(&error) => Ok(None),
            Err(error) => Err(other(engine_message(&error))),
        }
    }

    /// The image made ready, then the pod's sandbox (so the pod has its IP
    /// by the time its containers are reported as started).
    async fn prepare_image(
        &self,
        image: &str,
        pull: &PullRequest,
    ) -> Result<PreparedImage, PrepareError> {
        if !self.check().await {
            // Not the image's fault: the pod waits with CreateContainerError
            // until the engine is back (the node's OCIRuntimeReady says why).
            let why = self.inner.health.lock().expect("health").clone().err();
            return Err(PrepareError::Create {
                image: image.to_string(),
                source: format!(
                    "the OCI runtime is unavailable: {}",
                    why.unwrap_or_default()
                )
                .into(),
            });
        }
        let prepared = self.local_or_pulled(image, pull).await?;
        if let Some(pod) = &pull.pod {
            self.sandbox(pod)
                .await
                .map_err(|source| PrepareError::Create {
                    image: image.to_string(),
                    source,
                })?;
        }
        Ok(prepared)
    }

    async fn local_or_pulled(
        &self,
        image: &str,
        pull: &PullRequest,
    ) -> Result<PreparedImage, PrepareError> {
        let pull_error = |source: BoxError| PrepareError::Pull {
            image: image.to_string(),
            source,
        };
        if pull.policy != ImagePullPolicy::Always
            && let Some((local, shown)) = self.local_image(image).await.map_err(pull_error)?
        {
            return Ok(PreparedImage::new(shown, local).with_root_filesystem());
        }
        if pull.policy == ImagePullPolicy::Never {
            return Err(pull_error(
                "the image is not present on the node and the pull policy is Never".into(),
            ));
        }
        self.pull(image, pull).await.map_err(pull_error)?;
        let (local, shown) = self
            .local_image(image)
            .await
            .map_err(pull_error)?
            .ok_or_else(|| pull_error("the engine pulled the image but cannot find it".into()))?;
        Ok(PreparedImage::new(shown, local).with_root_filesystem())
    }

    /// Builds the default pause image from the host's static busybox if the
    /// engine lacks it; pulls any other configured pause image if absent.
    async fn ensure_pause_image(&self) -> Result<(), BoxError> {
        let mut ready = self.inner.pause_ready.lock().await;
        if *ready {
            return Ok(());
        }
        let image = self.inner.config.pause_image.clone();
        if self.local_image(&image).await?.is_none() {
            if image == pause::DEFAULT_PAUSE_IMAGE {
                let path = &self.inner.config.busybox;
                let busybox = tokio::fs::read(path).await.map_err(|e| {
                    other(format!(
                        "building the pause image needs a static busybox at {} (apt-get install busybox-static): {e}",
                        path.display()
                    ))
                })?;
                let (repo, tag) = split_reference(&image);
                let options = CreateImageOptionsBuilder::default()
                    .from_src("-")
                    .repo(repo)
                    .tag(tag)
                    .changes(vec![pause::PAUSE_CMD.to_string()])
                    .build();
                let body = bollard::body_full(pause::rootfs_tar(&busybox).into());
                let mut progress = self.docker().create_image(Some(options), Some(body), None);
                while let Some(step) = progress.next().await {
                    step.map_err(|e| other(engine_message(&e)))?;
                }
                tracing::info!(%image, "built the pause image");
            } else {
                self.pull(&image, &PullRequest::default()).await?;
            }
        }
        *ready = true;
        Ok(())
    }

    fn sandbox_slot(&self, uid: &str) -> Arc<tokio::sync::Mutex<Option<Sandbox>>> {
        let mut sandboxes = self.inner.sandboxes.lock().expect("sandboxes");
        Arc::clone(sandboxes.entry(uid.to_string()).or_default())
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInspectResponse, bollard::errors::Error> {
        self.docker().inspect_container(id, None).await
    }

    /// The pod's running pause container: the one this driver made, one left
    /// by an earlier agent (adopted), or a new one.
    async fn sandbox(&self, pod: &PodSandbox) -> Result<Sandbox, BoxError> {
        let slot = self.sandbox_slot(&pod.uid);
        let mut slot = slot.lock().await;
        if let Some(sandbox) = slot.as_ref() {
            let running = self
                .inspect(&sandbox.id)
                .await
                .ok()
                .and_then(|c| c.state?.running)
                .unwrap_or(false);
            if running {
                return Ok(sandbox.clone());
            }
            tracing::warn!(pod = %pod.name, "the pod's sandbox container is gone; making a new one");
            self.remove(&sandbox.id).await;
            *slot = None;
        }
        let filters = [
            format!("{}={}", labels::POD_UID, pod.uid),
            format!("{}={}", labels::CONTAINER, labels::SANDBOX),
        ];
        let mut adopted = None;
        for (id, running) in self
            .find(&filters)
            .await
            .map_err(|e| other(engine_message(&e)))?
        {
            if running && adopted.is_none() {
                adopted = Some(id);
            } else {
                self.remove(&id).await;
            }
        }
        let id = match adopted {
            Some(id) => {
                tracing::info!(pod = %pod.name, %id, "adopted the pod's sandbox container");
                id
            }
            None => self.create_sandbox(pod).await?,
        };
        let inspected = self
            .inspect(&id)
            .await
            .map_err(|e| other(engine_message(&e)))?;
        let ip = inspected
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|networks| {
                networks
                    .into_values()
                    .find_map(|n| n.ip_address.filter(|ip| !ip.is_empty()))
            })
            .and_then(|ip| ip.parse().ok());
        if let Some(ip) = ip {
            self.inner
                .ips
                .lock()
                .expect("ips")
                .insert(pod.uid.clone(), ip);
        }
        let sandbox = Sandbox { id, ip };
        *slot = Some(sandbox.clone());
        Ok(sandbox)
    }

    async fn create_sandbox(&self, pod: &PodSandbox) -> Result<String, BoxError> {
        self.ensure_pause_image().await?;
        let name = format!("skiff_POD_{}_{}_{}", pod.name, pod.namespace, pod.uid);
        let body = ContainerCreateBody {
            image: Some(self.inner.config.pause_image.clone()),
            hostname: Some(pod.name.chars().take(63).collect()),
            labels: Some(labels::of(
                &self.inner.config.node_id,
                pod,
                labels::SANDBOX,
                0,
            )),
            host_config: Some(HostConfig {
                // The pod's containers join its IPC namespace too.
                ipc_mode: Some("shareable".to_string()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let id = self.create(&name, body).await?;
        self.docker()
            .start_container(&id, None)
            .await
            .map_err(|e| other(engine_message(&e)))?;
        tracing::info!(pod = %pod.name, %id, "started the pod's sandbox container");
        Ok(id)
    }

    /// Creates a container; a leftover of the same name (a removal that failed)
    /// is removed first.
    async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<String, BoxError> {
        let options = || CreateContainerOptionsBuilder::default().name(name).build();
        let docker = self.docker();
        let created = match docker.create_container(Some(options()), body.clone()).await {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                self.remove(name).await;
                docker.create_container(Some(options()), body).await
            }
            other => other,
        };
        created.map(|c| c.id).map_err(|e| other(engine_message(&e)))
    }

    /// The running container of this attempt's pod and container name left by
    /// an earlier agent, if any; stopped leftovers are removed.
    async fn adoptable(&self, context: &ProcessContext) -> Result<Option<String>, BoxError> {
        let filters = [
            format!("{}={}", labels::POD_UID, context.pod.uid),
            format!("{}={}", labels::CONTAINER, context.container.name),
        ];
        let mut adopted = None;
        for (id, running) in self
            .find(&filters)
            .await
            .map_err(|e| other(engine_message(&e)))?
        {
            if running && adopted.is_none() {
                adopted = Some(id);
            } else {
                self.remove(&id).await;
            }
        }
        Ok(adopted)
    }

    async fn start_process(
        &self,
        image: &LocalImage,
        (env, mounts): (&[(String, String)], &[MountSpec]),
        context: &ProcessContext,
        sandbox: &Sandbox,
    ) -> Result<String, BoxError> {
        let spec: &Container = &context.container;
        let pod = &context.pod;
        let (entrypoint, cmd) = match (&spec.command, &spec.args) {
            (Some(command), args) if !command.is_empty() => (
                Some(command.clone()),
                Some(args.clone().unwrap_or_default()),
            ),
            (_, Some(args)) => (None, Some(args.clone())),
            (_, None) => (None, None),
        };
        let limits = resources::limits(spec).map_err(other)?;
        let security = security::security(spec, pod, &image.user).map_err(other)?;
        let non_empty = |list: Vec<String>| (!list.is_empty()).then_some(list);
        let body = ContainerCreateBody {
            user: security.user,
            image: Some(image.id.clone()),
            entrypoint,
            cmd,
            env: Some(
                env.iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect(),
            ),
            working_dir: spec.working_dir.clone().filter(|d| !d.is_empty()),
            labels: Some(labels::of(
                &self.inner.config.node_id,
                pod,
                &spec.name,
                context.restart_count,
            )),
            host_config: Some(HostConfig {
                network_mode: Some(format!("container:{}", sandbox.id)),
                ipc_mode: Some(format!("container:{}", sandbox.id)),
                memory: limits.memory,
                // No swap: over the limit means the OOM killer, as on a kubelet node.
                memory_swap: limits.memory,
                nano_cpus: limits.nano_cpus,
                mounts: non_empty_mounts(security::bind_mounts(mounts)),
                readonly_rootfs: Some(security.readonly_rootfs),
                cap_add: non_empty(security.cap_add),
                cap_drop: non_empty(security.cap_drop),
                group_add: non_empty(security.group_add),
                security_opt: non_empty(security.security_opt),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let name = format!(
            "skiff_{}_{}_{}_{}_{}",
            spec.name, pod.name, pod.namespace, pod.uid, context.restart_count
        );
        let id = self.create(&name, body).await?;
        if let Err(error) = self.docker().start_container(&id, None).await {
            self.remove(&id).await;
            return Err(other(engine_message(&error)));
        }
        Ok(id)
    }

    async fn run_process(
        &self,
        image: &PreparedImage,
        mut process: ProcessSpec,
        cancel: CancellationToken,
    ) -> Result<ExitStatus, RunError> {
        let run_error = |source: BoxError| RunError { source };
        let local = image.program::<LocalImage>().ok_or_else(|| {
            run_error(
                format!(
                    "image {} was not prepared by the OCI driver",
                    image.image_id()
                )
                .into(),
            )
        })?;
        let context = process
            .context
            .clone()
            .ok_or_else(|| run_error("the OCI driver needs the pod of each process".into()))?;
        let ports_report = process.ports_report.take();
        let sandbox = self.sandbox(&context.pod).await.map_err(run_error)?;
        let id = match self.adoptable(&context).await.map_err(run_error)? {
            Some(id) => {
                tracing::info!(pod = %context.pod.name, container = %context.container.name, %id, "adopted a running container");
                id
            }
            None => self
                .start_process(local, (&process.env, &process.mounts), &context, &sandbox)
                .await
                .map_err(run_error)?,
        };
        if let Some(report) = process.started_report.take() {
            report(Some(format!("docker://{id}")));
        }
        let key = (context.pod.uid.clone(), context.container.name.clone());
        self.inner
            .running
            .lock()
            .expect("running")
            .insert(key.clone(), id.clone());
        if let (Some(report), Some(ip)) = (ports_report, sandbox.ip) {
            report(
                process
                    .ports
                    .iter()
                    .map(|port| ServedPort {
                        name: port.name.clone(),
                        container_port: port.container_port,
                        address: SocketAddr::new(ip, port.container_port),
                    })
                    .collect(),
            );
        }
        let logs = tokio::spawn(copy_logs(
            self.docker(),
            id.clone(),
            process.stdout,
            process.stderr,
        ));
        let docker = self.docker();
        let wait = async {
            let mut waits = docker.wait_container(&id, None);
            // The stream ends with the exit; its code is read from inspect below.
            while waits.next().await.is_some() {}
        };
        let stopped_by_us = tokio::select! {
            biased;
            _ = cancel.cancelled() => true,
            () = wait => false,
        };
        self.inner.running.lock().expect("running").remove(&key);
        if stopped_by_us && self.detach.is_cancelled() {
            // The agent is shutting down: the container keeps running for the
            // next agent to adopt.
            logs.abort();
            return Ok(ExitStatus::Killed);
        }
        if stopped_by_us {
            let grace = i32::try_from(context.pod.grace_period.as_secs()).unwrap_or(i32::MAX);
            let options = StopContainerOptionsBuilder::default().t(grace).build();
            if let Err(error) = self.docker().stop_container(&id, Some(options)).await {
                tracing::warn!(%id, error = %engine_message(&error), "stopping a container failed");
            }
        }
        // The log stream ends once the container has stopped.
        let _ = tokio::time::timeout(Duration::from_secs(10), logs).await;
        let state = self
            .inspect(&id)
            .await
            .map_err(|e| run_error(engine_message(&e).into()))?
            .state
            .unwrap_or_default();
        self.remove(&id).await;
        if stopped_by_us {
            return Ok(ExitStatus::Killed);
        }
        if state.oom_killed == Some(true) {
            return Ok(ExitStatus::OomKilled);
        }
        let code = state.exit_code.unwrap_or(0);
        Ok(ExitStatus::Code(i32::try_from(code).unwrap_or(i32::MAX)))
    }

    async fn finish_pod(&self, uid: &str) {
        self.inner.sandboxes.lock().expect("sandboxes").remove(uid);
        self.inner.ips.lock().expect("ips").remove(uid);
        match self.find(&[format!("{}={uid}", labels::POD_UID)]).await {
            Ok(found) => {
                for (id, _) in found {
                    self.remove(&id).await;
                }
            }
            Err(error) => {
                tracing::warn!(uid, error = %engine_message(&error), "cannot list a finished pod's containers")
            }
        }
    }

    async fn retain(&self, uids: &HashSet<String>) {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&HashMap::from([(
                "label".to_string(),
                vec![self.node_filter()],
            )]))
            .build();
        let found = match self.docker().list_containers(Some(options)).await {
            Ok(found) => found,
            Err(error) => {
                tracing::debug!(error = %engine_message(&error), "cannot list containers to clean up");
                return;
            }
        };
        for container in found {
            let uid = container
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::POD_UID))
                .cloned()
                .unwrap_or_default();
            if !uids.contains(&uid)
                && let Some(id) = container.id
            {
                tracing::info!(%id, pod_uid = %uid, "removing a container of a pod no longer on this node");
                self.remove(&id).await;
                self.inner.sandboxes.lock().expect("sandboxes").remove(&uid);
                self.inner.ips.lock().expect("ips").remove(&uid);
            }
        }
    }
}

/// Copies the container's output (from its start, so an adopted container's
/// earlier lines are kept) into the agent's log writers until it stops.
async fn copy_logs(
    docker: Docker,
    id: String,
    mut stdout: skiff_agent::driver::OutputStream,
    mut stderr: skiff_agent::driver::OutputStream,
) {
    let options = LogsOptionsBuilder::default()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut stream = docker.logs(&id, Some(options));
    while let Some(chunk) = stream.next().await {
        let result = match chunk {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                stdout.write_all(&message).await
            }
            Ok(LogOutput::StdErr { message }) => stderr.write_all(&message).await,
            Ok(LogOutput::StdIn { .. }) => Ok(()),
            Err(error) => {
                tracing::debug!(%id, error = %engine_message(&error), "the container's log stream ended");
                break;
            }
        };
        if result.is_err() {
            break;
        }
    }
    let _ = stdout.flush().await;
    let _ = stderr.flush().await;
}

impl ContainerDriver for OciDriver {
    fn prepare<'a>(
        &'a self,
        image: &'a str,
        pull: &'a PullRequest,
    ) -> BoxFuture<'a, Result<PreparedImage, PrepareError>> {
        self.prepare_image(image, pull).boxed()
    }

    fn run<'a>(
        &'a self,
        image: &'a PreparedImage,
        process: ProcessSpec,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, RunError>> {
        self.run_process(image, process, cancel).boxed()
    }

    fn exec<'a>(
        &'a self,
        container: &'a ContainerTemplate,
        exec: ExecSpec,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, RunError>> {
        self.exec_in(container, exec, cancel).boxed()
    }

    fn usage<'a>(&'a self, pod_uid: &'a str) -> BoxFuture<'a, Vec<ContainerUsage>> {
        self.usage_of(pod_uid).boxed()
    }

    fn pod_ip(&self, pod_uid: &str) -> Option<IpAddr> {
        self.inner.ips.lock().expect("ips").get(pod_uid).copied()
    }

    /// An OCI pod's address is its sandbox's: pending until that exists.
    fn pod_address(&self, pod_uid: &str) -> PodAddress {
        self.pod_ip(pod_uid)
            .map_or(PodAddress::Pending, PodAddress::Own)
    }

    fn pod_finished<'a>(&'a self, pod_uid: &'a str) -> BoxFuture<'a, ()> {
        self.finish_pod(pod_uid).boxed()
    }

    fn retain_pods<'a>(&'a self, pod_uids: &'a HashSet<String>) -> BoxFuture<'a, ()> {
        self.retain(pod_uids).boxed()
    }

    fn node_conditions(&self) -> Vec<DriverCondition> {
        let health = self.inner.health.lock().expect("health").clone();
        vec![match health {
            Ok(version) => DriverCondition {
                type_: "OCIRuntimeReady".to_string(),
                status: true,
                reason: "DockerReachable".to_string(),
                message: format!("the Docker engine {version} runs the node's OCI pods"),
            },
            Err(error) => DriverCondition {
                type_: "OCIRuntimeReady".to_string(),
                status: false,
                reason: "DockerUnreachable".to_string(),
                message: format!(
                    "the OCI runtime is unavailable (Wasm pods are not affected): {error}"
                ),
            },
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_engine_that_does_not_answer_is_a_condition_and_a_pull_error() {
        let dir = std::env::temp_dir().join(format!("skiff-oci-down-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        // A socket file nobody listens on: connections are refused.
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let config = OciConfig {
            socket: Some(socket.display().to_string()),
            ..OciConfig::new("n@/tmp/x")
        };
        let detach = CancellationToken::new();
        let driver = OciDriver::connect(config, detach.clone()).unwrap();
        assert!(!driver.start_health_checks().await);
        let conditions = driver.node_conditions();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].type_, "OCIRuntimeReady");
        assert!(!conditions[0].status);
        assert_eq!(conditions[0].reason, "DockerUnreachable");
        let err = driver
            .prepare("127.0.0.1:5000/a:1", &PullRequest::default())
            .await
            .unwrap_err();
        // The engine, not the image, is at fault: CreateContainerError.
        assert!(!err.is_pull_error(), "{err}");
        assert!(
            skiff_agent::driver::error_chain(&err).contains("the OCI runtime is unavailable"),
            "{err}"
        );
        detach.cancel();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", "latest"));
        assert_eq!(
            split_reference("127.0.0.1:5000/skiff-test/busybox:1"),
            ("127.0.0.1:5000/skiff-test/busybox", "1")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/x"),
            ("127.0.0.1:5000/x", "latest")
        );
        assert_eq!(
            split_reference("r.io/x@sha256:ab"),
            ("r.io/x@sha256:ab", "")
        );
    }
}
