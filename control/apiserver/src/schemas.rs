//! Component schemas of the built-in kinds, generated from k8s-openapi's
//! `JsonSchema` implementations (its types carry Kubernetes' own field
//! descriptions), for `kubectl explain` and for clients that read OpenAPI.
//!
//! The catalogue below maps a group-version-kind to its Rust type. It is
//! looked up by what the registry serves, so a kind the registry adds gets
//! its full schema as soon as its type is listed here, and a permissive one
//! (any fields kept) until then.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use crate::resources::Resource;

/// How to add one kind's schema (and everything it refers to) to a generator.
struct Known {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    add: fn(&mut SchemaGenerator) -> Schema,
}

fn known<T: JsonSchema + k8s_openapi::Resource>() -> Known {
    Known {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        add: |generator| generator.subschema_for::<T>(),
    }
}

fn catalogue() -> Vec<Known> {
    use k8s_openapi::api::{
        apps, autoscaling, batch, coordination, core, discovery, networking, node, policy, rbac,
        scheduling, storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
    vec![
        known::<core::v1::Namespace>(),
        known::<core::v1::Pod>(),
        known::<core::v1::Service>(),
        known::<core::v1::Endpoints>(),
        known::<core::v1::ConfigMap>(),
        known::<core::v1::Secret>(),
        known::<core::v1::Node>(),
        known::<core::v1::Event>(),
        known::<core::v1::ServiceAccount>(),
        known::<core::v1::PersistentVolume>(),
        known::<core::v1::PersistentVolumeClaim>(),
        known::<core::v1::ResourceQuota>(),
        known::<core::v1::LimitRange>(),
        known::<core::v1::ReplicationController>(),
        known::<core::v1::Binding>(),
        known::<apps::v1::Deployment>(),
        known::<apps::v1::ReplicaSet>(),
        known::<apps::v1::DaemonSet>(),
        known::<apps::v1::StatefulSet>(),
        known::<apps::v1::ControllerRevision>(),
        known::<batch::v1::Job>(),
        known::<batch::v1::CronJob>(),
        known::<networking::v1::Ingress>(),
        known::<networking::v1::IngressClass>(),
        known::<networking::v1::NetworkPolicy>(),
        known::<discovery::v1::EndpointSlice>(),
        known::<coordination::v1::Lease>(),
        known::<node::v1::RuntimeClass>(),
        known::<scheduling::v1::PriorityClass>(),
        known::<autoscaling::v1::HorizontalPodAutoscaler>(),
        known::<autoscaling::v1::Scale>(),
        known::<autoscaling::v2::HorizontalPodAutoscaler>(),
        known::<policy::v1::PodDisruptionBudget>(),
        known::<policy::v1::Eviction>(),
        known::<rbac::v1::Role>(),
        known::<rbac::v1::ClusterRole>(),
        known::<rbac::v1::RoleBinding>(),
        known::<rbac::v1::ClusterRoleBinding>(),
        known::<storage::v1::StorageClass>(),
        known::<apiextensions::v1::CustomResourceDefinition>(),
    ]
}

/// Where kinds without a Rust type are filed.
fn fallback_name(resource: &Resource) -> String {
    let group = if resource.group.is_empty() {
        "core"
    } else {
        resource.group
    };
    if resource.custom.is_some() {
        // Kubernetes names custom kinds by their reversed group.
        let reversed: Vec<&str> = group.split('.').rev().collect();
        return format!(
            "{}.{}.{}",
            reversed.join("."),
            resource.version,
            resource.kind
        );
    }
    format!("io.skiff.{group}.{}.{}", resource.version, resource.kind)
}

fn reference_name(schema: &Schema) -> Option<String> {
    let reference = schema.get("$ref")?.as_str()?;
    Some(reference.rsplit('/').next()?.to_string())
}

/// The `components.schemas` of one group-version document: each resource's
/// kind with `x-kubernetes-group-version-kind`, plus every schema the kinds
/// refer to (all `$ref`s point into the same document). `names[i]` is the
/// component of the i-th resource.
pub struct Components {
    pub schemas: Map<String, Value>,
    pub names: Vec<String>,
}

pub fn components<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> Components {
    let catalogue = catalogue();
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut extra: Vec<(String, Value)> = Vec::new();
    let mut kinds: Vec<(String, Value)> = Vec::new();
    for r in resources {
        let gvk = json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
        let found = catalogue
            .iter()
            .find(|k| (k.group, k.version, k.kind) == (r.group, r.version, r.kind));
        let name = match found.and_then(|k| reference_name(&(k.add)(&mut generator))) {
            Some(name) => name,
            None => {
                let name = fallback_name(r);
                generator.subschema_for::<ObjectMeta>();
                let schema = match &r.custom {
                    Some(custom) => custom.openapi_schema(r),
                    None => permissive(r),
                };
                extra.push((name.clone(), schema));
                name
            }
        };
        kinds.push((name, gvk));
    }
    let mut schemas = generator.take_definitions(true);
    schemas.extend(extra);
    let mut names = Vec::new();
    for (name, gvk) in kinds {
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert("x-kubernetes-group-version-kind".into(), gvk);
        }
        names.push(name);
    }
    Components { schemas, names }
}

/// A schema for a kind without a Rust type: the usual envelope, any other
/// fields kept as sent.
fn permissive(resource: &Resource) -> Value {
    json!({
        "description": format!("{} ({}).", resource.kind, resource.api_version()),
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string", "description": "The versioned schema of this representation of an object."},
            "kind": {"type": "string", "description": "The REST resource this object represents."},
            "metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
        },
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
