//! The containers running on this node now, with what their processes are
//! started with: `kubectl exec` finds its container here, and `kubectl top`
//! lists the pods to measure.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::driver::ContainerTemplate;
use crate::pod::PodIdentity;

/// One pod with running containers.
#[derive(Clone)]
pub struct RunningPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// By container name.
    pub containers: BTreeMap<String, RunningContainer>,
}

/// One running container.
#[derive(Clone)]
pub struct RunningContainer {
    pub template: Arc<ContainerTemplate>,
    pub started: Instant,
}

/// Running containers by pod (`namespace/name`).
#[derive(Default)]
pub struct RunningTable {
    pods: Mutex<BTreeMap<(String, String), RunningPod>>,
}

impl RunningTable {
    /// `container` of `pod` runs now, started from `template`.
    pub fn started(&self, pod: &PodIdentity, container: &str, template: ContainerTemplate) {
        let mut pods = self.pods.lock().expect("running lock");
        let entry = pods
            .entry((pod.namespace.clone(), pod.name.clone()))
            .or_insert_with(|| RunningPod {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                containers: BTreeMap::new(),
            });
        if entry.uid != pod.uid {
            // A pod of the same name replaced an older one.
            entry.uid = pod.uid.clone();
            entry.containers.clear();
        }
        entry.containers.insert(
            container.to_string(),
            RunningContainer {
                template: Arc::new(template),
                started: Instant::now(),
            },
        );
    }

    /// `container` of `pod` stopped.
    pub fn stopped(&self, pod: &PodIdentity, container: &str) {
        let mut pods = self.pods.lock().expect("running lock");
        let key = (pod.namespace.clone(), pod.name.clone());
        if let Some(entry) = pods.get_mut(&key)
            && entry.uid == pod.uid
        {
            entry.containers.remove(container);
            if entry.containers.is_empty() {
                pods.remove(&key);
            }
        }
    }

    /// The running container, or a message saying why there is none.
    pub fn find(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<Arc<ContainerTemplate>, String> {
        let pods = self.pods.lock().expect("running lock");
        let Some(entry) = pods.get(&(namespace.to_string(), pod.to_string())) else {
            return Err(format!(
                "pod {namespace}/{pod} has no running container on this node"
            ));
        };
        entry
            .containers
            .get(container)
            .map(|c| Arc::clone(&c.template))
            .ok_or_else(|| {
                format!(
                    "container {container:?} is not running in pod {namespace}/{pod} (running: {})",
                    entry
                        .containers
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// Every pod with a running container.
    pub fn pods(&self) -> Vec<RunningPod> {
        self.pods
            .lock()
            .expect("running lock")
            .values()
            .cloned()
            .collect()
    }
}
