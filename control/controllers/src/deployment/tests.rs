//! The Deployment plan driven against a simulated ReplicaSet controller whose
//! pods become available one round after they are asked for.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::revision::{REVISION, revision_of};
use super::{Step, plan, surge_and_unavailable};

fn at(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_767_225_600 + seconds).unwrap()
}

fn deployment(replicas: i32, arg: &str, strategy: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1,
                     "annotations": {"kubernetes.io/change-cause": format!("arg {arg}")}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": strategy,
            "progressDeadlineSeconds": 60,
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "hello.wasm", "args": [arg]}]}}
        }
    }))
    .unwrap()
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

struct World {
    deployment: Deployment,
    sets: Vec<ReplicaSet>,
    created: usize,
    now: i64,
}

impl World {
    fn new(deployment: Deployment) -> World {
        World {
            deployment,
            sets: Vec::new(),
            created: 0,
            now: 0,
        }
    }

    /// One reconcile, then the simulated pods move. Returns the plan's steps.
    fn round(&mut self) -> Vec<Step> {
        let plan = plan(&self.deployment, &self.sets, at(self.now));
        for step in plan.steps.clone() {
            match step {
                Step::Create(rs) => {
                    let mut rs = *rs;
                    self.created += 1;
                    rs.metadata.uid = Some(format!("rs-{}", self.created));
                    rs.metadata.creation_timestamp = Some(Time(at(self.now)));
                    self.sets.push(rs);
                }
                Step::Update {
                    name,
                    replicas,
                    annotations,
                } => {
                    let rs = self
                        .sets
                        .iter_mut()
                        .find(|r| r.metadata.name.as_deref() == Some(&name))
                        .unwrap();
                    if let Some(n) = replicas {
                        rs.spec.as_mut().unwrap().replicas = Some(n);
                    }
                    rs.metadata
                        .annotations
                        .get_or_insert_default()
                        .extend(annotations);
                }
                Step::Delete(name) => self
                    .sets
                    .retain(|r| r.metadata.name.as_deref() != Some(&name)),
                Step::Revision(rev) => {
                    self.deployment
                        .metadata
                        .annotations
                        .get_or_insert_default()
                        .insert(REVISION.into(), rev);
                }
                Step::Status(status) => self.deployment.status = Some(*status),
            }
        }
        // Pods asked for last round are available now; removed pods go at once.
        for rs in &mut self.sets {
            let want = rs.spec.as_ref().unwrap().replicas.unwrap();
            let status = rs.status.get_or_insert_with(ReplicaSetStatus::default);
            let available = status.replicas.min(want);
            status.available_replicas = Some(available);
            status.ready_replicas = Some(available);
            status.replicas = want;
        }
        self.now += 1;
        plan.steps
    }

    fn available(&self) -> i32 {
        self.sets
            .iter()
            .map(|rs| rs.status.as_ref().unwrap().available_replicas.unwrap())
            .sum()
    }

    fn total(&self) -> i32 {
        self.sets
            .iter()
            .map(|rs| rs.status.as_ref().unwrap().replicas)
            .sum()
    }

    /// Run to a fixed point, checking the rollout never dips below
    /// `replicas - maxUnavailable` available nor exceeds `replicas + maxSurge`.
    fn settle(&mut self, check_floor: bool) {
        let (surge, unavailable) = surge_and_unavailable(&self.deployment);
        let replicas = self.deployment.spec.as_ref().unwrap().replicas.unwrap();
        for _ in 0..100 {
            let steps = self.round();
            assert!(
                self.total() <= replicas + surge,
                "{} pods exceed the surge",
                self.total()
            );
            if check_floor {
                assert!(
                    self.available() >= replicas - unavailable,
                    "only {} available",
                    self.available()
                );
            }
            if steps.is_empty() {
                return;
            }
        }
        panic!("the deployment never settled: {:?}", self.deployment.status);
    }

    fn condition(&self, type_: &str) -> (String, String) {
        let status = self.deployment.status.as_ref().unwrap();
        let c = status
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap();
        (c.status.clone(), c.reason.clone().unwrap())
    }

    fn sizes(&self) -> Vec<(u64, i32)> {
        let mut sizes: Vec<(u64, i32)> = self
            .sets
            .iter()
            .map(|rs| (revision_of(rs), rs.spec.as_ref().unwrap().replicas.unwrap()))
            .collect();
        sizes.sort();
        sizes
    }

    fn set_arg(&mut self, arg: &str) {
        let template = &mut self.deployment.spec.as_mut().unwrap().template;
        template.spec.as_mut().unwrap().containers[0].args = Some(vec![arg.into()]);
        self.deployment.metadata.generation =
            Some(self.deployment.metadata.generation.unwrap() + 1);
        self.deployment
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("kubernetes.io/change-cause".into(), format!("arg {arg}"));
    }
}

#[test]
fn percentages_resolve_like_kubernetes() {
    let d = deployment(10, "a", rolling(json!("25%"), json!("25%")));
    assert_eq!(surge_and_unavailable(&d), (3, 2));
    let d = deployment(10, "a", rolling(json!(0), json!(0)));
    assert_eq!(surge_and_unavailable(&d), (0, 1));
    let d = deployment(4, "a", json!({"type": "Recreate"}));
    assert_eq!(surge_and_unavailable(&d), (0, 4));
}

#[test]
fn first_rollout_creates_revision_one_and_completes() {
    let mut world = World::new(deployment(3, "a", rolling(json!(1), json!(0))));
    world.settle(false);
    assert_eq!(world.sizes(), vec![(1, 3)]);
    let rs = &world.sets[0];
    let hash = &rs
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .as_ref()
        .unwrap()["pod-template-hash"];
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(
        rs.metadata.annotations.as_ref().unwrap()["kubernetes.io/change-cause"],
        "arg a"
    );
    assert_eq!(
        rs.metadata.owner_references.as_ref().unwrap()[0].controller,
        Some(true)
    );
    assert_eq!(
        world.deployment.metadata.annotations.as_ref().unwrap()[REVISION],
        "1"
    );
    assert_eq!(
        world.condition("Progressing"),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    assert_eq!(
        world.condition("Available"),
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    let status = world.deployment.status.as_ref().unwrap();
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.available_replicas
        ),
        (Some(3), Some(3), Some(3))
    );
    assert_eq!(status.observed_generation, Some(1));
}

#[test]
fn rolling_update_of_ten_stays_within_surge_and_unavailable() {
    let mut world = World::new(deployment(10, "a", rolling(json!("25%"), json!("25%"))));
    world.settle(false);
    world.set_arg("b");
    let steps = world.round();
    assert!(steps.iter().any(|s| matches!(s, Step::Create(_))));
    assert_eq!(
        world.condition("Progressing"),
        ("True".into(), "NewReplicaSetCreated".into())
    );
    world.settle(true);
    assert_eq!(world.sizes(), vec![(1, 0), (2, 10)]);
    assert_eq!(
        world.deployment.metadata.annotations.as_ref().unwrap()[REVISION],
        "2"
    );
    assert_eq!(
        world.condition("Progressing"),
        ("True".into(), "NewReplicaSetAvailable".into())
    );
    assert_eq!(
        world
            .deployment
            .status
            .as_ref()
            .unwrap()
            .observed_generation,
        Some(2)
    );
}

#[test]
fn zero_unavailable_never_loses_a_pod() {
    let mut world = World::new(deployment(4, "a", rolling(json!(1), json!(0))));
    world.settle(false);
    world.set_arg("b");
    world.settle(true);
    assert_eq!(world.sizes(), vec![(1, 0), (2, 4)]);
}

#[test]
fn undo_reuses_the_old_set_as_the_next_revision() {
    let mut world = World::new(deployment(2, "a", rolling(json!(1), json!(0))));
    world.settle(false);
    world.set_arg("b");
    world.settle(true);
    world.set_arg("a");
    world.settle(true);
    assert_eq!(
        world.sets.len(),
        2,
        "no third set for a template seen before"
    );
    assert_eq!(world.sizes(), vec![(2, 0), (3, 2)]);
    assert_eq!(
        world.deployment.metadata.annotations.as_ref().unwrap()[REVISION],
        "3"
    );
}

#[test]
fn recreate_stops_old_pods_before_starting_new_ones() {
    let mut world = World::new(deployment(3, "a", json!({"type": "Recreate"})));
    world.settle(false);
    world.set_arg("b");
    world.round();
    assert_eq!(
        world.sizes(),
        vec![(1, 0), (2, 0)],
        "old scaled down, new waits"
    );
    world.settle(false);
    assert_eq!(world.sizes(), vec![(1, 0), (2, 3)]);
}

#[test]
fn history_beyond_the_limit_is_deleted() {
    let mut d = deployment(1, "a", rolling(json!(1), json!(0)));
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let mut world = World::new(d);
    world.settle(false);
    for arg in ["b", "c", "d"] {
        world.set_arg(arg);
        world.settle(true);
    }
    assert_eq!(world.sizes(), vec![(3, 0), (4, 1)]);
}

#[test]
fn a_stuck_rollout_exceeds_its_progress_deadline() {
    let mut world = World::new(deployment(2, "a", rolling(json!(1), json!(0))));
    world.round();
    // Pods never become available: from here on the sets are frozen.
    let frozen = plan(&world.deployment, &world.sets, at(world.now)).steps;
    for step in frozen {
        if let Step::Status(status) = step {
            world.deployment.status = Some(*status);
        }
    }
    world.now += 120;
    let steps = plan(&world.deployment, &world.sets, at(world.now)).steps;
    let status = steps
        .iter()
        .find_map(|s| match s {
            Step::Status(st) => Some(st),
            _ => None,
        })
        .unwrap();
    let progressing = status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
}

#[test]
fn a_paused_deployment_does_not_roll() {
    let mut world = World::new(deployment(2, "a", rolling(json!(1), json!(0))));
    world.settle(false);
    world.deployment.spec.as_mut().unwrap().paused = Some(true);
    world.set_arg("b");
    world.settle(false);
    assert_eq!(world.sets.len(), 1);
    assert_eq!(
        world.condition("Progressing"),
        ("Unknown".into(), "DeploymentPaused".into())
    );
    world.deployment.spec.as_mut().unwrap().paused = Some(false);
    world.settle(true);
    assert_eq!(world.sizes(), vec![(1, 0), (2, 2)]);
}

#[test]
fn scaling_a_finished_rollout_resizes_the_set() {
    let mut world = World::new(deployment(3, "a", rolling(json!(1), json!(0))));
    world.settle(false);
    world.deployment.spec.as_mut().unwrap().replicas = Some(1);
    world.settle(false);
    assert_eq!(world.sizes(), vec![(1, 1)]);
}
