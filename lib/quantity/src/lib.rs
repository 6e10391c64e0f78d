//! Kubernetes resource quantities: the `500m`, `64Mi`, `1.5G` and `2e3` of
//! `resources.limits`, `ResourceQuota.spec.hard`, node capacity and the
//! downward API's divisors.
//!
//! One parser for every crate that reads them (the scheduler, the API
//! server's quota admission, the node agent, the OCI driver), following
//! `k8s.io/apimachinery/pkg/api/resource`'s grammar:
//!
//! ```text
//! quantity        ::= signedNumber suffix
//! signedNumber    ::= number | sign number        sign ::= "+" | "-"
//! number          ::= digits | digits "." digits | digits "." | "." digits
//! suffix          ::= binarySI | decimalSI | decimalExponent
//! binarySI        ::= Ki | Mi | Gi | Ti | Pi | Ei          (powers of 1024)
//! decimalSI       ::= n | u | m | "" | k | M | G | T | P | E
//! decimalExponent ::= "e" signedInteger | "E" signedInteger
//! ```
//!
//! The value is kept exactly, in nano-units, rounded away from zero when the
//! text is finer than that (as Kubernetes rounds up to `1n`). Reading it in a
//! coarser unit rounds away from zero too, as `Quantity.Value()` and
//! `MilliValue()` do: `100m` of memory is 1 byte, `0.1` CPU is 100 milli-CPUs.
//! Values beyond what the representation holds (about 1.7e29) saturate: an
//! absurd quantity is simply "a lot".
//!
//! ```
//! use skiff_quantity::Quantity;
//!
//! let cpu: Quantity = "250m".parse().unwrap();
//! assert_eq!(cpu.milli_value(), 250);
//! assert_eq!(cpu.value(), 1); // rounded up
//! let memory: Quantity = "1.5Gi".parse().unwrap();
//! assert_eq!(memory.value(), 1_610_612_736);
//! assert!("12Q".parse::<Quantity>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

/// Nano-units per unit.
const NANO: i128 = 1_000_000_000;

/// Why a text is not a quantity. The message says what part is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity {0:?} is empty")]
    Empty(String),
    #[error("quantity {0:?} does not start with a number")]
    Number(String),
    #[error(
        "quantity {text:?} has an unknown suffix {suffix:?} (use one of Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or an exponent such as e3)"
    )]
    Suffix { text: String, suffix: String },
}

/// A parsed quantity: its exact value in nano-units (saturated at the ends
/// of `i128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    nanos: i128,
}

/// Parses a quantity (the same as `text.parse::<Quantity>()`).
pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
    text.parse()
}

/// `text` in `10^exponent` units (`0`: whole units, `-3`: milli-units),
/// rounded away from zero; 0 when it is not a quantity. For sums where a
/// malformed entry counts for nothing (quota usage, scheduling totals).
pub fn scaled_or_zero(text: &str, exponent: i32) -> i64 {
    parse(text).map_or(0, |q| q.scaled_value(exponent))
}

/// What a suffix multiplies the number by: `10^decimal × 1024^binary`.
struct Scale {
    decimal: i64,
    binary: u32,
}

fn suffix_scale(suffix: &str) -> Option<Scale> {
    let decimal = |decimal| Some(Scale { decimal, binary: 0 });
    let binary = |binary| Some(Scale { decimal: 0, binary });
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Anything past ±10^6 is far beyond saturation or below a nano.
            let value: i64 = exponent.parse().unwrap_or(if exponent.starts_with('-') {
                -1_000_000
            } else {
                1_000_000
            });
            decimal(value.clamp(-1_000_000, 1_000_000))
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Quantity, QuantityError> {
        if text.is_empty() {
            return Err(QuantityError::Empty(text.to_string()));
        }
        let (negative, unsigned) = match text.as_bytes()[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let number_end = unsigned
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(QuantityError::Number(text.to_string()));
        }
        let scale = suffix_scale(suffix).ok_or_else(|| QuantityError::Suffix {
            text: text.to_string(),
            suffix: suffix.to_string(),
        })?;
        // The digits as one integer, and where the decimal point sits.
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        let point = i64::try_from(fraction.len()).unwrap_or(i64::MAX);
        // value = digits × 10^(decimal - point) × 1024^binary; in nanos, 10^(… + 9).
        let exponent = scale.decimal.saturating_sub(point).saturating_add(9);
        let nanos = magnitude(digits, exponent, scale.binary);
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
        })
    }
}

/// `digits × 10^exponent × 1024^binary`, rounded away from zero when
/// `exponent` is negative, saturating at `i128::MAX`. `digits` is a decimal
/// integer without leading zeros (empty for zero). Exact for any length:
/// the product is formed digit by digit, then the dropped digits only decide
/// whether to round up.
fn magnitude(digits: &str, exponent: i64, binary: u32) -> i128 {
    let product = times(digits, 1024u128.pow(binary));
    let product = product.trim_start_matches('0');
    if product.is_empty() {
        return 0;
    }
    if exponent >= 0 {
        let factor = u32::try_from(exponent)
            .ok()
            .and_then(|e| 10i128.checked_pow(e));
        return match (product.parse::<i128>(), factor) {
            (Ok(mantissa), Some(factor)) => mantissa.checked_mul(factor).unwrap_or(i128::MAX),
            _ => i128::MAX,
        };
    }
    let dropped = usize::try_from(exponent.unsigned_abs()).unwrap_or(usize::MAX);
    let (kept, rest) = product.split_at(product.len().saturating_sub(dropped));
    let whole = if kept.is_empty() {
        0
    } else {
        kept.parse::<i128>().unwrap_or(i128::MAX)
    };
    let round_up = rest.bytes().any(|b| b != b'0');
    whole.saturating_add(i128::from(round_up))
}

/// The decimal digits of `digits × factor`.
fn times(digits: &str, factor: u128) -> String {
    let mut out = Vec::with_capacity(digits.len() + 20);
    let mut carry: u128 = 0;
    for digit in digits.bytes().rev() {
        let value = u128::from(digit - b'0') * factor + carry;
        out.push(b'0' + (value % 10) as u8);
        carry = value / 10;
    }
    while carry > 0 {
        out.push(b'0' + (carry % 10) as u8);
        carry /= 10;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

impl Quantity {
    /// The value in `10^exponent` units, rounded away from zero and saturated
    /// to `i64` (`Quantity.ScaledValue`): `0` for whole units, `-3` for
    /// milli-units, `-9` for nano-units.
    pub fn scaled_value(&self, exponent: i32) -> i64 {
        let nanos = self.nanos;
        let shift = i64::from(exponent) + 9;
        let value = if shift <= 0 {
            let factor = u32::try_from(-shift)
                .ok()
                .and_then(|e| 10i128.checked_pow(e));
            match factor {
                Some(factor) => nanos.saturating_mul(factor),
                None if nanos == 0 => 0,
                None if nanos > 0 => i128::MAX,
                None => i128::MIN,
            }
        } else {
            let divisor = u32::try_from(shift)
                .ok()
                .and_then(|e| 10i128.checked_pow(e));
            match divisor {
                Some(divisor) => {
                    let quotient = nanos / divisor;
                    let away = nanos % divisor != 0;
                    match (away, nanos > 0) {
                        (false, _) => quotient,
                        (true, true) => quotient + 1,
                        (true, false) => quotient - 1,
                    }
                }
                None => nanos.signum(),
            }
        };
        i64::try_from(value).unwrap_or(if value > 0 { i64::MAX } else { i64::MIN })
    }

    /// Whole units (cores, bytes, counts), rounded away from zero (`Value()`).
    pub fn value(&self) -> i64 {
        self.scaled_value(0)
    }

    /// Milli-units (milli-CPUs), rounded away from zero (`MilliValue()`).
    pub fn milli_value(&self) -> i64 {
        self.scaled_value(-3)
    }

    /// Nano-units (the engine's nano-CPUs).
    pub fn nano_value(&self) -> i64 {
        self.scaled_value(-9)
    }

    /// The value as a float, for ratios and fractional cores (nano-exact up
    /// to 2^53 nano-units).
    pub fn as_f64(&self) -> f64 {
        // i128 → f64 rounds to the nearest representable value.
        self.nanos as f64 / NANO as f64
    }

    /// Below zero (Kubernetes validation refuses negative resources).
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The exact value in nano-units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }
}

impl fmt::Display for Quantity {
    /// The value in base units with as many decimals as it needs (`0.25`,
    /// `1536`), not Kubernetes' canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.nanos < 0 { "-" } else { "" };
        let magnitude = self.nanos.unsigned_abs();
        let nano = NANO.unsigned_abs();
        let (whole, fraction) = (magnitude / nano, magnitude % nano);
        if fraction == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let fraction = format!("{fraction:09}");
            write!(f, "{sign}{whole}.{}", fraction.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests;
