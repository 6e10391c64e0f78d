//! `kubectl create <kind>` subcommands, whose typed clients send protobuf
//! request bodies (`application/vnd.kubernetes.protobuf`).

mod common;

use anyhow::Result;
use common::Cluster;

#[test]
fn kubectl_create_subcommands_send_protobuf_that_is_understood() -> Result<()> {
    let cluster = Cluster::start()?;
    let out = cluster.kubectl_ok(&["create", "namespace", "team-a"])?;
    assert!(out.contains("namespace/team-a created"), "{out}");
    assert_eq!(
        cluster.jsonpath(&["ns", "team-a"], "{.status.phase}")?,
        "Active"
    );

    cluster.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        "team-a",
        "--from-literal=mode=fast",
        "--from-literal=level=3",
    ])?;
    assert_eq!(
        cluster.jsonpath(
            &["cm", "settings", "-n", "team-a"],
            "{.data.mode}/{.data.level}"
        )?,
        "fast/3"
    );

    cluster.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "team-a",
        "--from-literal=password=s3cret",
    ])?;
    assert_eq!(
        cluster.jsonpath(&["secret", "creds", "-n", "team-a"], "{.data.password}")?,
        "czNjcmV0"
    );
    assert_eq!(
        cluster.jsonpath(&["secret", "creds", "-n", "team-a"], "{.type}")?,
        "Opaque"
    );

    cluster.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "team-a",
        "--image=file:///web.wasm",
        "--replicas=0",
        "--port=8080",
    ])?;
    assert_eq!(
        cluster.jsonpath(&["deploy", "web", "-n", "team-a"],
            "{.spec.replicas} {.spec.selector.matchLabels.app} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}"
        )?,
        "0 web file:///web.wasm 8080"
    );
    // The typed client's manager is recorded.
    let yaml = cluster.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "team-a",
        "-o",
        "yaml",
        "--show-managed-fields",
    ])?;
    assert!(yaml.contains("manager: kubectl-create"), "{yaml}");

    cluster.kubectl_ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "-n",
        "team-a",
        "--tcp=80:8080",
    ])?;
    assert_eq!(
        cluster.jsonpath(
            &["svc", "web", "-n", "team-a"],
            "{.spec.type} {.spec.ports[0].port} {.spec.ports[0].targetPort}"
        )?,
        "ClusterIP 80 8080"
    );
    cluster.kubectl_ok(&[
        "create",
        "service",
        "nodeport",
        "edge",
        "-n",
        "team-a",
        "--tcp=80:8080",
    ])?;
    let node_port = cluster.jsonpath(
        &["svc", "edge", "-n", "team-a"],
        "{.spec.ports[0].nodePort}",
    )?;
    assert!(
        node_port.parse::<u16>().is_ok_and(|p| p >= 30000),
        "{node_port}"
    );

    cluster.kubectl_ok(&["create", "serviceaccount", "robot", "-n", "team-a"])?;
    cluster.jsonpath(&["sa", "robot", "-n", "team-a"], "{.metadata.name}")?;

    cluster.kubectl_ok(&[
        "create",
        "cronjob",
        "nightly",
        "-n",
        "team-a",
        "--image=file:///pi.wasm",
        "--schedule=0 3 * * *",
        "--",
        "pi",
        "100",
    ])?;
    assert_eq!(
        cluster.jsonpath(
            &["cj", "nightly", "-n", "team-a"],
            "{.spec.schedule} {.spec.jobTemplate.spec.template.spec.containers[0].command}"
        )?,
        r#"0 3 * * * ["pi","100"]"#
    );
    cluster.kubectl_ok(&[
        "create",
        "job",
        "once",
        "-n",
        "team-a",
        "--from=cronjob/nightly",
    ])?;
    assert_eq!(
        cluster.jsonpath(&["job", "once", "-n", "team-a"],
            "{.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate} {.spec.template.spec.restartPolicy}"
        )?,
        "manual OnFailure"
    );
    cluster.kubectl_ok(&[
        "create",
        "job",
        "direct",
        "-n",
        "team-a",
        "--image=file:///pi.wasm",
        "--",
        "pi",
        "5",
    ])?;
    assert_eq!(
        cluster.jsonpath(
            &["job", "direct", "-n", "team-a"],
            "{.spec.template.spec.restartPolicy}"
        )?,
        "Never"
    );

    cluster.kubectl_ok(&[
        "create",
        "role",
        "reader",
        "-n",
        "team-a",
        "--verb=get,list",
        "--resource=pods",
    ])?;
    assert_eq!(
        cluster.jsonpath(&["role", "reader", "-n", "team-a"], "{.rules[0].verbs}")?,
        r#"["get","list"]"#
    );
    cluster.kubectl_ok(&[
        "create",
        "rolebinding",
        "robot-reads",
        "-n",
        "team-a",
        "--role=reader",
        "--serviceaccount=team-a:robot",
    ])?;
    assert_eq!(
        cluster.jsonpath(
            &["rolebinding", "robot-reads", "-n", "team-a"],
            "{.roleRef.name} {.subjects[0].kind}"
        )?,
        "reader ServiceAccount"
    );
    cluster.kubectl_ok(&[
        "create",
        "quota",
        "small",
        "-n",
        "team-a",
        "--hard=pods=10,requests.memory=1Gi",
    ])?;
    assert_eq!(
        cluster.jsonpath(
            &["quota", "small", "-n", "team-a"],
            "{.spec.hard.pods} {.spec.hard.requests\\.memory}"
        )?,
        "10 1Gi"
    );

    // Invalid input still gets a Status naming the field, with nothing stored.
    let err = cluster.kubectl_err(&["create", "namespace", "Bad_Name"])?;
    assert!(err.contains("metadata.name"), "{err}");
    Ok(())
}
