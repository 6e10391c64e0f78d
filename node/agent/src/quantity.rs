//! Kubernetes resource quantities (`500m`, `64Mi`, `1.5G`, `2e3`) as plain numbers:
//! enough for limits and the downward API, not a full `resource.Quantity`.

/// The value of a quantity in base units (cores, bytes); `None` when it does not parse.
pub fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => 10f64.powi(exponent[1..].parse().ok()?),
        _ => return None,
    };
    let value = number * factor;
    value.is_finite().then_some(value)
}

/// A byte count (memory, storage), rounded up; `None` when it does not parse or is negative.
pub fn bytes(text: &str) -> Option<u64> {
    let value = parse(text)?;
    // A float holds any realistic memory size exactly enough; `as` saturates.
    (value >= 0.0).then(|| value.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(bytes("64Mi"), Some(64 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1.5Ki"), Some(1536));
        assert_eq!(bytes("2e3"), Some(2000));
        assert_eq!(bytes("129M"), Some(129_000_000));
        assert_eq!(parse("12Q"), None);
        assert_eq!(parse(""), None);
        assert_eq!(bytes("-1"), None);
    }
}
