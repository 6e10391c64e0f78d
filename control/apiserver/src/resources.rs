//! The resource registry: what each served kind is called, where it lives,
//! and the hooks (decode, defaults, validation, table) the generic REST code
//! calls for it. Kinds are plain data with function pointers, so adding one is
//! a new file under `kinds/` and a line in [`Registry::builtin`].

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::crd::Custom;
use crate::decode::DecodeFn;
use crate::error::Cause;
use crate::table::TableDef;

/// One REST resource (a kind in a group-version).
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Has a `status` subresource: writes to the main resource keep the stored
    /// status, writes to `/status` keep everything but the status.
    pub has_status: bool,
    /// Other subresources served by dedicated handlers (`log`, `binding`).
    pub subresources: &'static [&'static str],
    /// `metadata.generation` counts spec changes.
    pub tracks_generation: bool,
    /// Extra field selectors beyond `metadata.name` and `metadata.namespace`.
    pub field_selectors: &'static [&'static str],
    pub decode: DecodeFn,
    /// Fill in defaults on create (and on update, for fields that must stay set).
    pub defaults: fn(&mut Value),
    /// Validate a whole object; `old` is set for updates (immutable fields).
    pub validate: fn(&Value, Option<&Value>) -> Vec<Cause>,
    pub table: TableDef,
    /// Set for the custom resources a CustomResourceDefinition serves: their
    /// schema, printer columns and subresources.
    pub custom: Option<Arc<Custom>>,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The store key of an object, `/registry/<group>/<plural>/<ns>/<name>`;
    /// the core group is spelled `core`.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{}", self.prefix(namespace), name)
    }

    /// The key prefix of all objects of this resource, or of one namespace.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        // Custom resources live apart so that a CRD whose group collides
        // with a built-in one can never read or delete built-in objects.
        let group = if self.custom.is_some() {
            format!("custom/{group}")
        } else {
            group.to_string()
        };
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("/registry/{group}/{}/{ns}/", self.plural),
            None => format!("/registry/{group}/{}/", self.plural),
        }
    }

    pub fn supports_field(&self, field: &str) -> bool {
        field == "metadata.name"
            || (field == "metadata.namespace" && self.namespaced)
            || self.field_selectors.contains(&field)
    }
}

/// All served resources: the built-in ones and those the stored
/// CustomResourceDefinitions add. A registry is an immutable snapshot; the
/// CRD controller installs a new one when a definition changes
/// ([`crate::crd::Live`]). Discovery and OpenAPI documents are computed once
/// per snapshot, on first use.
pub struct Registry {
    resources: Vec<&'static Resource>,
    pub(crate) discovery: OnceLock<crate::aggregated::Cached>,
    pub(crate) openapi: OnceLock<crate::openapi::Documents>,
}

static BUILTIN: OnceLock<Vec<&'static Resource>> = OnceLock::new();

impl Registry {
    /// The built-in kinds only.
    pub fn builtin() -> Registry {
        Registry::with_custom(Vec::new())
    }

    /// The built-in kinds followed by `custom` (a custom resource whose
    /// group, version and plural a built-in one has is not added).
    pub fn with_custom(custom: Vec<&'static Resource>) -> Registry {
        let builtin = BUILTIN.get_or_init(|| {
            builtin_resources()
                .into_iter()
                .map(|r| &*Box::leak(Box::new(r)))
                .collect()
        });
        let mut resources = builtin.clone();
        for r in custom {
            if !resources
                .iter()
                .any(|b| (b.group, b.version, b.plural) == (r.group, r.version, r.plural))
            {
                resources.push(r);
            }
        }
        Registry {
            resources,
            discovery: OnceLock::new(),
            openapi: OnceLock::new(),
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &'static Resource> + '_ {
        self.resources.iter().copied()
    }

    /// Find by group, version and plural name.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        self.all()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The group-versions served under `/apis` (everything but core).
    pub fn groups(&self) -> Vec<(&'static str, &'static str)> {
        let mut groups: Vec<(&'static str, &'static str)> = Vec::new();
        for r in self.all().filter(|r| !r.group.is_empty()) {
            if !groups.contains(&(r.group, r.version)) {
                groups.push((r.group, r.version));
            }
        }
        groups
    }
}

fn builtin_resources() -> Vec<Resource> {
    vec![
        crate::kinds::namespace::resource(),
        crate::kinds::pod::resource(),
        crate::kinds::node::resource(),
        crate::kinds::event::resource(),
        crate::kinds::service::resource(),
        crate::kinds::endpoints::resource(),
        crate::kinds::configmap::resource(),
        crate::kinds::secret::resource(),
        crate::kinds::serviceaccount::resource(),
        crate::kinds::volume::persistent_volume(),
        crate::kinds::volume::persistent_volume_claim(),
        crate::kinds::quota::resource_quota(),
        crate::kinds::quota::limit_range(),
        crate::kinds::replicationcontroller::resource(),
        crate::kinds::deployment::resource(),
        crate::kinds::replicaset::resource(),
        crate::kinds::daemonset::resource(),
        crate::kinds::statefulset::resource(),
        crate::kinds::controllerrevision::resource(),
        crate::kinds::job::resource(),
        crate::kinds::cronjob::resource(),
        crate::kinds::ingress::ingress(),
        crate::kinds::ingress::ingress_class(),
        crate::kinds::networkpolicy::resource(),
        crate::kinds::endpointslice::resource(),
        crate::kinds::lease::resource(),
        crate::kinds::runtimeclass::resource(),
        crate::kinds::priorityclass::resource(),
        crate::kinds::hpa::resource(),
        crate::kinds::hpa_v1::resource(),
        crate::kinds::pdb::resource(),
        crate::kinds::rbac::role(),
        crate::kinds::rbac::cluster_role(),
        crate::kinds::rbac::role_binding(),
        crate::kinds::rbac::cluster_role_binding(),
        crate::kinds::storageclass::resource(),
        crate::kinds::crd::resource(),
    ]
    .into_iter()
    .chain(crate::auth::resources())
    .collect()
}
