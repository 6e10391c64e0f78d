//! The narrow interface between the pod worker and whatever runs a container's
//! process (the Wasm driver today, an OCI driver later).
//!
//! The worker only ever asks two things: make this image ready to run
//! ([`ContainerDriver::prepare`]: fetch + compile, cached by the driver) and run
//! one process of it until it exits or is cancelled ([`ContainerDriver::run`]).
//! Stop is the cancellation token; status is the returned [`ExitStatus`]; logs are
//! the writers in [`ProcessSpec`]. [`ContainerDriver::exec`] runs a command in a
//! running container and [`ContainerDriver::usage`] measures what containers use.
//!
//! Drivers that keep a sandbox per pod (the OCI driver's pause container) also
//! get the pod and container a process belongs to ([`ProcessContext`]), are told
//! when a pod is finished for good ([`ContainerDriver::pod_finished`]) and which
//! pods the node still has ([`ContainerDriver::retain_pods`]), and may give a pod
//! its own IP ([`ContainerDriver::pod_ip`]). All of these have do-nothing defaults.

use std::any::Any;
use std::collections::HashSet;
use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Container;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// Any error a driver wants to report; its chain becomes the user-visible message.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Where a process's output goes; the agent hands in the write ends of its log pipes.
pub type OutputStream = Box<dyn AsyncWrite + Send + Sync + Unpin>;

/// An image made ready to run: its content digest plus the driver's own handle
/// (a compiled program), which the agent passes back to [`ContainerDriver::run`]
/// without looking inside.
#[derive(Clone)]
pub struct PreparedImage {
    image_id: String,
    program: Arc<dyn Any + Send + Sync>,
    root_filesystem: bool,
}

impl PreparedImage {
    /// `image_id` is the content digest (`sha256:…`), shown as the container's `imageID`.
    pub fn new(image_id: impl Into<String>, program: impl Any + Send + Sync) -> PreparedImage {
        PreparedImage {
            image_id: image_id.into(),
            program: Arc::new(program),
            root_filesystem: false,
        }
    }

    /// Marks an image whose containers get a root filesystem of their own (an
    /// OCI image): `workingDir` may then be any absolute path (the runtime
    /// creates it if missing) and a `subPath` may be a file. Without it the
    /// container sees only its mounted volumes (a Wasm guest's preopened
    /// directories).
    pub fn with_root_filesystem(mut self) -> PreparedImage {
        self.root_filesystem = true;
        self
    }

    /// Whether the image brings its own root filesystem (see [`Self::with_root_filesystem`]).
    pub fn has_root_filesystem(&self) -> bool {
        self.root_filesystem
    }

    pub fn image_id(&self) -> &str {
        &self.image_id
    }

    /// The driver's handle, if it is of type `T` (a driver only ever gets back
    /// what it produced, so `None` means a mix-up between drivers).
    pub fn program<T: Any>(&self) -> Option<&T> {
        self.program.downcast_ref()
    }
}

impl fmt::Debug for PreparedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedImage")
            .field("image_id", &self.image_id)
            .field("root_filesystem", &self.root_filesystem)
            .finish_non_exhaustive()
    }
}

/// Kubernetes' `imagePullPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ImagePullPolicy {
    /// Ask the registry on every start.
    Always,
    /// Use what the node has; pull only when it has nothing.
    #[default]
    IfNotPresent,
    /// Use only what the node has.
    Never,
}

impl ImagePullPolicy {
    /// The container's policy, or the API server's default when it names none:
    /// `Always` for a registry image tagged `latest` or untagged, else `IfNotPresent`.
    pub fn of(policy: Option<&str>, image: &str) -> ImagePullPolicy {
        match policy {
            Some("Always") => ImagePullPolicy::Always,
            Some("Never") => ImagePullPolicy::Never,
            Some("IfNotPresent") => ImagePullPolicy::IfNotPresent,
            _ => {
                let name = image.rsplit('/').next().unwrap_or(image);
                let latest = !image.contains("://")
                    && !image.contains('@')
                    && name.split_once(':').is_none_or(|(_, tag)| tag == "latest");
                if latest {
                    ImagePullPolicy::Always
                } else {
                    ImagePullPolicy::IfNotPresent
                }
            }
        }
    }
}

/// The pod annotation naming the hosts a pod's containers may reach
/// (`host[:port]`, `*.domain[:port]`, IPs; comma-separated). Unset: none.
pub const ALLOW_OUTBOUND_ANNOTATION: &str = "skiff.dev/allow-outbound";

/// The pod a container belongs to, as drivers with per-pod sandboxes need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSandbox {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// `spec.runtimeClassName`: which driver runs the pod, when it names one.
    pub runtime_class: Option<String>,
    /// `terminationGracePeriodSeconds` (default 30 s): how long a stopping
    /// process may take after SIGTERM before it is killed.
    pub grace_period: Duration,
    /// The pod's `securityContext` user and groups, which a container's own
    /// `securityContext` overrides (drivers that run processes as users honour them).
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    /// The pod's `skiff.dev/allow-outbound` annotation: the hosts its containers
    /// may reach (a Wasm driver enforces it; nothing when absent).
    pub allow_outbound: Option<String>,
}

/// The grace period when the pod names none.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// Which pod and container a process is an attempt of.
#[derive(Debug, Clone)]
pub struct ProcessContext {
    pub pod: Arc<PodSandbox>,
    /// The container's spec as the pod gives it (command/args unexpanded,
    /// resources, workingDir), for drivers that honour more than argv and env.
    pub container: Arc<Container>,
    pub restart_count: u32,
}

/// How to pull one container's image.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PullRequest {
    pub policy: ImagePullPolicy,
    /// The `.dockerconfigjson` documents of the pod's `imagePullSecrets`, in order.
    pub docker_configs: Vec<Vec<u8>>,
    /// The pod the image is for (a dispatching driver reads its runtime class).
    pub pod: Option<Arc<PodSandbox>>,
}

impl fmt::Debug for PullRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials themselves.
        f.debug_struct("PullRequest")
            .field("policy", &self.policy)
            .field("docker_configs", &self.docker_configs.len())
            .field("pod", &self.pod)
            .finish()
    }
}

/// A TCP port the container declares (`ports[]`), for programs that serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub name: Option<String>,
    pub container_port: u16,
    /// Where to listen: the port's `hostIP`, else 127.0.0.1.
    pub host_ip: std::net::IpAddr,
    /// `hostPort`, or `None` for any free port.
    pub host_port: Option<u16>,
}

/// Where the node actually serves one of a container's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedPort {
    pub name: Option<String>,
    pub container_port: u16,
    pub address: std::net::SocketAddr,
}

/// Called once by a driver whose process serves, with the bound addresses,
/// before the first request is accepted.
pub type PortsReport = Box<dyn FnOnce(Vec<ServedPort>) + Send>;

/// Called once by a driver when the attempt runs: the container counts as
/// running (and, without probes, ready) from then on, so a driver calls it
/// once the process would answer on its ports — for a served Wasm component,
/// once its node ports are bound. With the runtime's own id of the attempt
/// (`docker://<id>`), shown as the container's `containerID` instead of the
/// agent's `wasm://…` id, when it has one.
pub type StartedReport = Box<dyn FnOnce(Option<String>) + Send>;

/// A host directory the process sees at `container_path`: one of the pod's
/// volumes (see [`crate::volumes`]), preopened by the Wasm driver; an OCI
/// driver bind-mounts the same directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub host_path: std::path::PathBuf,
    /// Absolute path inside the container.
    pub container_path: String,
    pub read_only: bool,
}

/// The container's `resources.limits`, as the driver enforces them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessLimits {
    /// `limits.memory` in bytes: the process cannot grow past it and ends
    /// [`ExitStatus::OomKilled`] when it tries.
    pub memory_bytes: Option<u64>,
    /// `limits.cpu` in cores (`0.5` = half a core).
    pub cpu_cores: Option<f64>,
}

/// One process to run from a prepared image.
pub struct ProcessSpec {
    /// argv, argv\[0\] first.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdout: OutputStream,
    pub stderr: OutputStream,
    /// The container's TCP ports; a program that serves listens on them.
    pub ports: Vec<PortSpec>,
    pub ports_report: Option<PortsReport>,
    /// The container's volumeMounts, resolved to host directories.
    pub mounts: Vec<MountSpec>,
    /// `workingDir`: an absolute path; for an image without a root filesystem
    /// of its own, `/` or a directory inside one of `mounts`.
    pub working_dir: Option<String>,
    pub limits: ProcessLimits,
    /// The pod and container this process belongs to (absent in some tests).
    pub context: Option<ProcessContext>,
    /// Called once the process runs (see [`StartedReport`]); a driver must
    /// call it before the process can be seen running.
    pub started_report: Option<StartedReport>,
}

/// Where an exec'd command's input comes from.
pub type InputStream = Box<dyn AsyncRead + Send + Sync + Unpin>;

/// A running container as its processes are started: the prepared image and
/// what the agent resolved for it (env, mounts, working directory, limits).
/// Kept while the container runs, so `kubectl exec` and exec probes start
/// their commands the way the container itself was started.
#[derive(Clone)]
pub struct ContainerTemplate {
    pub image: PreparedImage,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<MountSpec>,
    pub working_dir: Option<String>,
    pub limits: ProcessLimits,
    pub context: Option<ProcessContext>,
}

impl ContainerTemplate {
    /// A process of this container with `args` as argv and the given output.
    pub fn process(
        &self,
        args: Vec<String>,
        stdout: OutputStream,
        stderr: OutputStream,
    ) -> ProcessSpec {
        ProcessSpec {
            args,
            env: self.env.clone(),
            stdout,
            stderr,
            ports: Vec::new(),
            ports_report: None,
            mounts: self.mounts.clone(),
            working_dir: self.working_dir.clone(),
            limits: self.limits,
            context: self.context.clone(),
            started_report: None,
        }
    }
}

/// One command to run in a running container (`kubectl exec`, an exec probe).
pub struct ExecSpec {
    /// argv, argv\[0\] first.
    pub command: Vec<String>,
    /// `None` when the client sends no input (the command reads end-of-file).
    pub stdin: Option<InputStream>,
    pub stdout: OutputStream,
    /// With `tty`, the command's stderr is merged into stdout.
    pub stderr: OutputStream,
    pub tty: bool,
}

/// What one container uses right now, as a driver measures it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerUsage {
    pub container: String,
    /// CPU time used since the container (attempt) started, in nanoseconds.
    pub cpu_nanos: u64,
    /// Memory in use (the working set), in bytes.
    pub memory_bytes: u64,
    /// Measured inside the agent's own process (a Wasm guest), so already part
    /// of the process's figures; an OCI container is not.
    pub in_process: bool,
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited by itself with this code.
    Code(i32),
    /// The sandbox stopped it (a Wasm trap); the text says why.
    Trap(String),
    /// It was stopped through the cancellation token.
    Killed,
    /// The kernel killed it for going over its memory limit (exit code 137).
    OomKilled,
}

/// Why an image could not be made ready. The two kinds matter to the user:
/// a pull problem may go away by itself (network, registry), a bad image will not.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("pulling image {image:?}")]
    Pull {
        image: String,
        #[source]
        source: BoxError,
    },
    #[error("creating a container from image {image:?}")]
    Create {
        image: String,
        #[source]
        source: BoxError,
    },
    /// The image is of a kind this driver does not run (a container image given
    /// to the Wasm driver); a dispatching driver hands it to another one.
    #[error("image {image:?} is not {expected}")]
    WrongKind {
        image: String,
        expected: &'static str,
        #[source]
        source: BoxError,
    },
}

impl PrepareError {
    /// True when fetching failed (waiting reason `ErrImagePull`), false when the
    /// image was fetched but cannot run (`CreateContainerError`).
    pub fn is_pull_error(&self) -> bool {
        matches!(self, PrepareError::Pull { .. })
    }
}

/// The process could not be started or supervised.
#[derive(Debug, thiserror::Error)]
#[error("running the container process")]
pub struct RunError {
    #[source]
    pub source: BoxError,
}

/// Prepares and runs container processes. Object-safe so the agent can hold
/// `Arc<dyn ContainerDriver>` and tests can substitute a fake.
pub trait ContainerDriver: Send + Sync + 'static {
    /// Fetch and compile `image` as `pull` says; cheap when already cached.
    fn prepare<'a>(
        &'a self,
        image: &'a str,
        pull: &'a PullRequest,
    ) -> BoxFuture<'a, Result<PreparedImage, PrepareError>>;

    /// Run one process to its end. Cancelling `cancel` must make it return
    /// [`ExitStatus::Killed`] promptly, and the output writers must be dropped
    /// by the time the future completes (the log pump waits for their end).
    fn run<'a>(
        &'a self,
        image: &'a PreparedImage,
        process: ProcessSpec,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, RunError>>;

    /// Run `exec.args` in the running `container` until it exits, as
    /// `kubectl exec` and exec probes do. The default starts a new process of
    /// the container's image with its env, mounts and limits (what a Wasm
    /// container's command is) and gives it no stdin; drivers with real
    /// containers run the command inside the running one.
    fn exec<'a>(
        &'a self,
        container: &'a ContainerTemplate,
        exec: ExecSpec,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, RunError>> {
        let process = container.process(exec.command, exec.stdout, exec.stderr);
        self.run(&container.image, process, cancel)
    }

    /// The usage of each of the pod's running containers the driver can
    /// measure (`kubectl top`); empty when it measures none.
    fn usage<'a>(&'a self, _pod_uid: &'a str) -> BoxFuture<'a, Vec<ContainerUsage>> {
        futures::future::ready(Vec::new()).boxed()
    }

    /// The pod's own IP, for drivers that give pods a network namespace;
    /// `None` means the pod shares the node's network (its IP is the node's)
    /// or its sandbox is not made yet.
    fn pod_ip(&self, _pod_uid: &str) -> Option<IpAddr> {
        None
    }

    /// The pod's address as the status and the downward API show it. The
    /// default: its own IP if [`Self::pod_ip`] gives one, else the node's.
    /// A driver that makes sandboxes says [`PodAddress::Pending`] until the
    /// pod's sandbox has its IP, so the pod never shows an address it will not keep.
    fn pod_address(&self, pod_uid: &str) -> PodAddress {
        self.pod_ip(pod_uid)
            .map_or(PodAddress::Node, PodAddress::Own)
    }

    /// The pod will run nothing more (deleted, or gone from the node): release
    /// whatever the driver keeps for it. Not called when the agent shuts down.
    fn pod_finished<'a>(&'a self, _pod_uid: &'a str) -> BoxFuture<'a, ()> {
        futures::future::ready(()).boxed()
    }

    /// The uids of every pod bound to the node, after each complete listing:
    /// what the driver still holds for any other pod (left from before an agent
    /// restart) can go.
    fn retain_pods<'a>(&'a self, _pod_uids: &'a HashSet<String>) -> BoxFuture<'a, ()> {
        futures::future::ready(()).boxed()
    }

    /// Extra Node conditions about the driver's health (e.g. the container
    /// engine is unreachable), sent with every heartbeat.
    fn node_conditions(&self) -> Vec<DriverCondition> {
        Vec::new()
    }

    /// The driver's own figures for the node's `/metrics` (see [`crate::metrics`]).
    fn metrics(&self) -> Vec<DriverMetric> {
        Vec::new()
    }
}

/// Whether a metric only grows (until the node restarts) or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// One metric family a driver reports: its samples, each with its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverMetric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// Where a pod can be reached, as its driver knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodAddress {
    /// The pod shares the node's network: its IP is the node's (Wasm pods).
    Node,
    /// The pod has an IP of its own (an OCI pod's sandbox).
    Own(IpAddr),
    /// Not known yet: the pod's driver is not chosen or its sandbox not made.
    /// Kubernetes shows no `podIP` until then.
    Pending,
}

/// A Node condition reported by a driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverCondition {
    pub type_: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// The error and all its causes on one line, as shown in a waiting message or Event.
pub fn error_chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_joins_causes() {
        let err = PrepareError::Pull {
            image: "oci://x".into(),
            source: "connection refused".into(),
        };
        assert_eq!(
            error_chain(&err),
            "pulling image \"oci://x\": connection refused"
        );
        assert!(err.is_pull_error());
    }

    #[test]
    fn pull_policy_defaults_like_the_api_server() {
        let of = ImagePullPolicy::of;
        assert_eq!(of(Some("Never"), "a:latest"), ImagePullPolicy::Never);
        assert_eq!(of(None, "nginx"), ImagePullPolicy::Always);
        assert_eq!(of(None, "127.0.0.1:5000/a/b"), ImagePullPolicy::Always);
        assert_eq!(
            of(None, "127.0.0.1:5000/a/b:latest"),
            ImagePullPolicy::Always
        );
        assert_eq!(
            of(None, "127.0.0.1:5000/a/b:v1"),
            ImagePullPolicy::IfNotPresent
        );
        assert_eq!(of(None, "r.io/a@sha256:00"), ImagePullPolicy::IfNotPresent);
        assert_eq!(of(None, "file:///x.wasm"), ImagePullPolicy::IfNotPresent);
    }

    #[test]
    fn prepared_image_hands_back_the_program() {
        let image = PreparedImage::new("sha256:ab", 42u32);
        assert_eq!(image.image_id(), "sha256:ab");
        assert_eq!(image.program::<u32>(), Some(&42));
        assert_eq!(image.program::<String>(), None);
    }
}
