//! Which lists strategic merge patch merges, and by what key.
//!
//! Upstream Kubernetes reads this from the `patchStrategy` / `patchMergeKey` Go
//! struct tags (published as `x-kubernetes-patch-strategy` / `-merge-key` in
//! OpenAPI). Here it is a small table of field paths per kind. A path is the
//! dotted list of field names from the object root; list elements add no
//! segment, so `spec.containers.env` is the `env` list of every container.
//!
//! Fragments that recur (object metadata, a pod spec, a container) are written
//! once and mounted under a prefix, so adding a kind is one row in [`KINDS`].
//! A schema built at run time (for example from OpenAPI) can extend or replace
//! the table through [`Schema::set_list`].

use std::collections::HashMap;

/// How strategic merge patch combines a patch list with the stored list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch list replaces the stored list whole (the default).
    Replace,
    /// Lists of objects matched by the named field (`patchMergeKey`).
    MergeByKey(String),
    /// Lists of primitives merged as an ordered set (`patchStrategy: merge`
    /// without a merge key, e.g. `metadata.finalizers`).
    MergeSet,
}

static REPLACE: ListStrategy = ListStrategy::Replace;

/// The list strategies for one kind, keyed by dotted field path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    lists: HashMap<String, ListStrategy>,
}

impl Schema {
    /// The built-in table for `kind` (e.g. `"Pod"`, `"Deployment"`).
    ///
    /// Every kind, known or not, gets the `metadata` rules (`ownerReferences`
    /// by `uid`, `finalizers` as a set), since all objects share `ObjectMeta`;
    /// an unknown kind gets nothing more, so all its other lists are replaced.
    pub fn for_kind(kind: &str) -> Schema {
        let mut schema = Schema::default();
        schema.mount("metadata", OBJECT_META);
        if let Some(rules) = KINDS.iter().find(|k| k.kinds.contains(&kind)) {
            schema.mount("", rules.rules);
        }
        schema
    }

    /// Whether the built-in table describes `kind`. The API server may refuse
    /// strategic merge for other kinds, as Kubernetes does for custom resources.
    pub fn is_known_kind(kind: &str) -> bool {
        KINDS.iter().any(|k| k.kinds.contains(&kind))
    }

    /// Sets the strategy of the list at `path` (dotted field names).
    pub fn set_list(&mut self, path: &str, strategy: ListStrategy) {
        self.lists.insert(path.to_owned(), strategy);
    }

    /// The strategy of the list at `path`; [`ListStrategy::Replace`] when the
    /// table says nothing.
    pub fn list_strategy(&self, path: &str) -> &ListStrategy {
        self.lists.get(path).unwrap_or(&REPLACE)
    }

    fn mount(&mut self, prefix: &str, rules: &[Rule]) {
        for rule in rules {
            match *rule {
                Rule::Keyed(field, key) => {
                    self.set_list(&join(prefix, field), ListStrategy::MergeByKey(key.into()))
                }
                Rule::Set(field) => self.set_list(&join(prefix, field), ListStrategy::MergeSet),
                Rule::Nested(field, inner) => self.mount(&join(prefix, field), inner),
            }
        }
    }
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// One row of a fragment; field names may be dotted.
enum Rule {
    /// A list of objects merged by the given key.
    Keyed(&'static str, &'static str),
    /// A list of primitives merged as a set.
    Set(&'static str),
    /// Another fragment mounted under a field.
    Nested(&'static str, &'static [Rule]),
}

use Rule::{Keyed, Nested, Set};

struct KindRules {
    kinds: &'static [&'static str],
    rules: &'static [Rule],
}

const OBJECT_META: &[Rule] = &[Keyed("ownerReferences", "uid"), Set("finalizers")];

const CONTAINER: &[Rule] = &[
    Keyed("ports", "containerPort"),
    Keyed("env", "name"),
    Keyed("volumeMounts", "mountPath"),
    Keyed("volumeDevices", "devicePath"),
];

// `tolerations` is absent on purpose: upstream PodSpec declares it without a
// patch strategy (`listType=atomic`), so a patch replaces the whole list.
const POD_SPEC: &[Rule] = &[
    Keyed("containers", "name"),
    Nested("containers", CONTAINER),
    Keyed("initContainers", "name"),
    Nested("initContainers", CONTAINER),
    Keyed("ephemeralContainers", "name"),
    Nested("ephemeralContainers", CONTAINER),
    Keyed("volumes", "name"),
    Keyed("imagePullSecrets", "name"),
    Keyed("hostAliases", "ip"),
    Keyed("resourceClaims", "name"),
    Keyed("schedulingGates", "name"),
    Keyed("topologySpreadConstraints", "topologyKey"),
];

/// A `PodTemplateSpec`, mounted where a workload embeds one.
const POD_TEMPLATE: &[Rule] = &[Nested("spec", POD_SPEC)];

const CONDITIONS: &[Rule] = &[Keyed("conditions", "type")];

const POD_STATUS: &[Rule] = &[
    Keyed("conditions", "type"),
    Keyed("podIPs", "ip"),
    Keyed("hostIPs", "ip"),
    Keyed("resourceClaimStatuses", "name"),
];

const NODE_STATUS: &[Rule] = &[Keyed("conditions", "type"), Keyed("addresses", "type")];

/// The built-in kinds. `spec.strategy` of a Deployment (and `updateStrategy`
/// elsewhere) needs no row: its `$retainKeys` directive works on any map.
const KINDS: &[KindRules] = &[
    KindRules {
        kinds: &["Pod"],
        rules: &[Nested("spec", POD_SPEC), Nested("status", POD_STATUS)],
    },
    KindRules {
        kinds: &["PodTemplate"],
        rules: &[Nested("template", POD_TEMPLATE)],
    },
    KindRules {
        kinds: &[
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "ReplicationController",
            "Job",
        ],
        rules: &[
            Nested("spec.template", POD_TEMPLATE),
            Nested("status", CONDITIONS),
        ],
    },
    KindRules {
        kinds: &["CronJob"],
        rules: &[Nested("spec.jobTemplate.spec.template", POD_TEMPLATE)],
    },
    KindRules {
        kinds: &["Node"],
        rules: &[Set("spec.podCIDRs"), Nested("status", NODE_STATUS)],
    },
    KindRules {
        kinds: &["Service"],
        rules: &[Keyed("spec.ports", "port"), Nested("status", CONDITIONS)],
    },
    KindRules {
        kinds: &[
            "Namespace",
            "PersistentVolumeClaim",
            "HorizontalPodAutoscaler",
        ],
        rules: &[Nested("status", CONDITIONS)],
    },
    KindRules {
        kinds: &["ServiceAccount"],
        rules: &[Keyed("secrets", "name")],
    },
    // Kinds whose own lists are all replaced; listed so they count as known.
    KindRules {
        kinds: &[
            "ConfigMap",
            "Secret",
            "Event",
            "Endpoints",
            "EndpointSlice",
            "Ingress",
            "Lease",
            "PersistentVolume",
            "LimitRange",
            "ResourceQuota",
        ],
        rules: &[],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> ListStrategy {
        ListStrategy::MergeByKey(k.into())
    }

    #[test]
    fn pod_spec_is_mounted_where_each_kind_embeds_it() {
        let pod = Schema::for_kind("Pod");
        assert_eq!(pod.list_strategy("spec.containers"), &key("name"));
        assert_eq!(pod.list_strategy("spec.initContainers.env"), &key("name"));
        assert_eq!(
            pod.list_strategy("spec.containers.ports"),
            &key("containerPort")
        );

        let deploy = Schema::for_kind("Deployment");
        assert_eq!(
            deploy.list_strategy("spec.template.spec.containers.volumeMounts"),
            &key("mountPath")
        );
        assert_eq!(
            deploy.list_strategy("spec.containers"),
            &ListStrategy::Replace
        );

        let cron = Schema::for_kind("CronJob");
        assert_eq!(
            cron.list_strategy("spec.jobTemplate.spec.template.spec.volumes"),
            &key("name")
        );
    }

    #[test]
    fn tolerations_and_args_are_replaced() {
        let pod = Schema::for_kind("Pod");
        assert_eq!(
            pod.list_strategy("spec.tolerations"),
            &ListStrategy::Replace
        );
        assert_eq!(
            pod.list_strategy("spec.containers.args"),
            &ListStrategy::Replace
        );
    }

    #[test]
    fn metadata_rules_apply_to_every_kind_even_unknown_ones() {
        for kind in ["Pod", "Namespace", "Widget"] {
            let schema = Schema::for_kind(kind);
            assert_eq!(
                schema.list_strategy("metadata.finalizers"),
                &ListStrategy::MergeSet
            );
            assert_eq!(
                schema.list_strategy("metadata.ownerReferences"),
                &key("uid")
            );
        }
        assert!(!Schema::is_known_kind("Widget"));
        assert!(Schema::is_known_kind("Event"));
        assert_eq!(
            Schema::for_kind("Widget").list_strategy("spec.containers"),
            &ListStrategy::Replace
        );
    }

    #[test]
    fn status_lists_per_kind() {
        let node = Schema::for_kind("Node");
        assert_eq!(node.list_strategy("status.addresses"), &key("type"));
        assert_eq!(node.list_strategy("status.conditions"), &key("type"));
        assert_eq!(node.list_strategy("spec.podCIDRs"), &ListStrategy::MergeSet);
        assert_eq!(
            Schema::for_kind("Service").list_strategy("spec.ports"),
            &key("port")
        );
        assert_eq!(
            Schema::for_kind("Job").list_strategy("status.conditions"),
            &key("type")
        );
    }

    #[test]
    fn set_list_extends_a_schema() {
        let mut schema = Schema::for_kind("Widget");
        schema.set_list("spec.items", key("id"));
        assert_eq!(schema.list_strategy("spec.items"), &key("id"));
    }
}
