//! The built-in kinds beyond pods under the real kubectl: apply, the columns
//! `kubectl get` prints, `scale`, validation errors, `get all`,
//! `apply --prune` and `api-resources`. There are no controllers here, so
//! only the API is exercised (a Deployment makes no pods).

mod common;

use std::path::PathBuf;

use anyhow::Result;
use common::Cluster;

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "file:///web.wasm", ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {app: web}}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, labels: {app: web}}
data: {greeting: hello, mode: fast}
---
apiVersion: v1
kind: Secret
metadata: {name: web-secret, labels: {app: web}}
stringData: {password: s3cret}
data: {user: YWRtaW4=}
---
apiVersion: batch/v1
kind: Job
metadata: {name: pi, labels: {app: web}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: "file:///pi.wasm"}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, labels: {app: web}}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: report, image: "file:///report.wasm"}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, labels: {app: web}}
spec:
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;

const STALE: &str = r#"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: stale, labels: {app: web}}
data: {old: "true"}
"#;

const MISMATCHED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: b}}
    spec:
      containers: [{name: c, image: "file:///c.wasm"}]
"#;

const CLUSTER_KINDS: &str = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local, annotations: {storageclass.kubernetes.io/is-default-class: "true"}}
provisioner: skiff.dev/local
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-pods}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects: [{kind: User, name: jane}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 5
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec: {podSelector: {}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: sandboxed}
handler: wasmtime
"#;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.path().join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The header line with its column separation collapsed, e.g. `NAME READY AGE`.
fn header(table: &str) -> String {
    let first = table.lines().next().unwrap_or_default();
    first.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The row whose first cell is `name`, cells separated by single spaces.
fn row(table: &str, name: &str) -> String {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn workloads_and_services_under_kubectl() -> Result<()> {
    let cluster = Cluster::start()?;
    let dir = tempfile::tempdir()?;
    let app = write(&dir, "app.yaml", APP)?;
    let with_stale = write(&dir, "with-stale.yaml", &format!("{APP}{STALE}"))?;
    let (app, with_stale) = (app.to_str().unwrap(), with_stale.to_str().unwrap());

    let applied = cluster.kubectl_ok(&["apply", "-f", with_stale])?;
    for line in [
        "deployment.apps/web created",
        "service/web created",
        "configmap/web-config created",
        "secret/web-secret created",
        "job.batch/pi created",
        "cronjob.batch/nightly created",
        "ingress.networking.k8s.io/web created",
        "configmap/stale created",
    ] {
        assert!(applied.contains(line), "{line}: {applied}");
    }
    // Server defaults must not make kubectl see a difference. (A Secret's
    // `stringData` is write-only, so kubectl always sends it again, as
    // against Kubernetes.)
    let again = cluster.kubectl_ok(&["apply", "-f", with_stale])?;
    for line in again.lines().filter(|l| !l.starts_with("secret/")) {
        assert!(line.ends_with(" unchanged"), "{again}");
    }
    assert_eq!(again.lines().count(), 8, "{again}");

    let deploy = cluster.kubectl_ok(&["get", "deploy"])?;
    assert_eq!(header(&deploy), "NAME READY UP-TO-DATE AVAILABLE AGE");
    // Controllers may be filling in the status: only the shape is fixed.
    let cells: Vec<String> = row(&deploy, "web").split(' ').map(String::from).collect();
    assert!(cells[1].ends_with("/1"), "{deploy}");
    assert!(
        cells[2].parse::<u32>().is_ok() && cells[3].parse::<u32>().is_ok(),
        "{deploy}"
    );
    let wide = cluster.kubectl_ok(&["get", "deploy", "-o", "wide"])?;
    assert_eq!(
        header(&wide),
        "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR"
    );
    assert!(
        row(&wide, "web").ends_with(" web file:///web.wasm app=web"),
        "{wide}"
    );

    let svc = cluster.kubectl_ok(&["get", "svc", "web"])?;
    assert_eq!(header(&svc), "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE");
    let cells: Vec<String> = row(&svc, "web").split(' ').map(String::from).collect();
    assert_eq!(cells[1], "ClusterIP");
    assert!(cells[2].starts_with("10."), "{svc}");
    assert_eq!(cells[3..5], ["<none>", "80/TCP"]);
    let svc_wide = cluster.kubectl_ok(&["get", "svc", "web", "-o", "wide"])?;
    assert!(header(&svc_wide).ends_with("AGE SELECTOR"), "{svc_wide}");
    let target = cluster.kubectl_ok(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.ports[0].protocol} {.spec.ports[0].targetPort} {.spec.sessionAffinity}",
    ])?;
    assert_eq!(target, "TCP 8080 None");

    let cm = cluster.kubectl_ok(&["get", "cm", "web-config"])?;
    assert_eq!(header(&cm), "NAME DATA AGE");
    assert!(row(&cm, "web-config").starts_with("web-config 2 "), "{cm}");
    let secret = cluster.kubectl_ok(&["get", "secret", "web-secret"])?;
    assert_eq!(header(&secret), "NAME TYPE DATA AGE");
    assert!(
        row(&secret, "web-secret").starts_with("web-secret Opaque 2 "),
        "{secret}"
    );
    let password = cluster.kubectl_ok(&[
        "get",
        "secret",
        "web-secret",
        "-o",
        "jsonpath={.data.password}",
    ])?;
    assert_eq!(password, "czNjcmV0", "stringData is stored as base64 data");

    let job = cluster.kubectl_ok(&["get", "job", "pi"])?;
    assert_eq!(header(&job), "NAME STATUS COMPLETIONS DURATION AGE");
    let cells: Vec<String> = row(&job, "pi").split(' ').map(String::from).collect();
    assert!(cells[2].ends_with("/1"), "{job}");
    let cj = cluster.kubectl_ok(&["get", "cj"])?;
    assert_eq!(
        header(&cj),
        "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE"
    );
    assert!(
        row(&cj, "nightly").starts_with("nightly 0 3 * * * <none> False 0 <none> "),
        "{cj}"
    );
    let ing = cluster.kubectl_ok(&["get", "ing"])?;
    assert_eq!(header(&ing), "NAME CLASS HOSTS ADDRESS PORTS AGE");
    assert!(
        row(&ing, "web").starts_with("web <none> web.example.com 80 "),
        "{ing}"
    );

    // kubectl scale: GET the deployment, PATCH its scale subresource.
    let scaled = cluster.kubectl_ok(&["scale", "deploy", "web", "--replicas=3"])?;
    assert!(scaled.contains("deployment.apps/web scaled"), "{scaled}");
    let replicas =
        cluster.kubectl_ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])?;
    assert_eq!(replicas, "3");
    let scale = cluster.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ])?;
    let scale: serde_json::Value = serde_json::from_str(&scale)?;
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");

    let broken = write(&dir, "broken.yaml", MISMATCHED)?;
    let err = cluster.kubectl_err(&["apply", "-f", broken.to_str().unwrap()])?;
    assert!(
        err.contains("spec.template.metadata.labels")
            && err.contains("`selector` does not match template `labels`"),
        "{err}"
    );

    let all = cluster.kubectl_ok(&["get", "all"])?;
    for name in [
        "service/web",
        "deployment.apps/web",
        "job.batch/pi",
        "cronjob.batch/nightly",
    ] {
        assert!(all.contains(name), "{name}: {all}");
    }
    assert!(!all.contains("configmap"), "{all}");

    // Pruning with an allowlist deletes only the unlisted ConfigMap.
    let pruned = cluster.kubectl_ok(&[
        "apply",
        "-f",
        app,
        "--prune",
        "-l",
        "app=web",
        "--prune-allowlist=core/v1/ConfigMap",
    ])?;
    assert!(pruned.contains("configmap/stale pruned"), "{pruned}");
    assert!(
        cluster
            .kubectl_err(&["get", "cm", "stale"])?
            .contains("NotFound")
    );
    cluster.kubectl_ok(&["get", "cm", "web-config"])?;
    // The default allowlist needs every kind it names in discovery.
    let default_prune = cluster.kubectl_ok(&["apply", "-f", app, "--prune", "-l", "app=web"])?;
    assert!(!default_prune.contains("pruned"), "{default_prune}");
    Ok(())
}

#[test]
fn every_kind_is_discoverable_and_served() -> Result<()> {
    let cluster = Cluster::start()?;
    let resources = cluster.kubectl_ok(&["api-resources", "--no-headers"])?;
    for (name, short, group_version, kind) in [
        ("services", "svc", "v1", "Service"),
        ("endpoints", "ep", "v1", "Endpoints"),
        ("configmaps", "cm", "v1", "ConfigMap"),
        ("secrets", "", "v1", "Secret"),
        ("serviceaccounts", "sa", "v1", "ServiceAccount"),
        ("persistentvolumes", "pv", "v1", "PersistentVolume"),
        (
            "persistentvolumeclaims",
            "pvc",
            "v1",
            "PersistentVolumeClaim",
        ),
        ("resourcequotas", "quota", "v1", "ResourceQuota"),
        ("limitranges", "limits", "v1", "LimitRange"),
        (
            "replicationcontrollers",
            "rc",
            "v1",
            "ReplicationController",
        ),
        ("deployments", "deploy", "apps/v1", "Deployment"),
        ("replicasets", "rs", "apps/v1", "ReplicaSet"),
        ("daemonsets", "ds", "apps/v1", "DaemonSet"),
        ("statefulsets", "sts", "apps/v1", "StatefulSet"),
        ("controllerrevisions", "", "apps/v1", "ControllerRevision"),
        ("jobs", "", "batch/v1", "Job"),
        ("cronjobs", "cj", "batch/v1", "CronJob"),
        ("ingresses", "ing", "networking.k8s.io/v1", "Ingress"),
        ("ingressclasses", "", "networking.k8s.io/v1", "IngressClass"),
        (
            "networkpolicies",
            "netpol",
            "networking.k8s.io/v1",
            "NetworkPolicy",
        ),
        ("endpointslices", "", "discovery.k8s.io/v1", "EndpointSlice"),
        ("leases", "", "coordination.k8s.io/v1", "Lease"),
        ("runtimeclasses", "", "node.k8s.io/v1", "RuntimeClass"),
        (
            "horizontalpodautoscalers",
            "hpa",
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
        ),
        (
            "poddisruptionbudgets",
            "pdb",
            "policy/v1",
            "PodDisruptionBudget",
        ),
        ("roles", "", "rbac.authorization.k8s.io/v1", "Role"),
        (
            "clusterroles",
            "",
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
        ),
        (
            "rolebindings",
            "",
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
        ),
        (
            "clusterrolebindings",
            "",
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
        ),
        ("storageclasses", "sc", "storage.k8s.io/v1", "StorageClass"),
    ] {
        let found = resources.lines().any(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            cells.first() == Some(&name)
                && cells.contains(&group_version)
                && cells.last() == Some(&kind)
                && (short.is_empty() || cells.get(1) == Some(&short))
        });
        assert!(
            found,
            "{name} ({short}, {group_version}, {kind}): {resources}"
        );
    }

    let dir = tempfile::tempdir()?;
    let kinds = write(&dir, "kinds.yaml", CLUSTER_KINDS)?;
    cluster.kubectl_ok(&["apply", "-f", kinds.to_str().unwrap()])?;
    let sc = cluster.kubectl_ok(&["get", "sc"])?;
    assert_eq!(
        header(&sc),
        "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE"
    );
    assert!(
        row(&sc, "local").starts_with("local (default) skiff.dev/local Delete Immediate false "),
        "{sc}"
    );
    let binding = cluster.kubectl_ok(&["get", "rolebinding", "-o", "wide"])?;
    assert_eq!(
        header(&binding),
        "NAME ROLE AGE USERS GROUPS SERVICEACCOUNTS"
    );
    assert!(row(&binding, "read-pods").starts_with("read-pods Role/pod-reader "));
    let pdb = cluster.kubectl_ok(&["get", "pdb"])?;
    assert_eq!(
        header(&pdb),
        "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE"
    );
    assert!(row(&pdb, "web").starts_with("web 1 N/A 0 "), "{pdb}");
    let hpa = cluster.kubectl_ok(&["get", "hpa"])?;
    assert_eq!(
        header(&hpa),
        "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE"
    );
    assert!(
        row(&hpa, "web").starts_with("web Deployment/web cpu: <unknown>/80% 1 5 0 "),
        "{hpa}"
    );
    let netpol = cluster.kubectl_ok(&["get", "netpol"])?;
    assert_eq!(header(&netpol), "NAME POD-SELECTOR AGE");
    let pvc = cluster.kubectl_ok(&["get", "pvc"])?;
    assert_eq!(
        header(&pvc),
        "NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS VOLUMEATTRIBUTESCLASS AGE"
    );
    assert!(row(&pvc, "data").starts_with("data Pending "), "{pvc}");
    let runtime = cluster.kubectl_ok(&["get", "runtimeclass"])?;
    // `wasm` and `oci` are the node's own classes, created at start.
    assert!(
        row(&runtime, "sandboxed").starts_with("sandboxed wasmtime "),
        "{runtime}"
    );
    assert!(row(&runtime, "wasm").starts_with("wasm wasm "), "{runtime}");

    // A bad role is rejected with its field.
    let bad = write(
        &dir,
        "bad-role.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: bad}\n\
         rules: [{apiGroups: [\"\"], resources: [pods]}]\n",
    )?;
    let err = cluster.kubectl_err(&["apply", "-f", bad.to_str().unwrap()])?;
    assert!(err.contains("rules[0].verbs: Required value"), "{err}");
    Ok(())
}
