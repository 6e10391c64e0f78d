use super::*;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
    ObjectFieldSelector, PodSpec, Secret, SecretEnvSource, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::sources::Allocatable;
use crate::testing::FakeCluster;
use k8s_openapi::api::core::v1::Pod;

fn env_of(pairs: &[(&str, &str)]) -> Env {
    let mut env = Env::default();
    for (k, v) in pairs {
        env.set(k.to_string(), v.to_string());
    }
    env
}

#[test]
fn expansion_follows_kubernetes() {
    let env = env_of(&[("A", "1"), ("B", "two")]);
    assert_eq!(expand("$(A)-$(B)", &env), "1-two");
    assert_eq!(expand("$(MISSING)", &env), "$(MISSING)");
    assert_eq!(expand("$$(A)", &env), "$(A)");
    assert_eq!(expand("cost: $5 $", &env), "cost: $5 $");
    assert_eq!(expand("$(A", &env), "$(A");
    assert_eq!(expand("no refs", &env), "no refs");
}

#[test]
fn env_var_names() {
    assert!(is_env_var_name("A_b.c-1"));
    assert!(!is_env_var_name("1A"));
    assert!(!is_env_var_name("a b"));
    assert!(!is_env_var_name(""));
}

fn var(name: &str, value: Option<&str>, from: Option<EnvVarSource>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: value.map(str::to_string),
        value_from: from,
    }
}

fn cm_key(name: &str, key: &str, optional: bool) -> EnvVarSource {
    EnvVarSource {
        config_map_key_ref: Some(ConfigMapKeySelector {
            name: name.into(),
            key: key.into(),
            optional: Some(optional),
        }),
        ..EnvVarSource::default()
    }
}

fn cluster() -> std::sync::Arc<FakeCluster> {
    let (cluster, _changes) = FakeCluster::new();
    cluster.add_config_map(
        "shop",
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("settings".into()),
                ..ObjectMeta::default()
            },
            data: Some(
                [
                    ("COLOR".to_string(), "blue".to_string()),
                    ("bad key".to_string(), "x".to_string()),
                ]
                .into(),
            ),
            ..ConfigMap::default()
        },
    );
    cluster.add_secret(
        "shop",
        Secret {
            metadata: ObjectMeta {
                name: Some("creds".into()),
                ..ObjectMeta::default()
            },
            data: Some([("password".to_string(), ByteString(b"s3cret".to_vec()))].into()),
            ..Secret::default()
        },
    );
    cluster
}

fn pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec::default()),
        ..Pod::default()
    }
}

async fn resolve_in_shop(container: &Container) -> Result<Resolved, SourceError> {
    let cluster = cluster();
    let pod = pod();
    let claims = Default::default();
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
    resolve(container, &facts, &mut sources).await
}

#[tokio::test]
async fn env_from_sources_and_references() {
    let container = Container {
        name: "c".into(),
        command: Some(vec!["app".into(), "--color=$(COLOR)".into()]),
        args: Some(vec!["$(POD)/$(PASSWORD)".into()]),
        env_from: Some(vec![
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "settings".into(),
                    optional: None,
                }),
                ..EnvFromSource::default()
            },
            EnvFromSource {
                prefix: Some("DB_".into()),
                secret_ref: Some(SecretEnvSource {
                    name: "creds".into(),
                    optional: None,
                }),
                ..EnvFromSource::default()
            },
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "absent".into(),
                    optional: Some(true),
                }),
                ..EnvFromSource::default()
            },
        ]),
        env: Some(vec![
            var(
                "POD",
                None,
                Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".into(),
                        api_version: None,
                    }),
                    ..EnvVarSource::default()
                }),
            ),
            var(
                "PASSWORD",
                None,
                Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "creds".into(),
                        key: "password".into(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                }),
            ),
            var("GREETING", Some("$(COLOR) sky, $(NOPE)"), None),
            var("COLOR", None, Some(cm_key("settings", "COLOR", false))),
            var("SKIPPED", None, Some(cm_key("settings", "missing", true))),
        ]),
        ..Container::default()
    };
    let resolved = resolve_in_shop(&container).await.unwrap();
    let env: Vec<(&str, &str)> = resolved
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("COLOR", "blue"),
            ("DB_password", "s3cret"),
            ("POD", "web"),
            ("PASSWORD", "s3cret"),
            ("GREETING", "blue sky, $(NOPE)"),
        ]
    );
    assert_eq!(resolved.invalid_names, ["bad key"]);
    assert_eq!(resolved.args, ["app", "--color=blue", "web/s3cret"]);
}

#[tokio::test]
async fn missing_sources_fail_with_kubelets_messages() {
    let with_env = |from: EnvVarSource| Container {
        name: "c".into(),
        env: Some(vec![var("X", None, Some(from))]),
        ..Container::default()
    };
    let message = |result: Result<Resolved, SourceError>| result.unwrap_err().to_string();
    assert_eq!(
        message(resolve_in_shop(&with_env(cm_key("absent", "k", false))).await),
        "configmap \"absent\" not found"
    );
    assert_eq!(
        message(resolve_in_shop(&with_env(cm_key("settings", "k", false))).await),
        "couldn't find key k in ConfigMap shop/settings"
    );
    let secret = EnvVarSource {
        secret_key_ref: Some(SecretKeySelector {
            name: "nope".into(),
            key: "k".into(),
            optional: None,
        }),
        ..EnvVarSource::default()
    };
    assert_eq!(
        message(resolve_in_shop(&with_env(secret)).await),
        "secret \"nope\" not found"
    );
}
