use super::*;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
    EmptyDirVolumeSource, ObjectFieldSelector, Pod, PodSpec, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::os::unix::fs::PermissionsExt;

use crate::sources::Allocatable;
use crate::testing::FakeCluster;

fn pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec::default()),
        ..Pod::default()
    }
}

fn volumes() -> Vec<Volume> {
    vec![
        Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("10".into())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "settings".into(),
                items: Some(vec![key_to_path("color", "nested/color.txt")]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "info".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: "labels".into(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.labels".into(),
                        api_version: None,
                    }),
                    ..DownwardAPIVolumeFile::default()
                }]),
                ..DownwardAPIVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

fn key_to_path(key: &str, path: &str) -> k8s_openapi::api::core::v1::KeyToPath {
    k8s_openapi::api::core::v1::KeyToPath {
        key: key.into(),
        path: path.into(),
        mode: Some(0o600),
    }
}

#[tokio::test]
async fn volumes_become_directories_and_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _changes) = FakeCluster::new();
    let map = |color: &str| ConfigMap {
        metadata: ObjectMeta {
            name: Some("settings".into()),
            ..ObjectMeta::default()
        },
        data: Some([("color".to_string(), color.to_string())].into()),
        ..ConfigMap::default()
    };
    cluster.add_config_map("shop", map("blue"));
    let pod = pod();
    let claims = HashMap::new();
    let facts = PodFacts {
        pod: &pod,
        host_ip: "127.0.0.1",
        pod_ip: "127.0.0.1",
        allocatable: Allocatable {
            cpu_cores: 1.0,
            memory_bytes: 1e9,
        },
        claims: &claims,
    };
    let volumes_of_pod = PodVolumes::new(dir.path(), "uid-1");
    let mut sources = Sources::new(cluster.as_ref(), "shop");
    let dirs = volumes_of_pod
        .set_up(&volumes(), &facts, &mut sources)
        .await
        .unwrap();
    let config = &dirs["config"];
    assert!(config.read_only);
    let color = config.host_path.join("nested/color.txt");
    assert_eq!(std::fs::read_to_string(&color).unwrap(), "blue");
    assert_eq!(
        std::fs::metadata(&color).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(dirs["info"].host_path.join("labels")).unwrap(),
        "app=\"web\""
    );
    let scratch = &dirs["scratch"];
    assert!(!scratch.read_only);
    std::fs::write(scratch.host_path.join("kept"), "0123456789abc").unwrap();

    // A second start refreshes the projected files and keeps the emptyDir.
    cluster.add_config_map("shop", map("green"));
    let mut sources = Sources::new(cluster.as_ref(), "shop");
    let dirs = volumes_of_pod
        .set_up(&volumes(), &facts, &mut sources)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&color).unwrap(), "green");
    assert!(dirs["scratch"].host_path.join("kept").exists());
    assert_eq!(
        volumes_of_pod.over_limit(&volumes()).await,
        [("scratch".to_string(), 13, 10)]
    );

    let container = Container {
        name: "c".into(),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "scratch".into(),
                mount_path: "/data".into(),
                sub_path: Some("sub".into()),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "config".into(),
                mount_path: "/etc/app".into(),
                ..VolumeMount::default()
            },
        ]),
        working_dir: Some("/data/work".into()),
        ..Container::default()
    };
    let specs = mounts(&container, &dirs, false).unwrap();
    assert_eq!(specs[0].host_path, dirs["scratch"].host_path.join("sub"));
    assert!(specs[0].host_path.is_dir());
    assert!(!specs[0].read_only);
    assert!(specs[1].read_only);
    assert_eq!(
        working_dir(&container, &specs, false).unwrap().as_deref(),
        Some("/data/work")
    );
    let elsewhere = Container {
        working_dir: Some("/tmp".into()),
        ..container.clone()
    };
    assert!(matches!(
        working_dir(&elsewhere, &specs, false),
        Err(VolumeError::WorkingDir(_))
    ));
    // An image with its own root filesystem: anywhere absolute, created by the runtime.
    assert_eq!(
        working_dir(&elsewhere, &specs, true).unwrap().as_deref(),
        Some("/tmp")
    );
    let relative = Container {
        working_dir: Some("work".into()),
        ..container.clone()
    };
    assert!(matches!(
        working_dir(&relative, &specs, true),
        Err(VolumeError::WorkingDirRelative(_))
    ));

    // A subPath naming a file: mounted as the file for an OCI image, refused for Wasm.
    std::fs::write(dirs["scratch"].host_path.join("app.conf"), "x=1").unwrap();
    let file_mount = Container {
        volume_mounts: Some(vec![VolumeMount {
            name: "scratch".into(),
            mount_path: "/etc/app.conf".into(),
            sub_path: Some("app.conf".into()),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let specs = mounts(&file_mount, &dirs, true).unwrap();
    assert_eq!(
        specs[0].host_path,
        dirs["scratch"].host_path.join("app.conf")
    );
    assert!(matches!(
        mounts(&file_mount, &dirs, false),
        Err(VolumeError::BadMount { .. })
    ));

    volumes_of_pod.remove().await;
    assert!(!dir.path().join("volumes/uid-1").exists());
}

#[tokio::test]
async fn a_missing_config_map_fails_the_mount() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, _changes) = FakeCluster::new();
    let pod = pod();
    let claims = HashMap::new();
    let facts = PodFacts {
        pod: &pod,
        host_ip: "127.0.0.1",
        pod_ip: "127.0.0.1",
        allocatable: Allocatable {
            cpu_cores: 1.0,
            memory_bytes: 1e9,
        },
        claims: &claims,
    };
    let mut sources = Sources::new(cluster.as_ref(), "shop");
    let error = PodVolumes::new(dir.path(), "u")
        .set_up(&volumes()[1..2], &facts, &mut sources)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "MountVolume.SetUp failed for volume \"config\" : configmap \"settings\" not found"
    );
}

#[test]
fn paths_must_stay_inside() {
    assert!(is_relative_inside("a/b"));
    assert!(!is_relative_inside("/a"));
    assert!(!is_relative_inside("a/../../b"));
    assert!(!is_relative_inside(""));
}
