use std::time::Duration;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use tokio::task::JoinHandle;

use super::*;
use crate::testing::{Attempt, FakeCluster, FakeDriver, Prepare, Recorded, exit};

struct Harness {
    cluster: Arc<FakeCluster>,
    driver: FakeDriver,
    node: Arc<NodeContext>,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _changes) = FakeCluster::new();
    let driver = FakeDriver::default();
    let shutdown = CancellationToken::new();
    let node = Arc::new(NodeContext {
        node_name: "n1".into(),
        host_ip: "127.0.0.1".into(),
        cluster: cluster.clone(),
        events: crate::events::EventSink::start(cluster.clone(), shutdown.clone()),
        driver: Arc::new(driver.clone()),
        logs: Arc::new(LogBook::new(dir.path().join("pods"))),
        ports: Arc::default(),
        running: Arc::default(),
        metrics: Arc::default(),
        data_dir: dir.path().to_path_buf(),
        allocatable: crate::sources::Allocatable {
            cpu_cores: 2.0,
            memory_bytes: 4e9,
        },
        shutdown,
    });
    Harness {
        cluster,
        driver,
        node,
        _dir: dir,
    }
}

fn container(name: &str, image: &str) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        ..Container::default()
    }
}

fn pod(policy: &str, containers: Vec<Container>, init: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("ns".into()),
            uid: Some("u1".into()),
            resource_version: Some("5".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            containers,
            init_containers: (!init.is_empty()).then_some(init),
            ..PodSpec::default()
        }),
        status: None,
    }
}

impl Harness {
    fn start(&self, pod: &Pod) -> (JoinHandle<StopReason>, mpsc::UnboundedSender<WorkerCommand>) {
        let (worker, commands) = PodWorker::new(pod, Arc::clone(&self.node)).unwrap();
        (tokio::spawn(worker.run()), commands)
    }
}

/// A short name for a container's state: `waiting:Reason`, `running` or `exited:N`.
fn summary(status: &ContainerStatus) -> String {
    let state = status.state.clone().unwrap_or_default();
    if let Some(waiting) = state.waiting {
        format!("waiting:{}", waiting.reason.unwrap_or_default())
    } else if state.running.is_some() {
        "running".into()
    } else {
        format!(
            "exited:{}",
            state.terminated.map(|t| t.exit_code).unwrap_or(-1)
        )
    }
}

/// The distinct states container `i` went through, in order.
fn history(recorded: &Recorded, i: usize) -> Vec<String> {
    let mut states: Vec<String> = Vec::new();
    for (_, status) in &recorded.statuses {
        let containers = status.container_statuses.as_deref().unwrap_or_default();
        let state = summary(&containers[i]);
        if states.last() != Some(&state) {
            states.push(state);
        }
    }
    states
}

fn phase_of(recorded: &Recorded) -> String {
    recorded
        .last_status("p")
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn crash_loop_backs_off_and_restarts() {
    let h = harness();
    h.driver
        .attempts("img", [exit(1), exit(1), exit(1), exit(1), exit(1)]);
    let (_worker, _commands) = h.start(&pod("Always", vec![container("app", "img")], vec![]));
    let recorded = h
        .cluster
        .wait_for("the fifth attempt's exit", |r| {
            let containers = r
                .last_status("p")
                .and_then(|s| s.container_statuses.clone());
            containers.is_some_and(|c| {
                c[0].restart_count == 4 && summary(&c[0]) == "waiting:CrashLoopBackOff"
            })
        })
        .await;
    // Each attempt exits the moment it starts (and is created the moment its
    // back-off ends), so the first status written is already a back-off; the
    // writer writes the newest status, and may skip the ones in between.
    let states = history(&recorded, 0);
    assert_eq!(states[0], "waiting:CrashLoopBackOff", "{states:?}");
    assert!(
        states.iter().all(|s| [
            "waiting:CrashLoopBackOff",
            "waiting:ContainerCreating",
            "running"
        ]
        .contains(&s.as_str())),
        "{states:?}"
    );
    assert_eq!(
        phase_of(&recorded),
        "Running",
        "a crash-looping pod is still Running"
    );

    let runs = h.driver.runs();
    let gaps: Vec<u64> = runs
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs())
        .collect();
    assert_eq!(gaps, [10, 20, 40, 80], "kubelet's back-off sequence");

    let backing_off = recorded.statuses.iter().find_map(|(_, s)| {
        let c = &s.container_statuses.as_ref()?[0];
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        (c.restart_count == 1 && waiting.reason.as_deref() == Some("CrashLoopBackOff"))
            .then(|| waiting.message.clone())
    });
    assert_eq!(
        backing_off.flatten().as_deref(),
        Some("back-off 20s restarting failed container=app pod=p_ns(u1)")
    );
    let last = recorded
        .last_status("p")
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .clone();
    assert_eq!(last.last_state.unwrap().terminated.unwrap().exit_code, 1);
    assert!(recorded.event_reasons().iter().any(|r| r == "BackOff"));
}

#[tokio::test(start_paused = true)]
async fn pull_errors_back_off_until_the_pull_works() {
    let h = harness();
    h.driver.prepares(
        "img",
        [
            Prepare::PullFails("refused".into()),
            Prepare::PullFails("refused".into()),
        ],
    );
    let (_worker, _commands) = h.start(&pod("Always", vec![container("app", "img")], vec![]));
    let recorded = h
        .cluster
        .wait_for("running after pull retries", |r| {
            history(r, 0).last().map(String::as_str) == Some("running")
        })
        .await;
    let states = history(&recorded, 0);
    // The first `ContainerCreating` is superseded by the pull error before the
    // pod's first status is written.
    assert_eq!(
        states,
        [
            "waiting:ErrImagePull",
            "waiting:ContainerCreating",
            "waiting:ImagePullBackOff",
            "waiting:ContainerCreating",
            "running"
        ]
    );
    let messages: Vec<_> = recorded
        .events
        .iter()
        .filter_map(|e| e.message.clone())
        .collect();
    assert!(
        messages
            .contains(&"Failed to pull image \"img\": pulling image \"img\": refused".to_string())
    );
    assert!(messages.contains(&"Error: ErrImagePull".to_string()));
    let status = recorded.last_status("p").unwrap();
    assert_eq!(
        status.container_statuses.as_ref().unwrap()[0].image_id,
        "sha256:img"
    );
}

#[tokio::test(start_paused = true)]
async fn pull_policy_and_pull_secrets_reach_the_driver() {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{LocalObjectReference, Secret};

    use crate::driver::{ImagePullPolicy, PullRequest};

    let h = harness();
    let config = br#"{"auths":{"127.0.0.1:5000":{"auth":"dTpw"}}}"#.to_vec();
    h.cluster.add_secret(
        "ns",
        Secret {
            metadata: ObjectMeta {
                name: Some("regcred".into()),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            data: Some([(".dockerconfigjson".to_string(), ByteString(config.clone()))].into()),
            ..Secret::default()
        },
    );
    let mut app = container("app", "127.0.0.1:5000/a/b:v1");
    app.image_pull_policy = Some("Always".into());
    let mut pod = pod("Always", vec![app, container("side", "r.io/c")], vec![]);
    pod.spec.as_mut().unwrap().image_pull_secrets = Some(vec![
        LocalObjectReference {
            name: "missing".into(),
        },
        LocalObjectReference {
            name: "regcred".into(),
        },
    ]);
    let (_worker, _commands) = h.start(&pod);
    h.driver.wait_for_runs(2).await;
    let mut pulls = h.driver.pulls();
    pulls.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, pull) in &mut pulls {
        let pod = pull.pod.take().expect("the pod comes with the pull");
        assert_eq!(pod.namespace, "ns");
    }
    let expected = |image: &str, policy| {
        (
            image.to_string(),
            PullRequest {
                policy,
                docker_configs: vec![config.clone()],
                pod: None,
            },
        )
    };
    assert_eq!(
        pulls,
        [
            expected("127.0.0.1:5000/a/b:v1", ImagePullPolicy::Always),
            // No policy and no tag: the API server's default is Always.
            expected("r.io/c", ImagePullPolicy::Always),
        ]
    );
    let recorded = h.cluster.recorded();
    let warnings: Vec<_> = recorded
        .events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedToRetrieveImagePullSecret"))
        .filter_map(|e| e.message.clone())
        .collect();
    assert_eq!(warnings.len(), 2, "one per container: {warnings:?}");
    assert!(warnings[0].contains("(missing)"), "{warnings:?}");
}

#[tokio::test(start_paused = true)]
async fn an_invalid_image_is_a_create_container_error() {
    let h = harness();
    h.driver
        .prepares("img", [Prepare::Invalid("bad magic".into())]);
    let (_worker, _commands) = h.start(&pod("Never", vec![container("app", "img")], vec![]));
    let recorded = h
        .cluster
        .wait_for("the error", |r| {
            history(r, 0).contains(&"waiting:CreateContainerError".to_string())
        })
        .await;
    assert_eq!(phase_of(&recorded), "Pending");
}

#[tokio::test(start_paused = true)]
async fn never_with_exit_zero_succeeds_and_exit_one_fails() {
    for (code, phase) in [(0, "Succeeded"), (1, "Failed")] {
        let h = harness();
        h.driver.attempts("img", [exit(code)]);
        let (worker, commands) = h.start(&pod("Never", vec![container("app", "img")], vec![]));
        let recorded = h
            .cluster
            .wait_for("a final phase", |r| phase_of(r) == phase)
            .await;
        assert_eq!(
            history(&recorded, 0).last().unwrap(),
            &format!("exited:{code}")
        );
        let ready = recorded
            .last_status("p")
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("PodCompleted"))
        );
        assert_eq!(h.driver.runs().len(), 1);
        drop(commands);
        worker.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn on_failure_restarts_until_success() {
    let h = harness();
    h.driver.attempts("img", [exit(2), exit(0)]);
    let (_worker, _commands) = h.start(&pod("OnFailure", vec![container("app", "img")], vec![]));
    let recorded = h
        .cluster
        .wait_for("success", |r| phase_of(r) == "Succeeded")
        .await;
    let status = &recorded
        .last_status("p")
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert_eq!(status.restart_count, 1);
    assert_eq!(
        status
            .last_state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        2
    );
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_first_and_in_order() {
    let h = harness();
    // Long enough for the pod's first status (Pending) to be written.
    h.driver.attempts(
        "init-a",
        [Attempt::Exit {
            code: 0,
            output: String::new(),
            after: Duration::from_secs(1),
        }],
    );
    h.driver.attempts("init-b", [exit(0)]);
    let spec = pod(
        "Always",
        vec![container("app", "img")],
        vec![container("a", "init-a"), container("b", "init-b")],
    );
    let (_worker, _commands) = h.start(&spec);
    let recorded = h
        .cluster
        .wait_for("the app running", |r| phase_of(r) == "Running")
        .await;
    let order: Vec<_> = h
        .driver
        .wait_for_runs(3)
        .await
        .into_iter()
        .map(|r| r.image)
        .collect();
    assert_eq!(order, ["init-a", "init-b", "img"]);
    let first = &recorded.statuses[0].1;
    assert_eq!(first.phase.as_deref(), Some("Pending"));
    assert_eq!(
        summary(&first.container_statuses.as_ref().unwrap()[0]),
        "waiting:PodInitializing"
    );
    let init = recorded
        .last_status("p")
        .unwrap()
        .init_container_statuses
        .clone()
        .unwrap();
    assert!(init.iter().all(|s| summary(s) == "exited:0"));
}

#[tokio::test(start_paused = true)]
async fn deletion_stops_the_containers_then_deletes_the_pod() {
    let h = harness();
    let spec = pod(
        "Always",
        vec![container("a", "img"), container("b", "img")],
        vec![],
    );
    let (worker, commands) = h.start(&spec);
    h.cluster
        .wait_for("both running", |r| phase_of(r) == "Running")
        .await;
    let mut deleting = spec.clone();
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    deleting.metadata.resource_version = Some("9".into());
    commands
        .send(WorkerCommand::Update(Box::new(deleting)))
        .unwrap();
    tokio::time::timeout(crate::testing::SAFETY_NET, worker)
        .await
        .unwrap()
        .unwrap();

    let recorded = h.cluster.recorded();
    assert_eq!(recorded.deleted, [("ns".into(), "p".into(), "u1".into())]);
    let killing: Vec<_> = recorded
        .events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Killing"))
        .collect();
    assert_eq!(killing.len(), 2);
    assert_eq!(
        killing[0].involved_object.resource_version.as_deref(),
        Some("9")
    );
    let last = recorded.last_status("p").unwrap();
    assert_eq!(last.phase.as_deref(), Some("Failed"));
    for status in last.container_statuses.as_ref().unwrap() {
        assert_eq!(summary(status), "exited:137");
    }
    assert!(
        h.node.logs.find("ns", "p", "a", false).is_err(),
        "logs forgotten"
    );
}

#[tokio::test(start_paused = true)]
async fn a_vanished_pod_stops_without_deleting() {
    let h = harness();
    let (worker, commands) = h.start(&pod("Always", vec![container("a", "img")], vec![]));
    h.cluster
        .wait_for("running", |r| phase_of(r) == "Running")
        .await;
    commands.send(WorkerCommand::Vanished).unwrap();
    tokio::time::timeout(crate::testing::SAFETY_NET, worker)
        .await
        .unwrap()
        .unwrap();
    assert!(h.cluster.recorded().deleted.is_empty());
}

#[tokio::test(start_paused = true)]
async fn argv_env_and_logs_reach_the_driver() {
    let h = harness();
    h.driver.attempts(
        "img",
        [Attempt::Exit {
            code: 1,
            output: "first\n".into(),
            after: Duration::from_secs(1),
        }],
    );
    let mut app = container("app", "img");
    app.args = Some(vec!["--port".into(), "$(PORT)".into(), "$(NS)".into()]);
    app.env = Some(vec![
        EnvVar {
            name: "MODE".into(),
            value: Some("fast".into()),
            value_from: None,
        },
        EnvVar {
            name: "PORT".into(),
            value: Some("80".into()),
            value_from: None,
        },
        EnvVar {
            name: "NS".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.namespace".into(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
        },
    ]);
    let (_worker, _commands) = h.start(&pod("Never", vec![app], vec![]));
    let recorded = h
        .cluster
        .wait_for("failure", |r| phase_of(r) == "Failed")
        .await;
    let run = &h.driver.wait_for_runs(1).await[0];
    assert_eq!(run.args, ["app", "--port", "80", "ns"]);
    let env: Vec<(&str, &str)> = run
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, [("MODE", "fast"), ("PORT", "80"), ("NS", "ns")]);
    assert_eq!(phase_of(&recorded), "Failed");
    let source = h.node.logs.find("ns", "p", "app", false).unwrap();
    let mut stream = Box::pin(source.open(None, false).await.unwrap());
    let chunk = futures::StreamExt::next(&mut stream)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&chunk[..], b"first\n");
}

#[tokio::test(start_paused = true)]
async fn traps_are_reported_with_their_message() {
    let h = harness();
    h.driver
        .attempts("img", [Attempt::Trap("wasm trap: unreachable".into())]);
    let (_worker, _commands) = h.start(&pod("Never", vec![container("app", "img")], vec![]));
    let recorded = h
        .cluster
        .wait_for("failure", |r| phase_of(r) == "Failed")
        .await;
    let status = &recorded
        .last_status("p")
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    let terminated = status.state.as_ref().unwrap().terminated.clone().unwrap();
    assert_eq!(terminated.exit_code, 134);
    assert_eq!(
        terminated.message.as_deref(),
        Some("wasm trap: unreachable")
    );
}

#[tokio::test(start_paused = true)]
async fn unchanged_status_is_not_written_again() {
    let h = harness();
    let (_worker, _commands) = h.start(&pod("Always", vec![container("app", "img")], vec![]));
    let recorded = h
        .cluster
        .wait_for("running", |r| phase_of(r) == "Running")
        .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let later = h.cluster.recorded();
    assert_eq!(later.statuses.len(), recorded.statuses.len());
    for pair in later.statuses.windows(2) {
        assert_ne!(pair[0].1, pair[1].1, "each write changes something");
    }
}
