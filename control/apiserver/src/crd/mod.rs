//! Custom resources: what the stored CustomResourceDefinitions serve.
//!
//! Each served version of an accepted definition becomes a [`Resource`] of
//! the registry, with a [`Custom`] holding its schema, printer columns and
//! scale paths. The REST code treats it like any kind; [`Custom`] supplies
//! decoding (envelope, `metadata`, then the schema: defaults, pruning,
//! validation) and Table cells. Custom objects are stored under
//! `/registry/custom/<group>/<plural>/`, whatever version wrote them.
//!
//! The definitions controller ([`run`]) keeps the registry in step with the
//! store: it installs a new registry snapshot when a definition changes,
//! writes the definitions' status (`NamesAccepted`, `Established`,
//! `acceptedNames`, `storedVersions`), and, for a definition being deleted,
//! deletes its custom resources before releasing the definition's finalizer.
//! A CRD write through this server also refreshes at once ([`refresh`]), so a
//! custom resource can be created right after its definition.

pub mod jsonpath;
pub mod schema;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::AppState;
use crate::decode::{Decoded, FieldValidation};
use crate::error::{ApiError, ApiResult};
use crate::kinds::crd::{CLEANUP_FINALIZER, GROUP};
use crate::objects::{DeleteOptions, Objects, Part, WriteOptions};
use crate::resources::{Registry, Resource};
use crate::selectors::Selectors;
use crate::table::{self, Column, TableDef};

/// The registry a server answers from, replaced whole when definitions change.
pub struct Live(RwLock<Arc<Registry>>);

impl Default for Live {
    fn default() -> Live {
        Live(RwLock::new(Arc::new(Registry::builtin())))
    }
}

impl Live {
    pub fn get(&self) -> Arc<Registry> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, registry: Registry) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(registry);
    }
}

/// One printer column of a custom resource's Table.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub kind: String,
    pub json_path: String,
}

/// Where a custom resource keeps what its `scale` subresource shows.
#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// What a served custom resource version adds to its [`Resource`].
#[derive(Debug)]
pub struct Custom {
    /// The version's `openAPIV3Schema`.
    pub schema: Value,
    pub columns: Vec<PrinterColumn>,
    pub scale: Option<ScalePaths>,
}

impl Custom {
    /// Table cells: the name, then one per printer column (`date` columns as
    /// an age, several matches joined by commas, none as null).
    pub fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        let mut cells = vec![object["metadata"]["name"].clone()];
        for column in &self.columns {
            let found = jsonpath::select(object, &column.json_path);
            let cell = match (found.as_slice(), column.kind.as_str()) {
                ([], _) => Value::Null,
                ([one], "date") => table::since(one, now)
                    .map(|s| json!(table::human_duration(s)))
                    .unwrap_or_else(|| (*one).clone()),
                ([one], "integer" | "number" | "boolean") => (*one).clone(),
                ([one], _) => match one {
                    Value::String(_) => (*one).clone(),
                    other => json!(other.to_string()),
                },
                (many, _) => json!(
                    many.iter()
                        .map(|v| match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            };
            cells.push(cell);
        }
        cells
    }

    /// Decode a custom object written to `resource`: the envelope must name
    /// the resource, `metadata` must be an ObjectMeta, the rest must fit the
    /// schema (defaults filled in, unknown fields pruned or, with Strict,
    /// refused).
    pub fn decode(
        &self,
        resource: &Resource,
        body: &Value,
        validation: FieldValidation,
    ) -> ApiResult<Decoded> {
        let api_version = resource.api_version();
        let Some(input) = body.as_object() else {
            return Err(ApiError::BadRequest(format!(
                "{} in version {:?} cannot be handled as a {}: the body must be a JSON object",
                resource.kind, resource.version, resource.kind
            )));
        };
        match input.get("kind").and_then(Value::as_str) {
            Some(kind) if !kind.is_empty() => {}
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "Object 'Kind' is missing in the body of a {} request",
                    resource.kind
                )));
            }
        }
        match input.get("apiVersion").and_then(Value::as_str) {
            Some(given) if given == api_version => {}
            Some(given)
                if given
                    .split_once('/')
                    .is_some_and(|(group, _)| group == resource.group) => {}
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "the apiVersion of the object ({}) does not match the URL ({api_version})",
                    input
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("<missing>")
                )));
            }
        }
        let mut object = body.clone();
        object["apiVersion"] = json!(api_version);
        let meta_in = body.get("metadata").cloned().unwrap_or(json!({}));
        let meta: ObjectMeta =
            serde_path_to_error::deserialize(meta_in.clone()).map_err(|err| {
                ApiError::BadRequest(format!(
                    "{} in version {:?} cannot be handled as a {}: metadata.{}: {}",
                    resource.kind,
                    resource.version,
                    resource.kind,
                    err.path(),
                    err.inner()
                ))
            })?;
        object["metadata"] = serde_json::to_value(&meta).map_err(ApiError::internal)?;
        let outcome = schema::check_object(&self.schema, &mut object);
        if !outcome.causes.is_empty() {
            return Err(ApiError::Invalid {
                kind: resource.kind.into(),
                name: crate::meta::name(&object).into(),
                causes: outcome.causes,
            });
        }
        let unknown: Vec<String> = outcome
            .unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect();
        let warnings = match validation {
            FieldValidation::Strict if !unknown.is_empty() => {
                return Err(ApiError::BadRequest(format!(
                    "strict decoding error: {}",
                    unknown.join(", ")
                )));
            }
            FieldValidation::Warn => unknown,
            _ => Vec::new(),
        };
        Ok(Decoded { object, warnings })
    }

    /// The OpenAPI component schema of the kind: the CRD's schema with the
    /// envelope fields Kubernetes adds.
    pub fn openapi_schema(&self, resource: &Resource) -> Value {
        let mut schema = self.schema.clone();
        if !schema.is_object() {
            schema = json!({"type": "object"});
        }
        let envelope = json!({
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
        });
        if !schema["properties"].is_object() {
            schema["properties"] = json!({});
        }
        for (key, value) in envelope.as_object().into_iter().flatten() {
            schema["properties"][key] = value.clone();
        }
        if schema["description"].is_null() {
            schema["description"] =
                json!(format!("{} ({}).", resource.kind, resource.api_version()));
        }
        schema
    }
}

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_string().into_boxed_str())
}

fn leak_list(value: &Value) -> &'static [&'static str] {
    let items: Vec<&'static str> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(leak)
        .collect();
    Box::leak(items.into_boxed_slice())
}

/// Built resources by the definition text they came from, so an unchanged
/// definition reuses its (leaked, `'static`) resources across refreshes.
static BUILT: Mutex<Option<HashMap<String, &'static Resource>>> = Mutex::new(None);

fn custom_decode(_: &Value, _: FieldValidation) -> ApiResult<Decoded> {
    // Custom objects are decoded by `Custom::decode`, which knows the schema.
    Err(ApiError::internal(
        "custom resources decode through their definition",
    ))
}

fn no_cells(_: &Value, _: Timestamp) -> Vec<Value> {
    Vec::new()
}

/// The resource one served version of a definition adds.
fn build(crd: &Value, version: &Value) -> &'static Resource {
    let key = serde_json::to_string(&json!([crd["spec"], version])).unwrap_or_default();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(resource) = built.get(&key) {
        return resource;
    }
    let spec = &crd["spec"];
    let names = &spec["names"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let kind = text(&names["kind"]);
    let columns_in: Vec<Value> = version["additionalPrinterColumns"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| {
            vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})]
        });
    let mut columns = vec![table::NAME];
    let mut printer = Vec::new();
    for column in &columns_in {
        columns.push(Column {
            name: leak(&text(&column["name"])),
            kind: leak(&text(&column["type"])),
            priority: column["priority"].as_u64().unwrap_or(0).min(255) as u8,
            description: leak(&text(&column["description"])),
        });
        printer.push(PrinterColumn {
            kind: text(&column["type"]),
            json_path: text(&column["jsonPath"]),
        });
    }
    let scale = &version["subresources"]["scale"];
    let scale = scale.is_object().then(|| ScalePaths {
        spec_replicas: text(&scale["specReplicasPath"]),
        status_replicas: text(&scale["statusReplicasPath"]),
        label_selector: scale["labelSelectorPath"].as_str().map(String::from),
    });
    let singular = names["singular"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    let resource = Resource {
        group: leak(&text(&spec["group"])),
        version: leak(&text(&version["name"])),
        kind: leak(&kind),
        plural: leak(&text(&names["plural"])),
        singular: leak(&singular),
        namespaced: spec["scope"] == "Namespaced",
        short_names: leak_list(&names["shortNames"]),
        categories: leak_list(&names["categories"]),
        has_status: version["subresources"]["status"].is_object(),
        subresources: if scale.is_some() { &["scale"] } else { &[] },
        tracks_generation: true,
        field_selectors: &[],
        decode: custom_decode,
        defaults: |_| {},
        validate: crate::kinds::common::validate_name,
        table: TableDef {
            columns: Box::leak(columns.into_boxed_slice()),
            cells: no_cells,
        },
        custom: Some(Arc::new(Custom {
            schema: version["schema"]["openAPIV3Schema"].clone(),
            columns: printer,
            scale,
        })),
    };
    let resource: &'static Resource = Box::leak(Box::new(resource));
    built.insert(key, resource);
    resource
}

fn definitions_resource() -> Resource {
    crate::kinds::crd::resource()
}

/// Whether `crd`'s names are taken: by a built-in resource of its group, or
/// by an older definition of the same group with the same plural or kind.
fn names_conflict(crd: &Value, all: &[Value]) -> Option<String> {
    let spec = &crd["spec"];
    let (group, plural, kind) = (
        &spec["group"],
        &spec["names"]["plural"],
        &spec["names"]["kind"],
    );
    let builtin = Registry::builtin();
    if builtin
        .all()
        .any(|r| json!(r.group) == *group && (json!(r.plural) == *plural || json!(r.kind) == *kind))
    {
        return Some(format!("{} is already served by the built-in API", plural));
    }
    let created = |c: &Value| {
        (
            c["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            crate::meta::name(c).to_string(),
        )
    };
    all.iter()
        .filter(|other| created(other) < created(crd))
        .find(|other| {
            other["spec"]["group"] == *group
                && (other["spec"]["names"]["plural"] == *plural
                    || other["spec"]["names"]["kind"] == *kind)
        })
        .map(|other| format!("names are already in use by {}", crate::meta::name(other)))
}

fn condition(kind: &str, ok: bool, reason: &str, message: &str, now: &str, old: &Value) -> Value {
    let status = if ok { "True" } else { "False" };
    let since = old["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind && c["status"] == status)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(now)
        .to_string();
    json!({"type": kind, "status": status, "lastTransitionTime": since,
        "reason": reason, "message": message})
}

/// The status a definition should have.
fn desired_status(crd: &Value, conflict: Option<&str>) -> Value {
    let old = &crd["status"];
    let now = crate::meta::now();
    let accepted = conflict.is_none();
    let names = if accepted {
        crd["spec"]["names"].clone()
    } else {
        old["acceptedNames"].clone()
    };
    let mut stored: Vec<Value> = old["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
        if version["storage"] == true && !stored.contains(&version["name"]) {
            stored.push(version["name"].clone());
        }
    }
    let names_condition = match conflict {
        None => condition(
            "NamesAccepted",
            true,
            "NoConflicts",
            "no conflicts found",
            &now,
            old,
        ),
        Some(why) => condition("NamesAccepted", false, "NameConflict", why, &now, old),
    };
    let established = if accepted {
        condition(
            "Established",
            true,
            "InitialNamesAccepted",
            "the initial names have been accepted",
            &now,
            old,
        )
    } else {
        condition(
            "Established",
            false,
            "NotAccepted",
            "not all names are accepted",
            &now,
            old,
        )
    };
    let mut conditions = vec![names_condition, established];
    if !crd["metadata"]["deletionTimestamp"].is_null() {
        conditions.push(condition(
            "Terminating",
            true,
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
            &now,
            old,
        ));
    }
    json!({"conditions": conditions, "acceptedNames": names, "storedVersions": stored})
}

/// Bring the served registry and the definitions' status in line with the
/// store; delete the custom resources of definitions being deleted.
pub async fn refresh(state: &AppState) {
    // A definition whose deletion completes here goes from the registry in
    // the second pass, before the deleting request is answered.
    for _ in 0..2 {
        match try_refresh(state).await {
            Ok(true) => continue,
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(%err, "refreshing custom resource definitions");
                return;
            }
        }
    }
}

/// One pass; true when a definition was removed (another pass is due).
async fn try_refresh(state: &AppState) -> ApiResult<bool> {
    let definitions = definitions_resource();
    let objects = Objects::new(&state.store, &definitions);
    let (crds, _) = objects.list(None, &Selectors::default()).await?;
    let mut custom: Vec<&'static Resource> = Vec::new();
    let mut pending = Vec::new();
    for crd in &crds {
        let conflict = names_conflict(crd, &crds);
        if conflict.is_none() {
            for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
                if version["served"] != false {
                    custom.push(build(crd, version));
                }
            }
        }
        let status = desired_status(crd, conflict.as_deref());
        if crd["status"] != status {
            pending.push((crate::meta::name(crd).to_string(), status));
        }
    }
    let current = state.registry();
    let same = current.all().count() == Registry::builtin().all().count() + custom.len()
        && custom
            .iter()
            .all(|c| current.all().any(|r| std::ptr::eq(r, *c)));
    if !same {
        state.registry.set(Registry::with_custom(custom));
    }
    let manager = WriteOptions {
        manager: Some("kube-apiserver".into()),
        ..WriteOptions::default()
    };
    for (name, status) in pending {
        let Ok((mut crd, _)) = objects.get(None, &name).await else {
            continue;
        };
        crd["status"] = status;
        match objects
            .update(None, &name, &crd, Part::Status, &manager)
            .await
        {
            Ok(_) | Err(ApiError::Conflict { .. }) | Err(ApiError::NotFound { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    let mut removed = false;
    for crd in crds
        .iter()
        .filter(|c| !c["metadata"]["deletionTimestamp"].is_null())
    {
        removed |= clean_up(state, crd).await?;
    }
    Ok(removed)
}

/// Delete a deleted definition's custom resources; once none is left,
/// release its finalizer (which completes the deletion). True when the
/// definition is gone.
async fn clean_up(state: &AppState, crd: &Value) -> ApiResult<bool> {
    let mut remaining = 0;
    if let Some(version) = crd["spec"]["versions"].as_array().and_then(|v| v.first()) {
        let resource = build(crd, version);
        let objects = Objects::new(&state.store, resource);
        let (items, _) = objects.list(None, &Selectors::default()).await?;
        remaining = items.len();
        for item in items
            .iter()
            .filter(|i| i["metadata"]["deletionTimestamp"].is_null())
        {
            let namespace = item["metadata"]["namespace"].as_str();
            match objects
                .delete(
                    namespace,
                    crate::meta::name(item),
                    &DeleteOptions::default(),
                )
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) | Err(ApiError::Conflict { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        if remaining > 0 {
            let (left, _) = objects.list(None, &Selectors::default()).await?;
            remaining = left.len();
        }
    }
    if remaining > 0 {
        return Ok(false);
    }
    let definitions = definitions_resource();
    let objects = Objects::new(&state.store, &definitions);
    let name = crate::meta::name(crd);
    let Ok((mut current, _)) = objects.get(None, name).await else {
        return Ok(true);
    };
    let finalizers: Vec<Value> = current["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| *f != CLEANUP_FINALIZER)
        .cloned()
        .collect();
    if finalizers.len() == crate::meta::finalizers(&current) {
        return Ok(false);
    }
    crate::meta::set(&mut current, "finalizers", json!(finalizers));
    let options = WriteOptions {
        manager: Some("kube-apiserver".into()),
        ..WriteOptions::default()
    };
    match objects
        .update(None, name, &current, Part::Main, &options)
        .await
    {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(true),
        Err(ApiError::Conflict { .. }) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Whether a request wrote definitions (and so should refresh at once).
pub fn is_definitions(resource: &Resource) -> bool {
    resource.group == GROUP && resource.plural == "customresourcedefinitions"
}

/// The definitions controller: refresh on every definition change, and
/// every few seconds while a deleted definition waits for its resources.
pub async fn run(state: Arc<AppState>) {
    let prefix = definitions_resource().prefix(None);
    loop {
        refresh(&state).await;
        let mut watch = state.store.watch(&prefix, state.store.revision()).ok();
        let changed = async {
            match watch.as_mut() {
                Some(w) => {
                    futures::StreamExt::next(w).await;
                }
                None => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = state.cancel.cancelled() => return,
            _ = changed => tokio::time::sleep(Duration::from_millis(20)).await,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
