//! The generic REST storage: create, read, update, patch and delete of any
//! registered resource on top of `skiff-store`, with Kubernetes' metadata
//! rules (uid, timestamps, resourceVersion = the store's mod revision,
//! generation, graceful deletion and finalizers).

use serde_json::{Value, json};
use skiff_store::{Compare, CompareTarget, KeyValue, Op, ReadConsistency, Revision, Store, Txn};

use crate::decode::{Decoded, FieldValidation};
use crate::error::{ApiError, ApiResult, Cause};
use crate::meta;
use crate::resources::Resource;
use crate::selectors::Selectors;

/// Options every write takes from its query string.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub validation: FieldValidation,
    /// The `fieldManager` the write is attributed to in `managedFields`;
    /// None for the server's own writes, which are not recorded.
    pub manager: Option<String>,
    /// The subresource written (`status`, `scale`), recorded with the manager.
    pub subresource: Option<&'static str>,
}

/// How a write's `managedFields` are worked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// Attribute the changed fields to the request's manager.
    Update,
    /// The object already carries its new `managedFields` (server-side apply).
    Keep,
}

/// The part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
}

/// A written object and the warnings the request earned.
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
}

/// `DeleteOptions` fields the server honours.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub propagation: Propagation,
    pub dry_run: bool,
}

/// `propagationPolicy`: what happens to an object's dependents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    /// Delete the owner now; the garbage collector deletes dependents after.
    #[default]
    Background,
    /// The owner waits (finalizer `foregroundDeletion`) until dependents that
    /// block owner deletion are gone.
    Foreground,
    /// Dependents are kept and lose their owner reference (finalizer `orphan`).
    Orphan,
}

/// Kinds the garbage collector processes; only these get the propagation
/// finalizers, so nothing waits on a collector that never comes.
const COLLECTED_KINDS: [&str; 3] = ["Deployment", "ReplicaSet", "Pod"];

impl Propagation {
    fn finalizer(self) -> Option<&'static str> {
        match self {
            Propagation::Background => None,
            Propagation::Foreground => Some("foregroundDeletion"),
            Propagation::Orphan => Some("orphan"),
        }
    }
}

/// Whether every conflicting field holds the value client-side apply last
/// set (its `last-applied-configuration` annotation).
fn client_side_applied(live: &Value, conflicts: &[skiff_patch::managed::Conflict]) -> bool {
    let Some(last) =
        live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
    else {
        return false;
    };
    !conflicts.is_empty()
        && conflicts.iter().all(|c| {
            let before = skiff_patch::managed::value_at(&last, &c.path);
            before.is_some() && before == skiff_patch::managed::value_at(live, &c.path)
        })
}

/// Whether `managedFields` sent by a client can be taken as they are: a
/// list of entries each naming a manager, an operation and `FieldsV1` sets.
fn valid_managed_fields(entries: &Value) -> bool {
    entries.as_array().is_some_and(|entries| {
        entries.iter().all(|e| {
            e["manager"].as_str().is_some_and(|m| !m.is_empty())
                && matches!(e["operation"].as_str(), Some("Apply" | "Update"))
                && e["fieldsType"] == "FieldsV1"
                && e["fieldsV1"].is_object()
                && e["apiVersion"].is_string()
        })
    })
}

/// Which state a list reads: Kubernetes' `resourceVersion` with
/// `resourceVersionMatch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListAt {
    /// The latest state, read linearizably (`resourceVersion` unset or empty).
    Latest,
    /// This member's applied state as it is, without a round trip to the leader
    /// (`resourceVersion=0`): possibly stale, as a Kubernetes watch cache is.
    Any,
    /// Exactly this revision (`resourceVersionMatch=Exact`, and every page after
    /// the first): 410 Gone once compacted.
    Exact(Revision),
    /// The latest state, at least this revision (`NotOlderThan`, or a revision
    /// without a match): this member's state when it has got that far, else a
    /// linearizable read; 504 if the group has not reached the revision.
    NotOlderThan(Revision),
}

/// Decode a stored value, stamping its resourceVersion from the revision.
/// See [`Objects::list_page`].
pub struct ListPage {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub next: Option<String>,
}

pub fn from_kv(kv: &KeyValue) -> ApiResult<Value> {
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
    stamp(&mut object, kv.mod_revision);
    Ok(object)
}

fn to_bytes(object: &Value) -> Vec<u8> {
    let mut stored = object.clone();
    meta::remove(&mut stored, "resourceVersion");
    serde_json::to_vec(&stored).expect("JSON values always serialize")
}

/// Run `op` on `key` only if the key is still at `revision` (0: absent);
/// the new store revision, or None when someone else wrote first.
async fn write_at(
    store: &Store,
    key: &str,
    revision: Revision,
    op: Op,
) -> ApiResult<Option<Revision>> {
    let response = store
        .txn(Txn {
            compare: vec![Compare {
                key: key.to_string(),
                target: CompareTarget::ModRevision(revision),
            }],
            success: vec![op],
            failure: vec![],
        })
        .await?;
    Ok(response.succeeded.then_some(response.revision))
}

fn stamp(object: &mut Value, revision: Revision) {
    meta::set(object, "resourceVersion", json!(revision.to_string()));
}

/// How often a delete without preconditions reads again after losing a race.
const DELETE_ATTEMPTS: u32 = 16;

/// How often a patch or apply that names no resourceVersion is applied again
/// to the newer object after a concurrent write wins. Each lost round means
/// another write landed, so the writers as a whole progress; Kubernetes' store
/// retries such writes without a bound, this one gives up with 409 after these.
pub(crate) const CONTENTION_ATTEMPTS: usize = 64;

/// Storage of one resource.
pub struct Objects<'a> {
    pub store: &'a Store,
    pub resource: &'a Resource,
}

impl<'a> Objects<'a> {
    pub fn new(store: &'a Store, resource: &'a Resource) -> Objects<'a> {
        Objects { store, resource }
    }

    /// A stored object as this resource shows it (autoscaling/v1
    /// HorizontalPodAutoscalers are stored as v2).
    fn load(&self, kv: &KeyValue) -> ApiResult<Value> {
        Ok(self.present(from_kv(kv)?))
    }

    pub(crate) fn present(&self, object: Value) -> Value {
        if crate::kinds::hpa_v1::is_v1(self.resource) {
            crate::kinds::hpa_v1::to_v1(&object)
        } else {
            object
        }
    }

    /// The stored bytes of an object written through this resource.
    fn encode(&self, object: &Value) -> Vec<u8> {
        if crate::kinds::hpa_v1::is_v1(self.resource) {
            to_bytes(&crate::kinds::hpa_v1::to_v2(object))
        } else {
            to_bytes(object)
        }
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::NotFound {
            resource: self.resource.plural.into(),
            name: name.into(),
        }
    }

    fn conflict(&self, name: &str) -> ApiError {
        ApiError::Conflict {
            resource: self.resource.plural.into(),
            name: name.into(),
            message: "the object has been modified; please apply your changes to the latest version and try again".into(),
        }
    }

    pub async fn get(&self, namespace: Option<&str>, name: &str) -> ApiResult<(Value, KeyValue)> {
        self.get_with(namespace, name, ReadConsistency::Linearizable)
            .await
    }

    /// The object to base a read-modify-write on: the first attempt reads
    /// this member's applied state (no Raft round trip), later attempts read
    /// linearizably. Safe because the write compares the revision read: a
    /// stale read only costs a retry, as Kubernetes' `GuaranteedUpdate`
    /// starts from its watch cache and retries on conflict.
    pub(crate) async fn get_for_update(
        &self,
        namespace: Option<&str>,
        name: &str,
        attempt: usize,
    ) -> ApiResult<(Value, KeyValue)> {
        let consistency = if attempt == 0 {
            ReadConsistency::Serializable
        } else {
            ReadConsistency::Linearizable
        };
        self.get_with(namespace, name, consistency).await
    }

    async fn get_with(
        &self,
        namespace: Option<&str>,
        name: &str,
        consistency: ReadConsistency,
    ) -> ApiResult<(Value, KeyValue)> {
        let kv = self
            .store
            .get_with(&self.resource.key(namespace, name), consistency)
            .await?
            .ok_or_else(|| self.not_found(name))?;
        Ok((self.load(&kv)?, kv))
    }

    pub async fn list(
        &self,
        namespace: Option<&str>,
        selectors: &Selectors,
    ) -> ApiResult<(Vec<Value>, Revision)> {
        let range = self.store.range(&self.resource.prefix(namespace)).await?;
        let mut items = Vec::with_capacity(range.kvs.len());
        for kv in &range.kvs {
            let object = self.load(kv)?;
            if selectors.matches(&object) {
                items.push(object);
            }
        }
        Ok((items, range.revision))
    }

    /// One page of a list, consistent at one revision: the objects matching
    /// `selectors` as of `at`, from store key `start` on, at most `limit` of them.
    /// `next` is the store key of the last object returned when more keys follow: the
    /// next page starts after it, at the same revision (Kubernetes' `continue`). A
    /// compacted revision is 410 Gone; a revision the group has not reached is 504.
    pub async fn list_page(
        &self,
        namespace: Option<&str>,
        selectors: &Selectors,
        at: ListAt,
        start: Option<String>,
        limit: Option<usize>,
    ) -> ApiResult<ListPage> {
        let prefix = self.resource.prefix(namespace);
        if start
            .as_ref()
            .is_some_and(|start| !start.starts_with(&prefix))
        {
            return Err(ApiError::BadRequest(
                "invalid continue token: it belongs to another list".into(),
            ));
        }
        use skiff_store::ReadConsistency::{Linearizable, Serializable};
        let (revision, consistency) = match at {
            ListAt::Latest => (None, Linearizable),
            ListAt::Any => (None, Serializable),
            // The read barrier first: on a member behind the group, the revision may
            // be committed but not applied here yet.
            ListAt::Exact(revision) => (Some(revision), Linearizable),
            // This member's state if it is new enough, else the group's latest.
            ListAt::NotOlderThan(revision) if self.store.revision() >= revision => {
                (None, Serializable)
            }
            ListAt::NotOlderThan(_) => (None, Linearizable),
        };
        let options = skiff_store::RangeOptions {
            revision,
            start,
            consistency,
            // One more than asked tells whether another page follows. With selectors
            // the store cannot count matches, so it reads the rest of the range.
            limit: limit
                .filter(|_| selectors.is_empty())
                .map(|limit| limit + 1),
        };
        let range = self.store.range_page(&prefix, &options).await?;
        if let ListAt::NotOlderThan(revision) = at
            && range.revision < revision
        {
            return Err(skiff_store::StoreError::FutureRevision {
                requested: revision,
                current: range.revision,
            }
            .into());
        }
        let mut items = Vec::new();
        let mut next = None;
        for kv in &range.kvs {
            let object = from_kv(kv)?;
            if !selectors.matches(&object) {
                continue;
            }
            if limit.is_some_and(|limit| items.len() == limit) {
                next = items.last().map(|(key, _): &(String, Value)| key.clone());
                break;
            }
            items.push((kv.key.clone(), object));
        }
        Ok(ListPage {
            revision: range.revision,
            next,
            items: items.into_iter().map(|(_, object)| object).collect(),
        })
    }

    /// Namespaced writes need a live namespace, as Kubernetes' lifecycle admission does.
    async fn admit_namespace(&self, namespace: Option<&str>) -> ApiResult<()> {
        let (Some(ns), true) = (namespace, self.resource.namespaced) else {
            return Ok(());
        };
        let namespaces = crate::kinds::namespace::resource();
        let Some(kv) = self.store.get(&namespaces.key(None, ns)).await? else {
            return Err(ApiError::NotFound {
                resource: "namespaces".into(),
                name: ns.into(),
            });
        };
        let object = from_kv(&kv)?;
        if !object["metadata"]["deletionTimestamp"].is_null() {
            return Err(ApiError::Forbidden(format!(
                "{} {:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                self.resource.plural,
                meta::name(&object)
            )));
        }
        Ok(())
    }

    fn decode(&self, body: &Value, options: &WriteOptions) -> ApiResult<Decoded> {
        if let Some(kind) = body["kind"].as_str()
            && kind != self.resource.kind
        {
            return Err(ApiError::BadRequest(format!(
                "the body of the request was of kind {kind:?}, but the URL expects {:?}",
                self.resource.kind
            )));
        }
        match &self.resource.custom {
            Some(custom) => custom.decode(self.resource, body, options.validation),
            None => (self.resource.decode)(body, options.validation),
        }
    }

    fn check(&self, object: &Value, old: Option<&Value>) -> ApiResult<()> {
        let causes = (self.resource.validate)(object, old);
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid {
                kind: self.resource.kind.into(),
                name: meta::name(object).into(),
                causes,
            })
        }
    }

    fn place_namespace(&self, object: &mut Value, namespace: Option<&str>) -> ApiResult<()> {
        if !self.resource.namespaced {
            meta::remove(object, "namespace");
            return Ok(());
        }
        let ns = namespace.unwrap_or("default");
        match object["metadata"]["namespace"].as_str() {
            Some(given) if !given.is_empty() && given != ns => Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            )),
            _ => {
                meta::set(object, "namespace", json!(ns));
                Ok(())
            }
        }
    }

    pub async fn create(
        &self,
        namespace: Option<&str>,
        body: &Value,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        let decoded = self.decode(body, options)?;
        self.insert(namespace, decoded, options, Ownership::Update)
            .await
    }

    /// Store a new decoded object: the create half shared by POST and by a
    /// server-side apply of an object that does not exist yet.
    async fn insert(
        &self,
        namespace: Option<&str>,
        decoded: Decoded,
        options: &WriteOptions,
        ownership: Ownership,
    ) -> ApiResult<Written> {
        let Decoded {
            mut object,
            warnings,
        } = decoded;
        self.place_namespace(&mut object, namespace)?;
        let namespace = object["metadata"]["namespace"].as_str().map(String::from);
        if meta::name(&object).is_empty()
            && let Some(prefix) = object["metadata"]["generateName"].as_str()
        {
            let name = meta::generate_name(prefix);
            meta::set(&mut object, "name", json!(name));
        }
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta::remove(&mut object, field);
        }
        meta::set(&mut object, "uid", json!(uuid::Uuid::new_v4().to_string()));
        meta::set(&mut object, "creationTimestamp", json!(meta::now()));
        if self.resource.tracks_generation {
            meta::set(&mut object, "generation", json!(1));
        } else {
            meta::remove(&mut object, "generation");
        }
        (self.resource.defaults)(&mut object);
        meta::drop_empty_lists(&mut object);
        if ownership == Ownership::Update {
            meta::remove(&mut object, "managedFields");
            self.record_update(None, &mut object, Part::Main, options);
        }
        self.check(&object, None)?;
        self.admit_namespace(namespace.as_deref()).await?;
        if self.resource.kind == "Pod" && self.resource.group.is_empty() {
            crate::kinds::admission::pod(self.store, &mut object).await?;
        }
        let _reservation =
            crate::kinds::allocate::allocate(self.store, self.resource, &mut object, None).await?;

        let name = meta::name(&object).to_string();
        let key = self.resource.key(namespace.as_deref(), &name);
        if options.dry_run {
            if self.store.get(&key).await?.is_some() {
                return Err(self.already_exists(&name));
            }
            return Ok(Written { object, warnings });
        }
        let put = Op::Put {
            key: key.clone(),
            value: self.encode(&object),
        };
        let revision = write_at(self.store, &key, 0, put)
            .await?
            .ok_or_else(|| self.already_exists(&name))?;
        stamp(&mut object, revision);
        Ok(Written { object, warnings })
    }

    fn writer<'w>(
        &self,
        options: &'w WriteOptions,
        part: Part,
        api_version: &'w str,
        now: &'w str,
    ) -> Option<skiff_patch::managed::Writer<'w>> {
        let manager = options.manager.as_deref()?;
        let subresource = options.subresource.unwrap_or(match part {
            Part::Main => "",
            Part::Status => "status",
        });
        Some(skiff_patch::managed::Writer {
            manager,
            subresource,
            api_version,
            now,
            scope: match part {
                Part::Main => skiff_patch::managed::Scope::Main,
                Part::Status => skiff_patch::managed::Scope::Status,
            },
        })
    }

    /// Attribute the fields a create/update/patch changed to its manager
    /// (`managedFields`, operation `Update`), starting from `old`'s entries.
    fn record_update(
        &self,
        old: Option<&Value>,
        next: &mut Value,
        part: Part,
        options: &WriteOptions,
    ) {
        // As Kubernetes: a write that sets valid `managedFields` other than
        // the stored ones replaces them (how kubectl moves fields from
        // client-side to server-side apply, or a user resets them with
        // `[]`); otherwise the stored entries carry on.
        let sent = next["metadata"].get("managedFields").cloned();
        let replaced = old.zip(sent).filter(|(old, sent)| {
            Some(sent) != old["metadata"].get("managedFields") && valid_managed_fields(sent)
        });
        let based;
        let old = match (old, replaced) {
            (Some(_), Some((old, sent))) => {
                let mut with_sent = old.clone();
                meta::set(&mut with_sent, "managedFields", sent);
                based = with_sent;
                Some(&based)
            }
            (Some(old), None) => {
                match old["metadata"].get("managedFields") {
                    Some(entries) => meta::set(next, "managedFields", entries.clone()),
                    None => meta::remove(next, "managedFields"),
                }
                Some(old)
            }
            (None, _) => None,
        };
        let (api_version, now) = (self.resource.api_version(), meta::now());
        let Some(writer) = self.writer(options, part, &api_version, &now) else {
            return;
        };
        let schema = skiff_patch::Schema::for_kind(self.resource.kind);
        let entries = skiff_patch::managed::record_update(&schema, old, next, &writer);
        skiff_patch::managed::write_entries(next, &entries);
    }

    /// Server-side apply (`application/apply-patch+yaml`): merge the applied
    /// configuration into the object, creating it if missing. The bool says
    /// whether it was created.
    pub async fn apply(
        &self,
        namespace: Option<&str>,
        name: &str,
        body: &[u8],
        part: Part,
        options: &WriteOptions,
        force: bool,
    ) -> ApiResult<(Written, bool)> {
        let Some(manager) = options.manager.as_deref() else {
            return Err(ApiError::BadRequest(
                "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests"
                    .into(),
            ));
        };
        let config: Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
        if !config.is_object() {
            return Err(ApiError::BadRequest(
                "the applied configuration must be an object".into(),
            ));
        }
        for field in ["apiVersion", "kind"] {
            if config[field].as_str().is_none_or(str::is_empty) {
                return Err(ApiError::BadRequest(format!(
                    "invalid object: {field} must be set in an applied configuration"
                )));
            }
        }
        if config["apiVersion"].as_str() != Some(&self.resource.api_version()) {
            return Err(ApiError::BadRequest(format!(
                "the apiVersion of the applied configuration ({}) does not match the URL ({})",
                config["apiVersion"].as_str().unwrap_or_default(),
                self.resource.api_version()
            )));
        }
        if meta::name(&config) != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta::name(&config)
            )));
        }
        // Type errors and unknown fields are reported as for any write; the
        // configuration itself is merged as the user wrote it.
        let Decoded { warnings, .. } = self.decode(&config, options)?;
        let mut config = config;
        meta::remove(&mut config, "managedFields");
        let (api_version, now) = (self.resource.api_version(), meta::now());
        let writer = self
            .writer(options, part, &api_version, &now)
            .expect("the manager is set");
        let schema = skiff_patch::Schema::for_kind(self.resource.kind);
        for _ in 0..CONTENTION_ATTEMPTS {
            let live = match self.get(namespace, name).await {
                Ok(found) => Some(found),
                Err(ApiError::NotFound { .. }) if part == Part::Main => None,
                Err(err) => return Err(err),
            };
            let live_object = live.as_ref().map(|(object, _)| object);
            let merged =
                match skiff_patch::managed::apply(&schema, live_object, &config, &writer, force) {
                    Ok(merged) => merged,
                    // As Kubernetes: conflicts only on fields that still
                    // hold what client-side `kubectl apply` last set are
                    // taken over, so moving to server-side apply needs no force.
                    Err(conflicts)
                        if live_object.is_some_and(|l| client_side_applied(l, &conflicts)) =>
                    {
                        skiff_patch::managed::apply(&schema, live_object, &config, &writer, true)
                            .map_err(|conflicts| self.apply_conflict(name, manager, conflicts))?
                    }
                    Err(conflicts) => return Err(self.apply_conflict(name, manager, conflicts)),
                };
            let Some((current, kv)) = live else {
                let decoded = self.decode(&merged, options)?;
                match self
                    .insert(namespace, decoded, options, Ownership::Keep)
                    .await
                {
                    Err(ApiError::AlreadyExists { .. }) => continue,
                    Err(err) => return Err(err),
                    Ok(written) => {
                        return Ok((
                            Written {
                                warnings,
                                ..written
                            },
                            true,
                        ));
                    }
                }
            };
            if let Some(rv) = meta::resource_version(&config)
                && rv != kv.mod_revision.to_string()
            {
                return Err(self.conflict(name));
            }
            let Decoded { object, .. } = self.decode(&merged, options)?;
            match self
                .replace(&current, &kv, object, part, options, Ownership::Keep)
                .await
            {
                Err(ApiError::Conflict { .. }) => continue,
                Err(err) => return Err(err),
                Ok(written) => {
                    return Ok((
                        Written {
                            warnings,
                            ..written
                        },
                        false,
                    ));
                }
            }
        }
        Err(self.conflict(name))
    }

    fn apply_conflict(
        &self,
        name: &str,
        _manager: &str,
        conflicts: Vec<skiff_patch::managed::Conflict>,
    ) -> ApiError {
        let causes: Vec<Cause> = conflicts
            .iter()
            .map(|c| Cause {
                reason: "FieldManagerConflict",
                field: c.field.clone(),
                message: format!("conflict with {:?} using {}", c.manager, c.api_version),
            })
            .collect();
        let count = causes.len();
        let listed: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.message, c.field))
            .collect();
        ApiError::FieldConflicts {
            resource: self.resource.plural.into(),
            name: name.into(),
            message: format!(
                "Apply failed with {count} conflict{}: {}",
                if count == 1 { "" } else { "s" },
                listed.join(", ")
            ),
            causes,
        }
    }

    fn already_exists(&self, name: &str) -> ApiError {
        ApiError::AlreadyExists {
            resource: self.resource.plural.into(),
            name: name.into(),
        }
    }

    /// PUT: replace `part` of the object. A resourceVersion in the body must
    /// match the stored one (optimistic concurrency); without one the update
    /// is unconditional.
    pub async fn update(
        &self,
        namespace: Option<&str>,
        name: &str,
        body: &Value,
        part: Part,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        let Decoded { object, warnings } = self.decode(body, options)?;
        let (current, kv) = self.get(namespace, name).await?;
        if meta::name(&object) != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta::name(&object)
            )));
        }
        if let Some(rv) = meta::resource_version(&object)
            && rv != kv.mod_revision.to_string()
        {
            return Err(self.conflict(name));
        }
        let mut object = object;
        self.place_namespace(&mut object, namespace)?;
        let written = self
            .replace(&current, &kv, object, part, options, Ownership::Update)
            .await?;
        Ok(Written {
            warnings,
            ..written
        })
    }

    /// PATCH: apply the patch to the stored object and write the result,
    /// retrying on a concurrent write unless the patch itself pinned a
    /// resourceVersion.
    pub async fn patch(
        &self,
        namespace: Option<&str>,
        name: &str,
        patch_type: skiff_patch::PatchType,
        body: &[u8],
        part: Part,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        if self.resource.custom.is_some() && patch_type == skiff_patch::PatchType::StrategicMerge {
            // As Kubernetes: custom resources have no merge keys to go by.
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml \
                 (strategic merge patch is not supported for custom resources such as {})",
                self.resource.kind
            )));
        }
        for attempt in 0..CONTENTION_ATTEMPTS {
            let (current, kv) = match self.get_for_update(namespace, name, attempt).await {
                // A local read may not have seen a create yet.
                Err(ApiError::NotFound { .. }) if attempt == 0 => continue,
                other => other?,
            };
            let patched = skiff_patch::apply_patch(self.resource.kind, &current, patch_type, body)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let pinned = meta::resource_version(&patched)
                .filter(|rv| *rv != kv.mod_revision.to_string())
                .is_some();
            if pinned && attempt == 0 {
                // Perhaps only the local read was behind: read again.
                continue;
            }
            if pinned {
                return Err(self.conflict(name));
            }
            if meta::name(&patched) != name {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta::name(&patched)
                )));
            }
            let Decoded { object, warnings } = self.decode(&patched, options)?;
            match self
                .replace(&current, &kv, object, part, options, Ownership::Update)
                .await
            {
                Err(ApiError::Conflict { .. }) => continue,
                Err(other) => return Err(other),
                Ok(written) => {
                    return Ok(Written {
                        warnings,
                        ..written
                    });
                }
            }
        }
        Err(self.conflict(name))
    }

    /// Carry the system-owned fields over from `current`, validate and write
    /// `next` if it differs, comparing against `kv`'s revision.
    async fn replace(
        &self,
        current: &Value,
        kv: &KeyValue,
        mut next: Value,
        part: Part,
        options: &WriteOptions,
        ownership: Ownership,
    ) -> ApiResult<Written> {
        if self.resource.has_status {
            next = match part {
                Part::Main => {
                    let mut merged = next;
                    merged["status"] = current["status"].clone();
                    if merged["status"].is_null()
                        && let Some(map) = merged.as_object_mut()
                    {
                        map.remove("status");
                    }
                    merged
                }
                Part::Status => {
                    let mut merged = current.clone();
                    merged["status"] = next["status"].take();
                    merged
                }
            };
        }
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
        ] {
            match current["metadata"].get(field) {
                Some(value) => meta::set(&mut next, field, value.clone()),
                None => meta::remove(&mut next, field),
            }
        }
        // Compared once defaulted: a write that leaves out what defaults
        // fill in does not change the spec.
        (self.resource.defaults)(&mut next);
        meta::drop_empty_lists(&mut next);
        if self.resource.tracks_generation && current["spec"] != next["spec"] {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            meta::set(&mut next, "generation", json!(generation));
        }
        if ownership == Ownership::Update {
            self.record_update(Some(current), &mut next, part, options);
        }
        stamp(&mut next, kv.mod_revision);
        self.check(&next, Some(current))?;
        let _reservation =
            crate::kinds::allocate::allocate(self.store, self.resource, &mut next, Some(current))
                .await?;
        if next == *current {
            return Ok(Written {
                object: next,
                warnings: vec![],
            });
        }
        // The last finalizer removed from an object being deleted completes
        // the deletion.
        // A pod finishes only once its node let go of it (grace period 0).
        let finish = !next["metadata"]["deletionTimestamp"].is_null()
            && meta::finalizers(&next) == 0
            && (self.resource.kind != "Pod"
                || next["metadata"]["deletionGracePeriodSeconds"].as_i64() == Some(0));
        if options.dry_run {
            return Ok(Written {
                object: next,
                warnings: vec![],
            });
        }
        let op = if finish {
            Op::Delete {
                key: kv.key.clone(),
            }
        } else {
            Op::Put {
                key: kv.key.clone(),
                value: self.encode(&next),
            }
        };
        let revision = write_at(self.store, &kv.key, kv.mod_revision, op)
            .await?
            .ok_or_else(|| self.conflict(meta::name(&next)))?;
        stamp(&mut next, revision);
        Ok(Written {
            object: next,
            warnings: vec![],
        })
    }

    /// DELETE. Pods on a node and objects with finalizers are only marked
    /// (deletionTimestamp); the node or the finalizer's owner completes it.
    pub async fn delete(
        &self,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<Value> {
        // A delete without preconditions does not care which version it
        // deletes: a write racing it (a node's status update, a controller)
        // makes it read again, as Kubernetes' GuaranteedUpdate does, instead
        // of answering 409 to a client that named no version.
        let preconditions =
            options.precondition_uid.is_some() || options.precondition_resource_version.is_some();
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.delete_once(namespace, name, options).await {
                Err(ApiError::Conflict { .. }) if !preconditions && attempts < DELETE_ATTEMPTS => {
                    continue;
                }
                result => return result,
            }
        }
    }

    async fn delete_once(
        &self,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<Value> {
        let (current, kv) = self.get(namespace, name).await?;
        if let Some(uid) = &options.precondition_uid
            && current["metadata"]["uid"].as_str() != Some(uid)
        {
            return Err(ApiError::Conflict {
                resource: self.resource.plural.into(),
                name: name.into(),
                message: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    current["metadata"]["uid"].as_str().unwrap_or_default()
                ),
            });
        }
        if let Some(rv) = &options.precondition_resource_version
            && *rv != kv.mod_revision.to_string()
        {
            return Err(self.conflict(name));
        }
        let grace = self.grace_period(&current, options);
        let cascade = options
            .propagation
            .finalizer()
            .filter(|_| COLLECTED_KINDS.contains(&self.resource.kind));
        // Something must still happen before the object may go: a node
        // stopping a pod, a namespace emptying, or a finalizer.
        let waits = grace.is_some_and(|g| g > 0) || self.resource.kind == "Namespace";
        if waits || cascade.is_some() || meta::finalizers(&current) > 0 {
            let mut next = current.clone();
            if let Some(finalizer) = cascade {
                let mut finalizers: Vec<Value> = next["metadata"]["finalizers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if !finalizers.iter().any(|f| f == finalizer) {
                    finalizers.push(json!(finalizer));
                }
                meta::set(&mut next, "finalizers", json!(finalizers));
            }
            // A deletion can only be brought forward: a shorter grace period
            // (down to 0, how a node says it is done) replaces a longer one.
            let grace = grace.unwrap_or(0);
            let marked = !current["metadata"]["deletionTimestamp"].is_null();
            let existing = current["metadata"]["deletionGracePeriodSeconds"].as_i64();
            if !marked || existing.is_none_or(|e| grace < e) {
                meta::set(
                    &mut next,
                    "deletionTimestamp",
                    json!(meta::timestamp_after(grace)),
                );
                meta::set(&mut next, "deletionGracePeriodSeconds", json!(grace));
            }
            if self.resource.kind == "Namespace" {
                next["status"]["phase"] = json!("Terminating");
            }
            if next == current || options.dry_run {
                return Ok(next);
            }
            return self.put_if_unchanged(&kv, next).await;
        }
        if !options.dry_run {
            let delete = Op::Delete {
                key: kv.key.clone(),
            };
            if write_at(self.store, &kv.key, kv.mod_revision, delete)
                .await?
                .is_none()
            {
                return Err(self.conflict(name));
            }
        }
        Ok(current)
    }

    /// Write `next` if the object is still at `kv`'s revision (Conflict otherwise).
    pub(crate) async fn put_if_unchanged(
        &self,
        kv: &KeyValue,
        mut next: Value,
    ) -> ApiResult<Value> {
        let put = Op::Put {
            key: kv.key.clone(),
            value: self.encode(&next),
        };
        let revision = write_at(self.store, &kv.key, kv.mod_revision, put)
            .await?
            .ok_or_else(|| self.conflict(meta::name(&next)))?;
        stamp(&mut next, revision);
        Ok(next)
    }

    /// The grace period of a graceful deletion, or None for kinds without
    /// one. Only pods have it: a pod bound to a node waits for the node to
    /// stop its containers (and say so with a grace period of 0).
    fn grace_period(&self, current: &Value, options: &DeleteOptions) -> Option<i64> {
        match self.resource.kind {
            "Pod" => {
                let bound = current["spec"]["nodeName"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty());
                if !bound {
                    return Some(0);
                }
                Some(
                    options
                        .grace_period_seconds
                        .unwrap_or_else(|| {
                            current["spec"]["terminationGracePeriodSeconds"]
                                .as_i64()
                                .unwrap_or(30)
                        })
                        .max(0),
                )
            }
            _ => None,
        }
    }
}
