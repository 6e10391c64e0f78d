//! skiff-oci: the node's OCI driver. Ordinary container images run as Docker
//! containers (through the Docker Engine API, `bollard`) under the same pod
//! machinery as Wasm pods.
//!
//! - **Pods**: a pause container per pod holds the network namespace; every
//!   container of the pod joins it (`network_mode: container:<pause>`), so they
//!   share `localhost`; the pod IP is the pause container's bridge IP.
//! - **Images**: pulled with the pod's `imagePullSecrets` ([`auth`]) as
//!   `imagePullPolicy` says; `imageID` is the registry digest.
//! - **Processes**: `command`/`args` replace the image's entrypoint/cmd as in
//!   Kubernetes; env, workingDir, memory/CPU limits ([`resources`]); the output
//!   is copied into the agent's log files; a stop is SIGTERM, then SIGKILL after
//!   the grace period; an OOM kill is reported as such.
//! - **Volumes and security**: the agent's volume directories are bind-mounted;
//!   `securityContext` users, groups, read-only root and capabilities are set
//!   ([`security`]); exec probes run through Docker exec.
//! - **Cleanup**: every container carries [`labels`] naming the node, pod and
//!   container, so a restarted agent adopts running containers and removes
//!   leftovers; a finished pod's containers are removed.
//!
//! - **Exec and usage**: `kubectl exec` runs the command in the running container
//!   through Docker's exec API (stdin, tty, exit code); `kubectl top` reads
//!   Docker's container stats.
//!
//! See docs/oci-driver.md.

pub mod auth;
mod driver;
mod exec;
pub mod labels;
pub mod pause;
pub mod resources;
pub mod security;

pub use driver::{ClusterDns, OciConfig, OciDriver, OciError, SandboxObserver};
