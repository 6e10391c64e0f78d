//! The pod's volumes and `securityContext` as engine settings: bind mounts,
//! the user and groups a container runs as, a read-only root filesystem and
//! capabilities.
//!
//! `privileged: true` is refused: a privileged container owns the node, and a
//! Skiff node is shared by tenants. The container fails to start with a message
//! naming the field.

use std::path::Path;

use bollard::models::{Mount, MountType};
use k8s_openapi::api::core::v1::Container;
use skiff_agent::driver::{MountSpec, PodSandbox};

/// What the container's and the pod's `securityContext` ask of the engine.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Security {
    /// `uid[:gid]`, or `None` for the image's own user.
    pub user: Option<String>,
    pub group_add: Vec<String>,
    pub readonly_rootfs: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `no-new-privileges` when `allowPrivilegeEscalation: false`.
    pub security_opt: Vec<String>,
}

/// Why a container's `securityContext` cannot be honoured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecurityError {
    #[error(
        "securityContext.privileged: privileged containers are not allowed on this node (it is shared by tenants)"
    )]
    Privileged,
    #[error(
        "securityContext.runAsNonRoot: container has runAsNonRoot and image will run as root (set runAsUser to a non-zero uid)"
    )]
    RunsAsRoot,
}

/// The engine settings for `container` of `pod`; `image_user` is the user
/// the image's config names (empty for root), for `runAsNonRoot`.
pub fn security(
    container: &Container,
    pod: &PodSandbox,
    image_user: &str,
) -> Result<Security, SecurityError> {
    let own = container.security_context.clone().unwrap_or_default();
    if own.privileged == Some(true) {
        return Err(SecurityError::Privileged);
    }
    let uid = own.run_as_user.or(pod.run_as_user);
    let gid = own.run_as_group.or(pod.run_as_group);
    if own.run_as_non_root == Some(true) {
        let root = match uid {
            Some(uid) => uid == 0,
            None => {
                let name = image_user.split(':').next().unwrap_or("");
                name.is_empty() || name == "root" || name == "0"
            }
        };
        if root {
            return Err(SecurityError::RunsAsRoot);
        }
    }
    let user = match (uid, gid) {
        (Some(uid), Some(gid)) => Some(format!("{uid}:{gid}")),
        (Some(uid), None) => Some(uid.to_string()),
        // A group alone keeps the image's user: its uid (or name) with the group.
        (None, Some(gid)) => {
            let name = image_user.split(':').next().unwrap_or("");
            let name = if name.is_empty() { "0" } else { name };
            Some(format!("{name}:{gid}"))
        }
        (None, None) => None,
    };
    let capabilities = own.capabilities.unwrap_or_default();
    Ok(Security {
        user,
        group_add: pod.supplemental_groups.iter().map(i64::to_string).collect(),
        readonly_rootfs: own.read_only_root_filesystem == Some(true),
        cap_add: capabilities.add.unwrap_or_default(),
        cap_drop: capabilities.drop.unwrap_or_default(),
        security_opt: if own.allow_privilege_escalation == Some(false) {
            vec!["no-new-privileges".to_string()]
        } else {
            Vec::new()
        },
    })
}

/// The container's volumeMounts as bind mounts of the agent's volume
/// directories (the very directories the Wasm driver preopens), so an emptyDir
/// is shared by the pod's containers and ConfigMap/Secret files appear.
pub fn bind_mounts(mounts: &[MountSpec]) -> Vec<Mount> {
    mounts
        .iter()
        .map(|mount| Mount {
            target: Some(mount.container_path.clone()),
            source: Some(absolute(&mount.host_path)),
            typ: Some(MountType::BIND),
            read_only: Some(mount.read_only),
            ..Mount::default()
        })
        .collect()
}

/// The engine resolves bind sources from its own working directory: always
/// hand it an absolute path.
fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, SecurityContext};

    fn container(context: SecurityContext) -> Container {
        Container {
            name: "c".into(),
            security_context: Some(context),
            ..Container::default()
        }
    }

    #[test]
    fn users_groups_and_capabilities_map_to_the_engine() {
        let pod = PodSandbox {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: vec![4000],
            ..PodSandbox::default()
        };
        let c = container(SecurityContext {
            run_as_user: Some(2000),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..SecurityContext::default()
        });
        let got = security(&c, &pod, "").unwrap();
        assert_eq!(got.user.as_deref(), Some("2000:3000"));
        assert_eq!(got.group_add, ["4000"]);
        assert!(got.readonly_rootfs);
        assert_eq!(got.cap_add, ["NET_ADMIN"]);
        assert_eq!(got.cap_drop, ["ALL"]);
        assert_eq!(got.security_opt, ["no-new-privileges"]);

        let plain = security(&Container::default(), &PodSandbox::default(), "").unwrap();
        assert_eq!(plain, Security::default());
        let group_only = PodSandbox {
            run_as_group: Some(5),
            ..PodSandbox::default()
        };
        assert_eq!(
            security(&Container::default(), &group_only, "www")
                .unwrap()
                .user
                .as_deref(),
            Some("www:5")
        );
    }

    #[test]
    fn privileged_and_root_under_run_as_non_root_are_refused() {
        let privileged = container(SecurityContext {
            privileged: Some(true),
            ..SecurityContext::default()
        });
        let err = security(&privileged, &PodSandbox::default(), "").unwrap_err();
        assert_eq!(err, SecurityError::Privileged);
        assert!(err.to_string().contains("securityContext.privileged"));

        let non_root = container(SecurityContext {
            run_as_non_root: Some(true),
            ..SecurityContext::default()
        });
        assert_eq!(
            security(&non_root, &PodSandbox::default(), "root"),
            Err(SecurityError::RunsAsRoot)
        );
        assert!(security(&non_root, &PodSandbox::default(), "nobody").is_ok());
        let pod = PodSandbox {
            run_as_user: Some(1000),
            ..PodSandbox::default()
        };
        assert!(security(&non_root, &pod, "").is_ok());
    }

    #[test]
    fn volume_mounts_become_bind_mounts() {
        let mounts = bind_mounts(&[MountSpec {
            host_path: "/data/volumes/u/cache".into(),
            container_path: "/cache".into(),
            read_only: true,
        }]);
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].source.as_deref(), Some("/data/volumes/u/cache"));
        assert_eq!(mounts[0].target.as_deref(), Some("/cache"));
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].read_only, Some(true));
    }
}
