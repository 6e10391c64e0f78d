//! `resources.limits` as engine limits.

use k8s_openapi::api::core::v1::Container;

/// The engine's memory (bytes) and CPU (billionths of a CPU) limits.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
}

/// A limit in `10^exponent` units (bytes: `0`, nano-CPUs: `-9`), rounded up;
/// `None` unless it is a positive quantity.
fn quantity(text: &str, exponent: i32) -> Option<i64> {
    let value = skiff_quantity::parse(text).ok()?.scaled_value(exponent);
    (value > 0 && value < i64::MAX).then_some(value)
}

/// The container's `resources.limits.memory` and `.cpu`.
pub fn limits(container: &Container) -> Result<Limits, String> {
    let mut limits = Limits::default();
    let Some(given) = container.resources.as_ref().and_then(|r| r.limits.as_ref()) else {
        return Ok(limits);
    };
    if let Some(memory) = given.get("memory") {
        limits.memory =
            Some(quantity(&memory.0, 0).ok_or_else(|| {
                format!("resources.limits.memory {:?} is not a quantity", memory.0)
            })?);
    }
    if let Some(cpu) = given.get("cpu") {
        limits.nano_cpus = Some(
            quantity(&cpu.0, -9)
                .ok_or_else(|| format!("resources.limits.cpu {:?} is not a quantity", cpu.0))?,
        );
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn with(memory: &str, cpu: &str) -> Container {
        Container {
            resources: Some(ResourceRequirements {
                limits: Some(
                    [("memory", memory), ("cpu", cpu)]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    }

    #[test]
    fn memory_and_cpu_limits_become_engine_units() {
        let limits = limits(&with("16Mi", "500m")).unwrap();
        assert_eq!(limits.memory, Some(16 * 1024 * 1024));
        assert_eq!(limits.nano_cpus, Some(500_000_000));
        let limits = super::limits(&with("1G", "2")).unwrap();
        assert_eq!(limits.memory, Some(1_000_000_000));
        assert_eq!(limits.nano_cpus, Some(2_000_000_000));
        assert_eq!(
            super::limits(&Container::default()).unwrap(),
            Limits::default()
        );
        assert!(super::limits(&with("lots", "1")).is_err());
    }
}
