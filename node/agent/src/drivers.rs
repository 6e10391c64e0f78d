//! The node's drivers behind one [`ContainerDriver`]: every pod goes to the Wasm
//! driver or the OCI driver (when the node has one).
//!
//! The choice, per container image:
//! 1. the pod's `runtimeClassName`: `wasm` or `oci` (the node creates both
//!    RuntimeClass objects at start); any other class cannot run here;
//! 2. a `file://`, `http://` or `https://` URL is a Wasm artifact;
//! 3. an image the OCI engine already holds (unless the pull policy is `Always`)
//!    is a container image;
//! 4. otherwise the registry is asked through the Wasm driver: a Wasm artifact
//!    runs there, an ordinary container image (no Wasm layer) goes to the OCI driver.
//!
//! What was learned about an image is remembered, so restarts do not ask again.
//! Which driver runs each pod is remembered too: a pod's address
//! ([`ContainerDriver::pod_address`]) is the node's for a Wasm pod, its sandbox's
//! for an OCI pod, and pending until the first of its containers is being prepared.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::driver::{
    ContainerDriver, ContainerTemplate, ContainerUsage, DriverCondition, DriverMetric, ExecSpec,
    ExitStatus, ImagePullPolicy, PodAddress, PrepareError, PreparedImage, ProcessSpec, PullRequest,
    RunError,
};

/// The runtime class (and RuntimeClass handler) names the node knows.
pub const WASM_CLASS: &str = "wasm";
pub const OCI_CLASS: &str = "oci";

/// Which driver runs an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Wasm,
    Oci,
}

/// What [`Drivers::prepare`] hands back: the image prepared by the chosen driver.
struct Dispatched {
    kind: Kind,
    inner: PreparedImage,
}

/// The Wasm driver and, optionally, the OCI driver, chosen per image.
pub struct Drivers {
    wasm: Arc<dyn ContainerDriver>,
    oci: Option<Arc<dyn ContainerDriver>>,
    /// Kinds learned by asking a registry or the engine, by image reference.
    learned: Mutex<HashMap<String, Kind>>,
    /// The driver of each pod (by uid) once one of its containers is prepared.
    pods: Mutex<HashMap<String, Kind>>,
}

impl Drivers {
    pub fn new(wasm: Arc<dyn ContainerDriver>, oci: Option<Arc<dyn ContainerDriver>>) -> Drivers {
        Drivers {
            wasm,
            oci,
            learned: Mutex::default(),
            pods: Mutex::default(),
        }
    }

    fn driver(&self, kind: Kind) -> Option<&Arc<dyn ContainerDriver>> {
        match kind {
            Kind::Wasm => Some(&self.wasm),
            Kind::Oci => self.oci.as_ref(),
        }
    }

    /// The kind fixed by the pod or the reference alone, if any.
    fn declared(image: &str, pull: &PullRequest) -> Result<Option<Kind>, String> {
        let class = pull.pod.as_ref().and_then(|p| p.runtime_class.as_deref());
        match class {
            Some(WASM_CLASS) => return Ok(Some(Kind::Wasm)),
            Some(OCI_CLASS) => return Ok(Some(Kind::Oci)),
            Some(other) => {
                return Err(format!(
                    "runtimeClassName {other:?} has no handler on this node (it runs {WASM_CLASS:?} and {OCI_CLASS:?})"
                ));
            }
            None => {}
        }
        let url = ["file://", "http://", "https://"]
            .iter()
            .any(|scheme| image.starts_with(scheme));
        Ok(url.then_some(Kind::Wasm))
    }

    fn remember(&self, image: &str, kind: Kind) {
        self.learned
            .lock()
            .expect("kinds lock")
            .insert(image.to_string(), kind);
    }

    fn learned(&self, image: &str) -> Option<Kind> {
        self.learned.lock().expect("kinds lock").get(image).copied()
    }

    /// Remembers which driver runs the pod the image is prepared for. The
    /// first container decides; a pod mixing kinds keeps that driver's address.
    fn assign(&self, pull: &PullRequest, kind: Kind) {
        if let Some(pod) = &pull.pod {
            self.pods
                .lock()
                .expect("pods lock")
                .entry(pod.uid.clone())
                .or_insert(kind);
        }
    }

    fn forget_pods(&self, keep: impl Fn(&str) -> bool) {
        self.pods
            .lock()
            .expect("pods lock")
            .retain(|uid, _| keep(uid));
    }

    async fn prepare_with(
        &self,
        kind: Kind,
        image: &str,
        pull: &PullRequest,
    ) -> Result<PreparedImage, PrepareError> {
        let Some(driver) = self.driver(kind) else {
            return Err(PrepareError::Create {
                image: image.to_string(),
                source: "the pod needs the OCI runtime, which this node does not run (start it with --oci and a reachable Docker daemon)".into(),
            });
        };
        let inner = driver.prepare(image, pull).await?;
        let root_filesystem = inner.has_root_filesystem();
        let outer = PreparedImage::new(inner.image_id().to_string(), Dispatched { kind, inner });
        Ok(if root_filesystem {
            outer.with_root_filesystem()
        } else {
            outer
        })
    }

    async fn choose_and_prepare(
        &self,
        image: &str,
        pull: &PullRequest,
    ) -> Result<PreparedImage, PrepareError> {
        let declared = Self::declared(image, pull).map_err(|message| PrepareError::Create {
            image: image.to_string(),
            source: message.into(),
        })?;
        if let Some(kind) = declared.or_else(|| self.learned(image)) {
            self.assign(pull, kind);
            return self.prepare_with(kind, image, pull).await;
        }
        if let Some(oci) = &self.oci
            && pull.policy != ImagePullPolicy::Always
        {
            // Only a look at what the engine holds: no pod, so no sandbox yet.
            let local = PullRequest {
                policy: ImagePullPolicy::Never,
                ..PullRequest::default()
            };
            if oci.prepare(image, &local).await.is_ok() {
                self.remember(image, Kind::Oci);
                self.assign(pull, Kind::Oci);
                return self.prepare_with(Kind::Oci, image, pull).await;
            }
        }
        match self.prepare_with(Kind::Wasm, image, pull).await {
            Ok(prepared) => {
                self.remember(image, Kind::Wasm);
                self.assign(pull, Kind::Wasm);
                Ok(prepared)
            }
            Err(PrepareError::WrongKind { .. }) if self.oci.is_some() => {
                tracing::info!(%image, "a container image: running it on the OCI driver");
                self.remember(image, Kind::Oci);
                self.assign(pull, Kind::Oci);
                self.prepare_with(Kind::Oci, image, pull).await
            }
            Err(error) => Err(error),
        }
    }
}

impl ContainerDriver for Drivers {
    fn prepare<'a>(
        &'a self,
        image: &'a str,
        pull: &'a PullRequest,
    ) -> BoxFuture<'a, Result<PreparedImage, PrepareError>> {
        self.choose_and_prepare(image, pull).boxed()
    }

    fn run<'a>(
        &'a self,
        image: &'a PreparedImage,
        process: ProcessSpec,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, RunError>> {
        async move {
            let dispatched = image.program::<Dispatched>().ok_or_else(|| RunError {
                source: format!("image {} was not prepared by this node", image.image_id()).into(),
            })?;
            let driver = self.driver(dispatched.kind).ok_or_else(|| RunError {
                source: "the OCI runtime is not running on this node".into(),
            })?;
            driver.run(&dispatched.inner, process, cancel).await
        }
        .boxed()
    }

    fn exec<'a>(
        &'a self,
        container: &'a ContainerTemplate,
        exec: ExecSpec,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, RunError>> {
        async move {
            let image = &container.image;
            let dispatched = image.program::<Dispatched>().ok_or_else(|| RunError {
                source: format!("image {} was not prepared by this node", image.image_id()).into(),
            })?;
            let driver = self.driver(dispatched.kind).ok_or_else(|| RunError {
                source: "the OCI runtime is not running on this node".into(),
            })?;
            let inner = ContainerTemplate {
                image: dispatched.inner.clone(),
                ..container.clone()
            };
            driver.exec(&inner, exec, cancel).await
        }
        .boxed()
    }

    fn usage<'a>(&'a self, pod_uid: &'a str) -> BoxFuture<'a, Vec<ContainerUsage>> {
        async move {
            let mut usage = self.wasm.usage(pod_uid).await;
            if let Some(oci) = &self.oci {
                usage.extend(oci.usage(pod_uid).await);
            }
            usage
        }
        .boxed()
    }

    fn pod_ip(&self, pod_uid: &str) -> Option<IpAddr> {
        self.oci
            .as_ref()
            .and_then(|oci| oci.pod_ip(pod_uid))
            .or_else(|| self.wasm.pod_ip(pod_uid))
    }

    fn pod_address(&self, pod_uid: &str) -> PodAddress {
        let kind = self.pods.lock().expect("pods lock").get(pod_uid).copied();
        match kind.and_then(|kind| self.driver(kind)) {
            Some(driver) => driver.pod_address(pod_uid),
            None => PodAddress::Pending,
        }
    }

    fn pod_finished<'a>(&'a self, pod_uid: &'a str) -> BoxFuture<'a, ()> {
        async move {
            self.forget_pods(|uid| uid != pod_uid);
            self.wasm.pod_finished(pod_uid).await;
            if let Some(oci) = &self.oci {
                oci.pod_finished(pod_uid).await;
            }
        }
        .boxed()
    }

    fn retain_pods<'a>(&'a self, pod_uids: &'a HashSet<String>) -> BoxFuture<'a, ()> {
        async move {
            self.forget_pods(|uid| pod_uids.contains(uid));
            self.wasm.retain_pods(pod_uids).await;
            if let Some(oci) = &self.oci {
                oci.retain_pods(pod_uids).await;
            }
        }
        .boxed()
    }

    fn node_conditions(&self) -> Vec<DriverCondition> {
        let mut conditions = self.wasm.node_conditions();
        if let Some(oci) = &self.oci {
            conditions.extend(oci.node_conditions());
        }
        conditions
    }

    fn metrics(&self) -> Vec<DriverMetric> {
        let mut metrics = self.wasm.metrics();
        if let Some(oci) = &self.oci {
            metrics.extend(oci.metrics());
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::PodSandbox;

    /// A driver that prepares only the images it is given and counts prepares.
    struct Only {
        images: Vec<&'static str>,
        wrong_kind: bool,
        prepares: Mutex<Vec<String>>,
        /// Set for an OCI-like driver: images with a root filesystem, pods with
        /// this address once prepared (pending before).
        sandbox_ip: Option<IpAddr>,
        sandboxes: Mutex<HashSet<String>>,
    }

    impl Only {
        fn new(images: &[&'static str], wrong_kind: bool) -> Arc<Only> {
            Arc::new(Only {
                images: images.to_vec(),
                wrong_kind,
                prepares: Mutex::default(),
                sandbox_ip: None,
                sandboxes: Mutex::default(),
            })
        }
        fn with_sandboxes(images: &[&'static str], ip: IpAddr) -> Arc<Only> {
            Arc::new(Only {
                sandbox_ip: Some(ip),
                ..Arc::into_inner(Only::new(images, false)).unwrap()
            })
        }
        fn prepared(&self) -> Vec<String> {
            self.prepares.lock().unwrap().clone()
        }
    }

    impl ContainerDriver for Only {
        fn prepare<'a>(
            &'a self,
            image: &'a str,
            pull: &'a PullRequest,
        ) -> BoxFuture<'a, Result<PreparedImage, PrepareError>> {
            self.prepares
                .lock()
                .unwrap()
                .push(format!("{image} {:?}", pull.policy));
            let result = if self.images.contains(&image) {
                let prepared = PreparedImage::new("sha256:1", ());
                match (&pull.pod, self.sandbox_ip) {
                    (Some(pod), Some(_)) => {
                        self.sandboxes.lock().unwrap().insert(pod.uid.clone());
                        Ok(prepared.with_root_filesystem())
                    }
                    _ => Ok(prepared),
                }
            } else if self.wrong_kind {
                Err(PrepareError::WrongKind {
                    image: image.into(),
                    expected: "a Wasm artifact",
                    source: "no wasm layer".into(),
                })
            } else {
                Err(PrepareError::Pull {
                    image: image.into(),
                    source: "not found".into(),
                })
            };
            futures::future::ready(result).boxed()
        }

        fn run<'a>(
            &'a self,
            _image: &'a PreparedImage,
            _process: ProcessSpec,
            _cancel: CancellationToken,
        ) -> BoxFuture<'a, Result<ExitStatus, RunError>> {
            futures::future::ready(Ok(ExitStatus::Code(0))).boxed()
        }

        fn pod_address(&self, pod_uid: &str) -> PodAddress {
            match self.sandbox_ip {
                None => PodAddress::Node,
                Some(ip) if self.sandboxes.lock().unwrap().contains(pod_uid) => PodAddress::Own(ip),
                Some(_) => PodAddress::Pending,
            }
        }
    }

    fn pull(class: Option<&str>, policy: ImagePullPolicy) -> PullRequest {
        PullRequest {
            policy,
            docker_configs: Vec::new(),
            pod: Some(Arc::new(PodSandbox {
                runtime_class: class.map(str::to_string),
                ..PodSandbox::default()
            })),
        }
    }

    fn kind(image: &PreparedImage) -> Kind {
        image.program::<Dispatched>().expect("dispatched").kind
    }

    #[tokio::test]
    async fn runtime_class_decides_first() {
        let wasm = Only::new(&["r/app:1"], true);
        let oci = Only::new(&["r/app:1"], false);
        let drivers = Drivers::new(wasm.clone(), Some(oci.clone()));
        let image = drivers
            .prepare(
                "r/app:1",
                &pull(Some("wasm"), ImagePullPolicy::IfNotPresent),
            )
            .await
            .unwrap();
        assert_eq!(kind(&image), Kind::Wasm);
        assert!(oci.prepared().is_empty(), "the OCI engine was not asked");
        let image = drivers
            .prepare("r/app:1", &pull(Some("oci"), ImagePullPolicy::Always))
            .await
            .unwrap();
        assert_eq!(kind(&image), Kind::Oci);
        let err = drivers
            .prepare("r/app:1", &pull(Some("gvisor"), ImagePullPolicy::Always))
            .await
            .unwrap_err();
        assert!(!err.is_pull_error());
        assert!(crate::driver::error_chain(&err).contains("gvisor"));
    }

    #[tokio::test]
    async fn a_container_image_from_the_registry_goes_to_oci_and_is_remembered() {
        let wasm = Only::new(&["file:///a.wasm"], true);
        let oci = Only::new(&["r/db:1"], false);
        let drivers = Drivers::new(wasm.clone(), Some(oci.clone()));
        let always = pull(None, ImagePullPolicy::Always);
        let image = drivers.prepare("r/db:1", &always).await.unwrap();
        assert_eq!(kind(&image), Kind::Oci);
        assert_eq!(wasm.prepared(), ["r/db:1 Always"]);
        // Learned: the registry is not asked through the Wasm driver again.
        drivers.prepare("r/db:1", &always).await.unwrap();
        assert_eq!(wasm.prepared().len(), 1);
        let image = drivers
            .prepare("file:///a.wasm", &pull(None, ImagePullPolicy::IfNotPresent))
            .await
            .unwrap();
        assert_eq!(kind(&image), Kind::Wasm);
    }

    #[tokio::test]
    async fn an_image_the_engine_holds_runs_there_without_asking_a_registry() {
        let wasm = Only::new(&[], true);
        let oci = Only::new(&["local/tool:1"], false);
        let drivers = Drivers::new(wasm.clone(), Some(oci.clone()));
        let image = drivers
            .prepare("local/tool:1", &pull(None, ImagePullPolicy::IfNotPresent))
            .await
            .unwrap();
        assert_eq!(kind(&image), Kind::Oci);
        assert!(wasm.prepared().is_empty());
        assert_eq!(oci.prepared()[0], "local/tool:1 Never");
    }

    #[tokio::test]
    async fn without_an_oci_driver_a_container_image_cannot_be_created() {
        let drivers = Drivers::new(Only::new(&[], true), None);
        let err = drivers
            .prepare("r/db:1", &pull(None, ImagePullPolicy::IfNotPresent))
            .await
            .unwrap_err();
        assert!(matches!(err, PrepareError::WrongKind { .. }));
        assert!(!err.is_pull_error());
        let err = drivers
            .prepare("r/db:1", &pull(Some("oci"), ImagePullPolicy::IfNotPresent))
            .await
            .unwrap_err();
        assert!(crate::driver::error_chain(&err).contains("OCI runtime"));
    }

    fn pull_for(uid: &str, class: Option<&str>) -> PullRequest {
        PullRequest {
            policy: ImagePullPolicy::IfNotPresent,
            docker_configs: Vec::new(),
            pod: Some(Arc::new(PodSandbox {
                uid: uid.to_string(),
                runtime_class: class.map(str::to_string),
                ..PodSandbox::default()
            })),
        }
    }

    #[tokio::test]
    async fn a_pod_has_its_drivers_address_once_its_driver_is_known() {
        let ip: IpAddr = "172.17.0.9".parse().unwrap();
        let wasm = Only::new(&["r/fn:1"], true);
        let oci = Only::with_sandboxes(&["r/db:1"], ip);
        let drivers = Drivers::new(wasm, Some(oci));
        assert_eq!(drivers.pod_address("db"), PodAddress::Pending);
        let image = drivers
            .prepare("r/db:1", &pull_for("db", None))
            .await
            .unwrap();
        assert!(image.has_root_filesystem(), "an OCI image keeps the mark");
        assert_eq!(drivers.pod_address("db"), PodAddress::Own(ip));
        let image = drivers
            .prepare("r/fn:1", &pull_for("fn", Some("wasm")))
            .await
            .unwrap();
        assert!(!image.has_root_filesystem());
        assert_eq!(drivers.pod_address("fn"), PodAddress::Node);
        // A pod whose OCI image fails stays without an address.
        let gone = pull_for("gone", Some("oci"));
        assert!(drivers.prepare("r/gone:1", &gone).await.is_err());
        assert_eq!(drivers.pod_address("gone"), PodAddress::Pending);
        drivers.pod_finished("db").await;
        assert_eq!(drivers.pod_address("db"), PodAddress::Pending);
        drivers.retain_pods(&HashSet::new()).await;
        assert_eq!(drivers.pod_address("fn"), PodAddress::Pending);
    }
}
