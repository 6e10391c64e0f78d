//! `resources.limits` as engine limits.

use k8s_openapi::api::core::v1::Container;

/// The engine's memory (bytes) and CPU (billionths of a CPU) limits.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
}

/// Parses a Kubernetes quantity into a number of `unit`s (1 for bytes,
/// 1e9 for nano-CPUs), rounding up.
fn quantity(text: &str, scale: f64) -> Option<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        _ => return None,
    };
    let value = (number * factor * scale).ceil();
    (value.is_finite() && value > 0.0 && value < i64::MAX as f64).then_some(value as i64)
}

/// The container's `resources.limits.memory` and `.cpu`.
pub fn limits(container: &Container) -> Result<Limits, String> {
    let mut limits = Limits::default();
    let Some(given) = container.resources.as_ref().and_then(|r| r.limits.as_ref()) else {
        return Ok(limits);
    };
    if let Some(memory) = given.get("memory") {
        limits.memory =
            Some(quantity(&memory.0, 1.0).ok_or_else(|| {
                format!("resources.limits.memory {:?} is not a quantity", memory.0)
            })?);
    }
    if let Some(cpu) = given.get("cpu") {
        limits.nano_cpus = Some(
            quantity(&cpu.0, 1e9)
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
