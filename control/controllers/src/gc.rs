//! The garbage collector: dependents follow their owners (ownerReferences).
//!
//! - Background (default): the owner goes at once; when every owner of an
//!   object is gone the collector deletes it.
//! - Foreground: the owner carries the `foregroundDeletion` finalizer; the
//!   collector deletes its dependents and removes the finalizer once none
//!   with `blockOwnerDeletion` is left, which completes the owner's deletion.
//! - Orphan: the owner carries the `orphan` finalizer; the collector drops
//!   the owner's reference from every dependent, then the finalizer.
//!
//! It keeps a watch-fed cache of each kind it knows, re-examines an object
//! when it, one of its owners or one of its dependents changes, and checks
//! with the API server before believing an owner is gone (the cache may
//! simply not have seen a new owner yet).

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{FutureExt, StreamExt, stream};
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Error;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";
/// A full pass over every cached object, to retry what failed.
const SWEEP: Duration = Duration::from_secs(30);

/// The kinds whose objects the collector follows, as owners and dependents.
fn kinds() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<ReplicaSet>(&()),
        ApiResource::erase::<Pod>(&()),
        ApiResource::erase::<CronJob>(&()),
        ApiResource::erase::<Job>(&()),
        ApiResource::erase::<DaemonSet>(&()),
        ApiResource::erase::<StatefulSet>(&()),
        ApiResource::erase::<ControllerRevision>(&()),
    ]
}

/// An object to examine: index into the kinds, namespace, name.
type Key = (usize, String, String);

struct Collector {
    client: kube::Client,
    kinds: Vec<ApiResource>,
    stores: Vec<Store<DynamicObject>>,
}

/// Run the garbage collector until `cancel` fires.
pub async fn run(client: kube::Client, cancel: CancellationToken) {
    let kinds = kinds();
    let mut stores = Vec::new();
    let mut streams = Vec::new();
    for (index, kind) in kinds.iter().enumerate() {
        let writer = reflector::store::Writer::new(kind.clone());
        let store = writer.as_reader();
        let api: Api<DynamicObject> = Api::all_with(client.clone(), kind);
        let events = reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        )
        .touched_objects()
        .map(move |event| (index, event));
        stores.push(store);
        streams.push(events.boxed());
    }
    let collector = Collector {
        client,
        kinds,
        stores,
    };
    let mut events = stream::select_all(streams);
    let mut sweep = tokio::time::interval(SWEEP);
    // Objects to examine, held until every cache has its first full list
    // (an owner missing from a cache still loading is not gone).
    let mut due: BTreeSet<Key> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            event = events.next() => match event {
                Some((index, Ok(object))) => due.extend(collector.related(index, &object)),
                Some((_, Err(err))) => tracing::debug!(%err, "gc watch error"),
                None => break,
            },
            _ = sweep.tick() => due.extend(collector.everything()),
        }
        let ready = collector
            .stores
            .iter()
            .all(|store| store.wait_until_ready().now_or_never().is_some());
        if !ready {
            continue;
        }
        for key in std::mem::take(&mut due) {
            let span = tracing::info_span!(
                "gc",
                object = %format!("{}/{}", key.1, key.2),
                kind = %collector.kinds[key.0].kind
            );
            if let Err(err) = collector.examine(&key).instrument(span.clone()).await {
                let _enter = span.enter();
                tracing::warn!(error = %err, "garbage collection failed; retrying on the next sweep");
            }
        }
    }
    tracing::info!(controller = "gc", "stopped");
}

impl Collector {
    /// The object itself, its owners and its dependents.
    fn related(&self, index: usize, object: &DynamicObject) -> Vec<Key> {
        let namespace = object.namespace().unwrap_or_default();
        let mut keys = vec![(index, namespace.clone(), object.name_any())];
        for reference in object.owner_references() {
            if let Some(owner) = self.kind_of(reference) {
                keys.push((owner, namespace.clone(), reference.name.clone()));
            }
        }
        keys.extend(
            self.dependents(object)
                .into_iter()
                .map(|(i, o)| (i, namespace.clone(), o.name_any())),
        );
        keys
    }

    fn everything(&self) -> Vec<Key> {
        let mut keys = Vec::new();
        for (index, store) in self.stores.iter().enumerate() {
            keys.extend(
                store
                    .state()
                    .iter()
                    .map(|o| (index, o.namespace().unwrap_or_default(), o.name_any())),
            );
        }
        keys
    }

    fn kind_of(&self, reference: &OwnerReference) -> Option<usize> {
        self.kinds
            .iter()
            .position(|k| k.api_version == reference.api_version && k.kind == reference.kind)
    }

    /// Cached objects in `owner`'s namespace that reference it.
    fn dependents(&self, owner: &DynamicObject) -> Vec<(usize, std::sync::Arc<DynamicObject>)> {
        let uid = owner.uid().unwrap_or_default();
        let namespace = owner.namespace();
        let mut found = Vec::new();
        for (index, store) in self.stores.iter().enumerate() {
            for object in store.state() {
                if object.namespace() == namespace
                    && object.owner_references().iter().any(|r| r.uid == uid)
                {
                    found.push((index, object));
                }
            }
        }
        found
    }

    fn api(&self, index: usize, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &self.kinds[index])
    }

    async fn examine(&self, key: &Key) -> Result<(), Error> {
        let (index, namespace, name) = key;
        let reference = ObjectRef::new_with(name, self.kinds[*index].clone()).within(namespace);
        let Some(object) = self.stores[*index].get(&reference) else {
            return Ok(());
        };
        if object.meta().deletion_timestamp.is_some() {
            let finalizers = object.finalizers();
            if finalizers.iter().any(|f| f == ORPHAN) {
                return self.orphan(*index, &object).await;
            }
            if finalizers.iter().any(|f| f == FOREGROUND) {
                return self.delete_dependents(*index, &object).await;
            }
            return Ok(());
        }
        if object.owner_references().is_empty() {
            return Ok(());
        }
        // The cache may lag behind an orphaning patch: decide on the live
        // object's references, never on a stale copy.
        let live = self
            .api(*index, namespace)
            .get_opt(name)
            .await
            .map_err(|source| Error::Read {
                what: "a dependent",
                namespace: namespace.to_string(),
                source,
            })?;
        let Some(live) = live.filter(|l| l.uid() == object.uid()) else {
            return Ok(());
        };
        let references = live.owner_references().to_vec();
        if references.is_empty() {
            return Ok(());
        }
        let mut gone = Vec::new();
        let mut waiting = false;
        let mut present = 0;
        for owner in &references {
            match self.owner_state(owner, namespace).await? {
                OwnerState::Gone => gone.push(owner.uid.clone()),
                OwnerState::WaitingForDependents => waiting = true,
                OwnerState::Present => present += 1,
            }
        }
        let api = self.api(*index, namespace);
        if present == 0 {
            let params = if waiting {
                DeleteParams::foreground()
            } else {
                DeleteParams::background()
            };
            match api.delete(name, &params).await {
                Ok(_) => tracing::info!(owners_gone = gone.len(), "deleted dependent"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(Error::write("collecting", namespace, name, source)),
            }
        } else if !gone.is_empty() {
            let kept: Vec<&OwnerReference> = references
                .iter()
                .filter(|r| !gone.contains(&r.uid))
                .collect();
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"ownerReferences": kept}})),
            )
            .await
            .map_err(|source| {
                Error::write("dropping vanished owners of", namespace, name, source)
            })?;
        }
        Ok(())
    }

    /// Whether the owner still exists (asking the server when the cache says no).
    async fn owner_state(
        &self,
        owner: &OwnerReference,
        namespace: &str,
    ) -> Result<OwnerState, Error> {
        let Some(index) = self.kind_of(owner) else {
            // A kind this collector does not follow: never delete on its account.
            return Ok(OwnerState::Present);
        };
        let reference =
            ObjectRef::new_with(&owner.name, self.kinds[index].clone()).within(namespace);
        let cached = self.stores[index]
            .get(&reference)
            .filter(|o| o.uid().as_deref() == Some(owner.uid.as_str()));
        let live = match cached {
            Some(object) => Some(object.as_ref().clone()),
            None => self
                .api(index, namespace)
                .get_opt(&owner.name)
                .await
                .map_err(|source| Error::Read {
                    what: "an owner",
                    namespace: namespace.to_string(),
                    source,
                })?
                .filter(|o| o.uid().as_deref() == Some(owner.uid.as_str())),
        };
        Ok(match live {
            None => OwnerState::Gone,
            Some(o)
                if o.meta().deletion_timestamp.is_some()
                    && o.finalizers().iter().any(|f| f == FOREGROUND) =>
            {
                OwnerState::WaitingForDependents
            }
            Some(_) => OwnerState::Present,
        })
    }

    /// Orphan policy: drop our reference from each dependent, then the finalizer.
    async fn orphan(&self, index: usize, owner: &DynamicObject) -> Result<(), Error> {
        let uid = owner.uid().unwrap_or_default();
        let namespace = owner.namespace().unwrap_or_default();
        for (dep_index, dependent) in self.dependents(owner) {
            let kept: Vec<&OwnerReference> = dependent
                .owner_references()
                .iter()
                .filter(|r| r.uid != uid)
                .collect();
            self.api(dep_index, &namespace)
                .patch(
                    &dependent.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"ownerReferences": kept}})),
                )
                .await
                .map_err(|source| {
                    Error::write("orphaning", &namespace, &dependent.name_any(), source)
                })?;
            tracing::info!(dependent = %dependent.name_any(), "orphaned");
        }
        self.remove_finalizer(index, owner, ORPHAN).await
    }

    /// Foreground policy: delete dependents; finish once none blocks.
    async fn delete_dependents(&self, index: usize, owner: &DynamicObject) -> Result<(), Error> {
        let uid = owner.uid().unwrap_or_default();
        let namespace = owner.namespace().unwrap_or_default();
        let mut blocking = 0;
        for (dep_index, dependent) in self.dependents(owner) {
            let blocks = dependent
                .owner_references()
                .iter()
                .any(|r| r.uid == uid && r.block_owner_deletion == Some(true));
            blocking += usize::from(blocks);
            if dependent.meta().deletion_timestamp.is_none() {
                match self
                    .api(dep_index, &namespace)
                    .delete(&dependent.name_any(), &DeleteParams::foreground())
                    .await
                {
                    Ok(_) => {
                        tracing::info!(dependent = %dependent.name_any(), "deleted dependent (foreground)")
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(source) => {
                        return Err(Error::write(
                            "deleting dependent",
                            &namespace,
                            &dependent.name_any(),
                            source,
                        ));
                    }
                }
            }
        }
        if blocking == 0 {
            self.remove_finalizer(index, owner, FOREGROUND).await?;
        }
        Ok(())
    }

    async fn remove_finalizer(
        &self,
        index: usize,
        object: &DynamicObject,
        finalizer: &str,
    ) -> Result<(), Error> {
        let namespace = object.namespace().unwrap_or_default();
        let kept: Vec<&String> = object
            .finalizers()
            .iter()
            .filter(|f| *f != finalizer)
            .collect();
        let patch = json!({"metadata": {"finalizers": kept}});
        match self
            .api(index, &namespace)
            .patch(
                &object.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(Error::write(
                "removing a finalizer from",
                &namespace,
                &object.name_any(),
                source,
            )),
        }
    }
}

enum OwnerState {
    Present,
    Gone,
    WaitingForDependents,
}
