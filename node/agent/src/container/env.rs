//! A container's environment and argv as kubelet builds them: `envFrom` sources
//! first, then `env` in order (values with `$(VAR)` references expanded against
//! what is defined so far, `valueFrom` read from ConfigMaps, Secrets and the
//! downward API), and finally `$(VAR)` expanded in `command` and `args`.

use k8s_openapi::api::core::v1::Container;

use super::argv;
use crate::sources::{PodFacts, SourceError, Sources, container_resource, pod_field};

/// What a container process is started with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `envFrom` keys skipped because they are not valid variable names.
    pub invalid_names: Vec<String>,
}

/// Builds the container's env and argv. A missing ConfigMap, Secret or key that
/// is not `optional` fails the whole start (`CreateContainerConfigError`).
pub async fn resolve(
    container: &Container,
    facts: &PodFacts<'_>,
    sources: &mut Sources<'_>,
) -> Result<Resolved, SourceError> {
    let mut env = Env::default();
    let mut invalid_names = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let entries = if let Some(source) = &from.config_map_ref {
            match sources.config_map(&source.name).await? {
                Some(map) => map.data.clone().unwrap_or_default().into_iter().collect(),
                None if source.optional == Some(true) => continue,
                None => return Err(SourceError::ConfigMapNotFound(source.name.clone())),
            }
        } else if let Some(source) = &from.secret_ref {
            match sources.secret_entries(&source.name).await? {
                Some(entries) => entries
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect(),
                None if source.optional == Some(true) => continue,
                None => return Err(SourceError::SecretNotFound(source.name.clone())),
            }
        } else {
            Vec::new()
        };
        for (key, value) in entries {
            let name = format!("{prefix}{key}");
            if is_env_var_name(&name) {
                env.set(name, value);
            } else {
                invalid_names.push(name);
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or_default(), &env),
            Some(from) => {
                if let Some(selector) = &from.config_map_key_ref {
                    let optional = selector.optional == Some(true);
                    match sources.config_map(&selector.name).await? {
                        Some(map) => match map.data.as_ref().and_then(|d| d.get(&selector.key)) {
                            Some(value) => value.clone(),
                            None if optional => continue,
                            None => {
                                return Err(sources.key_not_found(
                                    "ConfigMap",
                                    &selector.name,
                                    &selector.key,
                                ));
                            }
                        },
                        None if optional => continue,
                        None => return Err(SourceError::ConfigMapNotFound(selector.name.clone())),
                    }
                } else if let Some(selector) = &from.secret_key_ref {
                    let optional = selector.optional == Some(true);
                    match sources.secret(&selector.name).await? {
                        Some(secret) => {
                            match secret.data.as_ref().and_then(|d| d.get(&selector.key)) {
                                Some(value) => String::from_utf8_lossy(&value.0).into_owned(),
                                None if optional => continue,
                                None => {
                                    return Err(sources.key_not_found(
                                        "Secret",
                                        &selector.name,
                                        &selector.key,
                                    ));
                                }
                            }
                        }
                        None if optional => continue,
                        None => return Err(SourceError::SecretNotFound(selector.name.clone())),
                    }
                } else if let Some(selector) = &from.field_ref {
                    pod_field(facts, &selector.field_path)?
                } else if let Some(selector) = &from.resource_field_ref {
                    container_resource(facts.pod, container, selector, facts.allocatable)?
                } else {
                    String::new()
                }
            }
        };
        env.set(var.name.clone(), value);
    }
    let args = argv(container)
        .iter()
        .map(|arg| expand(arg, &env))
        .collect();
    Ok(Resolved {
        args,
        env: env.vars,
        invalid_names,
    })
}

/// Variables in the order first defined; a later definition replaces the value.
#[derive(Default)]
struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    fn set(&mut self, name: String, value: String) {
        match self.vars.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Kubernetes' `$(VAR)` syntax: a defined variable is replaced by its value, an
/// undefined one is left as written, `$$` is an escaped `$`, and any other `$`
/// stays as it is.
fn expand(input: &str, env: &Env) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Kubernetes' rule for env var names (`IsEnvVarName`): letters, digits, `_`,
/// `-`, `.`, not starting with a digit.
fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;
