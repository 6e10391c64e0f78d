//! Persistent volumes on the Wasm node, end to end with `skiff up` and the real
//! kubectl: a StatefulSet's `volumeClaimTemplates` provisioned by the node-local
//! path provisioner (StorageClass `local-path`), the data surviving the pod, the
//! PV pinned to the node; a claim that does not exist holding the pod in
//! ContainerCreating with a FailedMount event.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, build_guests, manifest};

const ENVDUMP: &str = "file:///usr/local/share/skiff/examples/envdump.wasm";

/// Every start writes a file named after its pod's uid into the claim's volume,
/// then lists the volume: the second pod sees the first one's file.
fn statefulset() -> String {
    format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 1
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: dump
        image: {ENVDUMP}
        args: [\"--write\", \"/data/boot-$(POD_UID)\", \"booted\", \"/data\", \"--sleep\"]
        env:
        - name: POD_UID
          valueFrom:
            fieldRef:
              fieldPath: metadata.uid
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [\"ReadWriteOnce\"]
      resources:
        requests:
          storage: 16Mi
"
    )
}

fn boots(cluster: &Cluster, want: usize) -> Result<String> {
    let mut last = String::new();
    cluster.wait_for(
        Duration::from_secs(120),
        &format!("{want} boot files in the log"),
        |c| {
            let out = c.kubectl(&["logs", "db-0"])?;
            last = String::from_utf8_lossy(&out.stdout).into_owned();
            let seen = last
                .lines()
                .filter(|l| l.starts_with("file /data/boot-"))
                .count();
            Ok(last.contains("done") && seen == want)
        },
    )?;
    Ok(last)
}

#[test]
fn statefulset_claims_are_provisioned_on_the_node_and_keep_their_data() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let class = cluster.kubectl_ok(&[
        "get",
        "storageclass",
        "local-path",
        "-o",
        "jsonpath={.provisioner} {.volumeBindingMode} {.metadata.annotations.storageclass\\.kubernetes\\.io/is-default-class}",
    ])?;
    assert_eq!(class, "skiff.dev/local-path WaitForFirstConsumer true");

    let dir = tempfile::tempdir()?;
    let file = manifest(dir.path(), "db.yaml", &statefulset());
    cluster.kubectl_ok(&["apply", "-f", file.to_str().unwrap()])?;
    cluster.wait_field(&["pvc", "data-db-0"], "{.status.phase}", "Bound")?;
    let first = boots(&cluster, 1)?;

    let volume = cluster.kubectl_ok(&[
        "get",
        "pvc",
        "data-db-0",
        "-o",
        "jsonpath={.spec.volumeName}",
    ])?;
    let pv = cluster.kubectl_ok(&[
        "get",
        "pv",
        &volume,
        "-o",
        "jsonpath={.spec.storageClassName} {.spec.claimRef.name} {.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]} {.status.phase} {.spec.local.path}",
    ])?;
    let node = cluster.kubectl_ok(&["get", "pod", "db-0", "-o", "jsonpath={.spec.nodeName}"])?;
    let fields: Vec<&str> = pv.split(' ').collect();
    assert_eq!(
        &fields[..4],
        &["local-path", "data-db-0", node.as_str(), "Bound"],
        "{pv}"
    );
    let path = std::path::Path::new(fields[4]);
    assert!(path.starts_with(&cluster.data_dir), "{pv}");
    assert_eq!(
        std::fs::read_dir(path)?.count(),
        1,
        "one boot file on the node"
    );

    // The pod comes back under its name, on the same claim, and sees the first boot's file.
    let uid = cluster.kubectl_ok(&["get", "pod", "db-0", "-o", "jsonpath={.metadata.uid}"])?;
    assert!(
        first.contains(&format!("file /data/boot-{uid}: booted")),
        "{first}"
    );
    cluster.kubectl_ok(&["delete", "pod", "db-0"])?;
    cluster.wait_for(Duration::from_secs(120), "db-0 to come back", |c| {
        let out = c.kubectl(&[
            "get",
            "pod",
            "db-0",
            "-o",
            "jsonpath={.metadata.uid} {.status.phase}",
        ])?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(out.status.success() && !text.starts_with(&uid) && text.ends_with("Running"))
    })?;
    let second = boots(&cluster, 2)?;
    assert!(
        second.contains(&format!("file /data/boot-{uid}: booted")),
        "{second}"
    );
    let again = cluster.kubectl_ok(&[
        "get",
        "pvc",
        "data-db-0",
        "-o",
        "jsonpath={.spec.volumeName}",
    ])?;
    assert_eq!(again, volume, "the claim keeps its volume");

    // A pod naming a claim that does not exist waits in ContainerCreating.
    let orphan = manifest(
        dir.path(),
        "orphan.yaml",
        &format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: orphan
spec:
  containers:
  - name: dump
    image: {ENVDUMP}
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: nothing-here
"
        ),
    );
    cluster.kubectl_ok(&["apply", "-f", orphan.to_str().unwrap()])?;
    cluster.wait_field(
        &["pod", "orphan"],
        "{.status.containerStatuses[0].state.waiting.reason}",
        "ContainerCreating",
    )?;
    cluster.wait_for(Duration::from_secs(60), "a FailedMount event", |c| {
        let events = c.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=orphan",
        ])?;
        Ok(events.contains("FailedMount")
            && events.contains("persistentvolumeclaim \"nothing-here\" not found"))
    })?;
    Ok(())
}

/// A claim and a pod that writes into it; returns the volume's name and path
/// once the pod has written.
fn claim_with_data(
    cluster: &Cluster,
    dir: &std::path::Path,
    name: &str,
) -> Result<(String, String)> {
    let yaml = format!(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {name}
spec:
  accessModes: [\"ReadWriteOnce\"]
  resources:
    requests:
      storage: 8Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: {name}-writer
spec:
  restartPolicy: Never
  containers:
  - name: dump
    image: {ENVDUMP}
    args: [\"--write\", \"/data/kept\", \"data\", \"/data\"]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: {name}
"
    );
    let file = manifest(dir, &format!("{name}.yaml"), &yaml);
    cluster.kubectl_ok(&["apply", "-f", file.to_str().unwrap()])?;
    cluster.wait_field(
        &["pod", &format!("{name}-writer")],
        "{.status.phase}",
        "Succeeded",
    )?;
    let volume = cluster.kubectl_ok(&["get", "pvc", name, "-o", "jsonpath={.spec.volumeName}"])?;
    let path = cluster.kubectl_ok(&["get", "pv", &volume, "-o", "jsonpath={.spec.local.path}"])?;
    assert!(
        std::path::Path::new(&path).join("kept").is_file(),
        "the pod wrote into {path}"
    );
    cluster.kubectl_ok(&["delete", "pod", &format!("{name}-writer")])?;
    Ok((volume, path))
}

#[test]
fn deleted_claims_are_reclaimed_by_their_volumes_policy() -> Result<()> {
    build_guests();
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;

    // Delete (the local-path class's policy): the volume and its directory go.
    let (volume, path) = claim_with_data(&cluster, dir.path(), "scratch")?;
    let policy = cluster.kubectl_ok(&[
        "get",
        "pv",
        &volume,
        "-o",
        "jsonpath={.spec.persistentVolumeReclaimPolicy}",
    ])?;
    assert_eq!(policy, "Delete");
    cluster.kubectl_ok(&["delete", "pvc", "scratch"])?;
    cluster.wait_for(Duration::from_secs(60), "the volume to be deleted", |c| {
        let out = c.kubectl(&["get", "pv", &volume])?;
        Ok(!out.status.success())
    })?;
    assert!(
        !std::path::Path::new(&path).exists(),
        "{path} was removed from the node"
    );

    // Retain: the volume stays, Released, with its data.
    let (volume, path) = claim_with_data(&cluster, dir.path(), "keeper")?;
    cluster.kubectl_ok(&[
        "patch",
        "pv",
        &volume,
        "-p",
        r#"{"spec":{"persistentVolumeReclaimPolicy":"Retain"}}"#,
    ])?;
    cluster.kubectl_ok(&["delete", "pvc", "keeper"])?;
    cluster.wait_field(&["pv", &volume], "{.status.phase}", "Released")?;
    let table = cluster.kubectl_ok(&["get", "pv", &volume])?;
    assert!(
        table.contains("Retain") && table.contains("Released"),
        "{table}"
    );
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&path).join("kept"))?,
        "data",
        "the data is kept"
    );
    Ok(())
}
