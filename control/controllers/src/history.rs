//! ControllerRevisions: the template history of DaemonSets and
//! StatefulSets. Each distinct pod template is stored once, as
//! `<owner>-<hash>` with a `controller-revision-hash` label and a growing
//! `revision` number; the pods carry the hash of the template they run.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::json;

use crate::deployment::revision::template_hash;

pub const REVISION_HASH: &str = "controller-revision-hash";

/// What to write so that the current template has a revision.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RevisionPlan {
    /// The hash of the current template (`controller-revision-hash`).
    pub hash: String,
    /// The revision's name, `<owner>-<hash>`.
    pub name: String,
    /// A revision to create for a template never seen before.
    pub create: Option<ControllerRevision>,
    /// An older revision of the same template becomes the newest again
    /// (a rollback): its new `revision` number.
    pub bump: Option<(String, i64)>,
    /// Revisions beyond the history limit, oldest first.
    pub delete: Vec<String>,
}

/// Plan the revision history of `owner` for `template`, keeping at most
/// `limit` old revisions besides those named in `in_use` (hashes that pods
/// still run).
pub fn plan(
    namespace: &str,
    owner: &OwnerReference,
    template: &PodTemplateSpec,
    selector_labels: &BTreeMap<String, String>,
    existing: &[Arc<ControllerRevision>],
    limit: i32,
    in_use: &[String],
) -> RevisionPlan {
    let hash = template_hash(template, 0);
    let name = format!("{}-{hash}", owner.name);
    let newest = existing.iter().map(|r| r.revision).max().unwrap_or(0);
    let mut plan = RevisionPlan {
        hash: hash.clone(),
        name: name.clone(),
        ..RevisionPlan::default()
    };
    match existing
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(name.as_str()))
    {
        Some(current) if current.revision < newest => {
            plan.bump = Some((name.clone(), newest + 1));
        }
        Some(_) => {}
        None => {
            let mut labels = selector_labels.clone();
            labels.insert(REVISION_HASH.into(), hash.clone());
            plan.create = Some(ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.to_string()),
                    labels: Some(labels),
                    owner_references: Some(vec![owner.clone()]),
                    ..ObjectMeta::default()
                },
                data: Some(RawExtension(json!({"spec": {"template": template}}))),
                revision: newest + 1,
            });
        }
    }
    let mut old: Vec<&Arc<ControllerRevision>> = existing
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some(name.as_str()))
        .filter(|r| {
            let hash = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_HASH));
            !hash.is_some_and(|h| in_use.contains(h))
        })
        .collect();
    old.sort_by_key(|r| r.revision);
    let surplus = old.len().saturating_sub(limit.max(0) as usize);
    plan.delete = old[..surplus]
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .collect();
    plan
}

/// The revision hash a pod (or anything labelled by a controller) carries.
pub fn hash_of(meta: &ObjectMeta) -> Option<&str> {
    meta.labels.as_ref()?.get(REVISION_HASH).map(String::as_str)
}

/// The revision hashes the pods still run: [`plan`] keeps those revisions.
pub fn hashes_in_use(pods: &[Arc<Pod>]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| hash_of(&p.metadata).map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "image": image}]}}))
            .unwrap()
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "DaemonSet".into(),
            name: "ds".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn existing(plan: &RevisionPlan) -> Arc<ControllerRevision> {
        Arc::new(plan.create.clone().unwrap())
    }

    #[test]
    fn one_revision_per_template_numbered_and_trimmed() {
        let labels = BTreeMap::from([("app".to_string(), "x".to_string())]);
        let p = |t: &PodTemplateSpec, have: &[Arc<ControllerRevision>], in_use: &[String]| {
            plan("default", &owner(), t, &labels, have, 1, in_use)
        };
        let one = p(&template("a"), &[], &[]);
        let rev1 = existing(&one);
        assert_eq!(rev1.revision, 1);
        assert_eq!(one.name, format!("ds-{}", one.hash));
        assert_eq!(
            rev1.metadata.labels.as_ref().unwrap()[REVISION_HASH],
            one.hash
        );
        assert_eq!(
            p(&template("a"), std::slice::from_ref(&rev1), &[]),
            RevisionPlan {
                create: None,
                ..one.clone()
            }
        );

        let two = p(&template("b"), std::slice::from_ref(&rev1), &[]);
        let rev2 = existing(&two);
        assert_eq!(rev2.revision, 2);
        assert_ne!(two.hash, one.hash);
        // Back to the first template: its revision becomes the newest.
        let back = p(&template("a"), &[rev1.clone(), rev2.clone()], &[]);
        assert_eq!(back.bump, Some((one.name.clone(), 3)));
        // A third template with limit 1: the oldest old revision goes,
        // unless pods still run it.
        let three = p(&template("c"), &[rev1.clone(), rev2.clone()], &[]);
        assert_eq!(three.delete, vec![one.name.clone()]);
        let kept = p(
            &template("c"),
            &[rev1, rev2],
            std::slice::from_ref(&one.hash),
        );
        assert!(kept.delete.is_empty(), "{:?}", kept.delete);
    }
}
