//! What every pod-owning controller (ReplicaSet, Job, DaemonSet,
//! StatefulSet) does the same way: watch all pods into a cache, find the
//! pods an owner controls, stamp pods out of a template with an owner
//! reference, and create or delete them through the API.

use std::sync::Arc;

use futures::Stream;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;

use crate::Error;
use crate::pods::controller_ref;

/// A cache of every pod, and the stream of pod changes that feeds it (give
/// it to the controller's `owns_stream` / `watches_stream`).
pub fn watch_pods(
    client: &kube::Client,
) -> (
    Store<Pod>,
    impl Stream<Item = Result<Pod, watcher::Error>> + Send + 'static,
) {
    watch_all(client)
}

/// A cache of every object of kind `K` and the stream that feeds it.
pub fn watch_all<K>(
    client: &kube::Client,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let events = reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()).default_backoff(),
    )
    .touched_objects();
    (store, events)
}

/// The cached objects in `namespace` whose controller reference has `uid`,
/// once the cache has its first full list (an empty cache still loading
/// must never look like "no pods").
pub async fn controlled_by<K>(
    store: &Store<K>,
    namespace: &str,
    uid: &str,
) -> Result<Vec<Arc<K>>, Error>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    crate::runtime::cache_ready(store).await?;
    Ok(store
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .filter(|o| controller_ref(o.meta()).is_some_and(|r| r.uid == uid))
        .collect())
}

/// Whether a cache snapshot holds `name`, alive (for `Expectations`).
pub fn holds_alive<K: Resource>(objects: &[Arc<K>], name: &str) -> bool {
    objects
        .iter()
        .any(|o| o.meta().name.as_deref() == Some(name) && o.meta().deletion_timestamp.is_none())
}

/// The reference a controller puts on what it creates.
pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod named `name` from `template`, controlled by `owner`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    name: &str,
    owner: &OwnerReference,
) -> Pod {
    let template_meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(template_meta.labels.unwrap_or_default()),
            annotations: template_meta.annotations,
            owner_references: Some(vec![owner.clone()]),
            finalizers: template_meta.finalizers,
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Create `object`; an `AlreadyExists` answer counts as done when `exists_ok`
/// (a stable name such as a StatefulSet ordinal or a PVC). True when this
/// call created it.
pub async fn create<K>(client: &kube::Client, object: &K, exists_ok: bool) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let name = object.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    match api.create(&PostParams::default(), object).await {
        Ok(_) => {
            tracing::info!(kind = %K::kind(&()), name = %name, "created");
            Ok(true)
        }
        Err(kube::Error::Api(e)) if exists_ok && e.code == 409 => Ok(false),
        Err(source) => Err(Error::write("creating", &namespace, &name, source)),
    }
}

/// Delete `name` (gone already is fine); true when this call deleted it.
pub async fn delete<K>(client: &kube::Client, namespace: &str, name: &str) -> Result<bool, Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            tracing::info!(kind = %K::kind(&()), name, "deleted");
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(source) => Err(Error::write("deleting", namespace, name, source)),
    }
}

/// Merge-patch the status of `owner` to `status` unless it already reads so.
pub async fn patch_status<K, S>(
    client: &kube::Client,
    owner: &K,
    current: Option<&S>,
    status: &S,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(());
    }
    let namespace = owner.meta().namespace.clone().unwrap_or_default();
    let name = owner.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map_err(|source| Error::write("updating status of", &namespace, &name, source))?;
    Ok(())
}

/// How a controller words the Events about what it creates and deletes
/// (Kubernetes' controllers differ): each gets the owner's name, the
/// child's name and, for failures, the API's message.
pub struct Words {
    pub created: fn(&str, &str) -> String,
    pub create_failed: fn(&str, &str, &str) -> String,
    pub deleted: fn(&str, &str) -> String,
    pub delete_failed: fn(&str, &str, &str) -> String,
}

/// The ReplicaSet, Job and DaemonSet controllers' words about pods.
pub const POD_WORDS: Words = Words {
    created: |_, pod| format!("Created pod: {pod}"),
    create_failed: |_, _, why| format!("Error creating: {why}"),
    deleted: |_, pod| format!("Deleted pod: {pod}"),
    delete_failed: |_, _, why| format!("Error deleting: {why}"),
};

/// Create `object` for `owner` and record it on the owner, as
/// `SuccessfulCreate` or `FailedCreate` (then the error is returned too).
/// Nothing is recorded when `exists_ok` and it already existed.
pub async fn create_recorded<O, K>(
    client: &kube::Client,
    component: &str,
    owner: &O,
    object: &K,
    exists_ok: bool,
    words: &Words,
) -> Result<bool, Error>
where
    O: Resource<DynamicType = ()>,
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let owner_name = owner.name_any();
    let name = object.name_any();
    match create(client, object, exists_ok).await {
        Ok(created) => {
            if created {
                let message = (words.created)(&owner_name, &name);
                crate::events::normal(client, component, owner, "SuccessfulCreate", &message).await;
            }
            Ok(created)
        }
        Err(error) => {
            let why = crate::events::failure_text(&error);
            let message = (words.create_failed)(&owner_name, &name, &why);
            crate::events::warning(client, component, owner, "FailedCreate", &message).await;
            Err(error)
        }
    }
}

/// Delete `name` for `owner` and record it on the owner, as
/// `SuccessfulDelete` or `FailedDelete` (then the error is returned too).
/// Nothing is recorded when it was gone already.
pub async fn delete_recorded<O, K>(
    client: &kube::Client,
    component: &str,
    owner: &O,
    name: &str,
    words: &Words,
) -> Result<bool, Error>
where
    O: Resource<DynamicType = ()>,
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let owner_name = owner.name_any();
    let namespace = owner.meta().namespace.clone().unwrap_or_default();
    match delete::<K>(client, &namespace, name).await {
        Ok(deleted) => {
            if deleted {
                let message = (words.deleted)(&owner_name, name);
                crate::events::normal(client, component, owner, "SuccessfulDelete", &message).await;
            }
            Ok(deleted)
        }
        Err(error) => {
            let why = crate::events::failure_text(&error);
            let message = (words.delete_failed)(&owner_name, name, &why);
            crate::events::warning(client, component, owner, "FailedDelete", &message).await;
            Err(error)
        }
    }
}
