//! The resource registry: what each served kind is called, where it lives,
//! and the hooks (decode, defaults, validation, table) the generic REST code
//! calls for it. Kinds are plain data with function pointers, so adding one is
//! a new file under `kinds/` and a line in [`Registry::builtin`].

use serde_json::Value;

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

/// All served resources.
pub struct Registry {
    resources: Vec<Resource>,
}

impl Registry {
    pub fn builtin() -> Registry {
        Registry {
            resources: vec![
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
                crate::kinds::pdb::resource(),
                crate::kinds::rbac::role(),
                crate::kinds::rbac::cluster_role(),
                crate::kinds::rbac::role_binding(),
                crate::kinds::rbac::cluster_role_binding(),
                crate::kinds::storageclass::resource(),
            ],
        }
    }

    pub fn all(&self) -> &[Resource] {
        &self.resources
    }

    /// Find by group, version and plural name.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The group-versions served under `/apis` (everything but core).
    pub fn groups(&self) -> Vec<(&'static str, &'static str)> {
        let mut groups: Vec<(&'static str, &'static str)> = Vec::new();
        for r in self.resources.iter().filter(|r| !r.group.is_empty()) {
            if !groups.contains(&(r.group, r.version)) {
                groups.push((r.group, r.version));
            }
        }
        groups
    }
}
