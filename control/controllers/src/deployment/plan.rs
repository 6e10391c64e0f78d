//! What a Deployment needs, as a pure function of the Deployment, the
//! ReplicaSets it controls and the time.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::revision::{
    TEMPLATE_HASH, replica_set_annotations, revision_of, runs_template, template_hash,
};
use super::status;

/// One write the controller performs.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Create(Box<ReplicaSet>),
    /// Set a ReplicaSet's size and/or annotations (merged).
    Update {
        name: String,
        replicas: Option<i32>,
        annotations: BTreeMap<String, String>,
    },
    Delete(String),
    /// The Deployment's `deployment.kubernetes.io/revision`.
    Revision(String),
    Status(Box<DeploymentStatus>),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// When to look again without a watch event (the progress deadline).
    pub requeue_after: Option<Duration>,
}

/// `maxSurge` and `maxUnavailable` as pod counts for `replicas`.
pub fn surge_and_unavailable(deployment: &Deployment) -> (i32, i32) {
    let spec = deployment.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1).max(0);
    let strategy = spec.and_then(|s| s.strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return (0, replicas);
    }
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let quarter = IntOrString::String("25%".into());
    let surge = resolve(
        rolling
            .and_then(|r| r.max_surge.as_ref())
            .unwrap_or(&quarter),
        replicas,
        true,
    );
    let unavailable = resolve(
        rolling
            .and_then(|r| r.max_unavailable.as_ref())
            .unwrap_or(&quarter),
        replicas,
        false,
    );
    // Both zero would never make progress; Kubernetes lets one pod go.
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable.min(replicas))
    }
}

/// A count or a percentage of `total` (surge rounds up, unavailable down).
fn resolve(value: &IntOrString, total: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(n) => (*n).max(0),
        IntOrString::String(s) => {
            let percent: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let scaled = percent * i64::from(total);
            let value = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            value.max(0) as i32
        }
    }
}

/// Plan the Deployment given the ReplicaSets it controls.
pub fn plan(deployment: &Deployment, sets: &[ReplicaSet], now: jiff::Timestamp) -> Plan {
    let spec = deployment.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let (max_surge, max_unavailable) = surge_and_unavailable(deployment);
    let collision_count = deployment
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let hash = template_hash(&spec.template, collision_count);
    let base = deployment.metadata.name.clone().unwrap_or_default();
    let new_name = format!("{base}-{hash}");
    let new = sets
        .iter()
        .find(|rs| runs_template(rs, &spec.template))
        .or_else(|| {
            sets.iter()
                .find(|rs| rs.metadata.name.as_deref() == Some(new_name.as_str()))
        });
    let mut olds: Vec<&ReplicaSet> = sets.iter().filter(|rs| Some(*rs) != new).collect();
    olds.sort_by_key(|rs| {
        (
            revision_of(rs),
            rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        )
    });
    let max_old_revision = olds.iter().map(|rs| revision_of(rs)).max().unwrap_or(0);
    let paused = spec.paused == Some(true);
    let deleting = deployment.metadata.deletion_timestamp.is_some();

    let mut steps = Vec::new();
    let mut sizes: BTreeMap<String, i32> = sets
        .iter()
        .map(|rs| (name(rs), spec_replicas(rs)))
        .collect();
    let mut created = None;
    let revision = match new {
        Some(rs) if revision_of(rs) > max_old_revision => revision_of(rs),
        _ => max_old_revision + 1,
    };
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let old_running = olds
        .iter()
        .any(|rs| spec_replicas(rs) > 0 || rs.status.as_ref().is_some_and(|s| s.replicas > 0));

    if !deleting && !paused {
        if new.is_none() {
            let initial = if recreate {
                if old_running { 0 } else { replicas }
            } else {
                let current: i32 = sizes.values().sum();
                (replicas + max_surge - current).clamp(0, replicas)
            };
            let rs = new_replica_set(deployment, &new_name, &hash, initial, revision, max_surge);
            sizes.insert(new_name.clone(), initial);
            created = Some(new_name.clone());
            steps.push(Step::Create(Box::new(rs)));
        }
        if recreate {
            for rs in &olds {
                sizes.insert(name(rs), 0);
            }
            if !old_running {
                sizes.insert(new.map_or(new_name.clone(), name), replicas);
            }
        } else {
            roll(
                &mut sizes,
                new.map_or(&new_name, |rs| rs.metadata.name.as_ref().unwrap()),
                new,
                &olds,
                replicas,
                max_surge,
                max_unavailable,
            );
        }
    } else if paused
        && !deleting
        && let Some(rs) = new
    {
        // Paused: only a plain scale of a finished rollout goes through.
        if olds.iter().all(|old| spec_replicas(old) == 0) {
            sizes.insert(name(rs), replicas);
        }
    }

    if let Some(rs) = new {
        let wanted = replica_set_annotations(deployment, revision, replicas, max_surge);
        let current = rs.metadata.annotations.clone().unwrap_or_default();
        let changed: BTreeMap<String, String> = wanted
            .into_iter()
            .filter(|(k, v)| current.get(k) != Some(v))
            .collect();
        let size = sizes[&name(rs)];
        if (!changed.is_empty() && !paused) || size != spec_replicas(rs) {
            steps.push(Step::Update {
                name: name(rs),
                replicas: (size != spec_replicas(rs)).then_some(size),
                annotations: if paused { BTreeMap::new() } else { changed },
            });
        }
    }
    for rs in &olds {
        let size = sizes[&name(rs)];
        if size != spec_replicas(rs) {
            steps.push(Step::Update {
                name: name(rs),
                replicas: Some(size),
                annotations: BTreeMap::new(),
            });
        }
    }
    let current_revision = deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(super::revision::REVISION));
    if (new.is_some() || created.is_some())
        && !paused
        && current_revision != Some(&revision.to_string())
    {
        steps.push(Step::Revision(revision.to_string()));
    }

    let outcome = status::compute(
        deployment,
        new,
        &olds,
        created.as_deref(),
        max_unavailable,
        now,
    );
    if outcome.complete && !paused {
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let cleanable: Vec<&&ReplicaSet> = olds
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable.len().saturating_sub(limit);
        for rs in cleanable.into_iter().take(excess) {
            let idle = spec_replicas(rs) == 0 && rs.status.as_ref().is_none_or(|s| s.replicas == 0);
            if idle {
                steps.push(Step::Delete(name(rs)));
            }
        }
    }
    if deployment.status.as_ref() != Some(&outcome.status) {
        steps.push(Step::Status(Box::new(outcome.status)));
    }
    Plan {
        steps,
        requeue_after: outcome.requeue_after,
    }
}

/// One rolling-update step: grow the new set within `maxSurge`, then shrink
/// old sets as far as `maxUnavailable` allows (unhealthy pods first).
fn roll(
    sizes: &mut BTreeMap<String, i32>,
    new_name: &str,
    new: Option<&ReplicaSet>,
    olds: &[&ReplicaSet],
    replicas: i32,
    max_surge: i32,
    max_unavailable: i32,
) {
    let new_size = sizes[new_name];
    if new_size > replicas {
        sizes.insert(new_name.to_string(), replicas);
    } else if new_size < replicas {
        let total: i32 = sizes.values().sum();
        let room = (replicas + max_surge - total).max(0);
        sizes.insert(
            new_name.to_string(),
            new_size + room.min(replicas - new_size),
        );
    }
    let new_size = sizes[new_name];
    let new_available = new.map_or(0, available);
    let old_total: i32 = olds.iter().map(|rs| sizes[&name(rs)]).sum();
    if old_total == 0 {
        return;
    }
    let min_available = replicas - max_unavailable;
    let all: i32 = sizes.values().sum();
    let new_unavailable = (new_size - new_available).max(0);
    let mut budget = all - min_available - new_unavailable;
    if budget <= 0 {
        return;
    }
    // Pods that are not available cost nothing to remove.
    for rs in olds {
        let size = sizes[&name(rs)];
        let unhealthy = (size - available(rs)).max(0).min(budget);
        if unhealthy > 0 {
            sizes.insert(name(rs), size - unhealthy);
            budget -= unhealthy;
        }
    }
    let available_total: i32 = new_available
        + olds
            .iter()
            .map(|rs| available(rs).min(sizes[&name(rs)]))
            .sum::<i32>();
    let mut removable = (available_total - min_available).max(0);
    for rs in olds {
        let size = sizes[&name(rs)];
        let cut = size.min(removable);
        if cut > 0 {
            sizes.insert(name(rs), size - cut);
            removable -= cut;
        }
    }
}

fn new_replica_set(
    deployment: &Deployment,
    name: &str,
    hash: &str,
    replicas: i32,
    revision: u64,
    max_surge: i32,
) -> ReplicaSet {
    let spec = deployment.spec.clone().unwrap_or_default();
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TEMPLATE_HASH.into(), hash.into());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TEMPLATE_HASH.into(), hash.into());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: deployment.metadata.namespace.clone(),
            labels: meta.labels.clone(),
            annotations: Some(replica_set_annotations(
                deployment,
                revision,
                spec.replicas.unwrap_or(1),
                max_surge,
            )),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: deployment.metadata.name.clone().unwrap_or_default(),
                uid: deployment.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

pub(crate) fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub(crate) fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn name(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}
