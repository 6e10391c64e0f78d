//! How a Deployment asks the gateway to scale it, read from its annotations,
//! and the pure decisions made from what the gateway measured.
//!
//! | annotation | value | meaning |
//! |---|---|---|
//! | `skiff.dev/scale-to-zero-after` | duration (`30s`, `5m`, `1h`, `90`) | scale to 0 replicas after this long without a request |
//! | `skiff.dev/scale-to-zero-queue` | count, default 100 | requests held at most while no endpoint is ready; more get 503 |
//! | `skiff.dev/scale-to-zero-timeout` | duration, default 30s | how long a held request waits for a ready endpoint; then 503 |
//! | `skiff.dev/target-concurrency` | count > 0 | in-flight requests per pod the gateway scales for |
//! | `skiff.dev/max-replicas` | count > 0, default 10 | the most replicas the concurrency scaler asks for |

use std::collections::BTreeMap;
use std::time::Duration;

pub const SCALE_TO_ZERO_AFTER: &str = "skiff.dev/scale-to-zero-after";
pub const SCALE_TO_ZERO_QUEUE: &str = "skiff.dev/scale-to-zero-queue";
pub const SCALE_TO_ZERO_TIMEOUT: &str = "skiff.dev/scale-to-zero-timeout";
pub const TARGET_CONCURRENCY: &str = "skiff.dev/target-concurrency";
pub const MAX_REPLICAS: &str = "skiff.dev/max-replicas";

const DEFAULT_QUEUE: usize = 100;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_REPLICAS: i32 = 10;

/// What a Deployment's annotations ask of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePolicy {
    /// Scale to zero after this idle time (`None`: never).
    pub idle_after: Option<Duration>,
    /// Requests held at most while the Deployment has no ready endpoint.
    pub queue_limit: usize,
    /// How long one held request waits.
    pub hold_timeout: Duration,
    /// In-flight requests per pod to scale for (`None`: no concurrency scaling).
    pub target_concurrency: Option<u32>,
    pub max_replicas: i32,
}

/// An annotation that cannot be read: which one, its value and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation}: {value:?} is not {expected}")]
pub struct BadAnnotation {
    pub annotation: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl ScalePolicy {
    /// The policy in `annotations`; `Ok(None)` when none of ours is set.
    pub fn from_annotations(
        annotations: Option<&BTreeMap<String, String>>,
    ) -> Result<Option<ScalePolicy>, BadAnnotation> {
        let Some(annotations) = annotations else {
            return Ok(None);
        };
        let idle_after = annotations
            .get(SCALE_TO_ZERO_AFTER)
            .map(|v| duration(SCALE_TO_ZERO_AFTER, v))
            .transpose()?;
        let target_concurrency = annotations
            .get(TARGET_CONCURRENCY)
            .map(|v| positive(TARGET_CONCURRENCY, v))
            .transpose()?;
        if idle_after.is_none() && target_concurrency.is_none() {
            return Ok(None);
        }
        let queue_limit = match annotations.get(SCALE_TO_ZERO_QUEUE) {
            Some(v) => v.trim().parse().map_err(|_| BadAnnotation {
                annotation: SCALE_TO_ZERO_QUEUE,
                value: v.clone(),
                expected: "a count of requests",
            })?,
            None => DEFAULT_QUEUE,
        };
        let hold_timeout = annotations
            .get(SCALE_TO_ZERO_TIMEOUT)
            .map(|v| duration(SCALE_TO_ZERO_TIMEOUT, v))
            .transpose()?
            .unwrap_or(DEFAULT_TIMEOUT);
        let max_replicas = annotations
            .get(MAX_REPLICAS)
            .map(|v| positive(MAX_REPLICAS, v))
            .transpose()?
            .map_or(DEFAULT_MAX_REPLICAS, |n| {
                i32::try_from(n).unwrap_or(i32::MAX)
            });
        Ok(Some(ScalePolicy {
            idle_after,
            queue_limit,
            hold_timeout,
            target_concurrency,
            max_replicas,
        }))
    }

    /// Whether requests are held while the Deployment has no ready endpoint.
    pub fn holds(&self) -> bool {
        self.idle_after.is_some()
    }

    /// The replicas the concurrency scaler wants, or `None` to leave them.
    ///
    /// `recent` is the mean in-flight requests (held ones included) over the
    /// last second, `window` over the last several: scale up on `recent`
    /// (fast), down only on `window` (slow), never below one replica (scaling
    /// to zero is the idle rule's job) and never above `max_replicas`.
    pub fn desired_replicas(&self, current: i32, recent: f64, window: f64) -> Option<i32> {
        let target = f64::from(self.target_concurrency?);
        let need = |load: f64| ((load / target).ceil() as i32).clamp(1, self.max_replicas);
        if current == 0 {
            // Zero replicas are woken by the first request, not here.
            return None;
        }
        let up = need(recent.max(window));
        if up > current {
            return Some(up);
        }
        let down = need(window);
        (down < current).then_some(down)
    }
}

fn positive(annotation: &'static str, value: &str) -> Result<u32, BadAnnotation> {
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(BadAnnotation {
            annotation,
            value: value.to_string(),
            expected: "a whole number above zero",
        }),
    }
}

/// `90`, `90s`, `1500ms`, `5m`, `1h`: more than zero.
fn duration(annotation: &'static str, value: &str) -> Result<Duration, BadAnnotation> {
    let bad = || BadAnnotation {
        annotation,
        value: value.to_string(),
        expected: "a duration above zero such as 30s, 500ms, 5m or 1h",
    };
    let text = value.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let parsed = match unit {
        "" | "s" => Duration::from_secs(number),
        "ms" => Duration::from_millis(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if parsed.is_zero() {
        return Err(bad());
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> Result<Option<ScalePolicy>, BadAnnotation> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ScalePolicy::from_annotations(Some(&map))
    }

    #[test]
    fn reads_annotations_with_defaults() {
        assert_eq!(policy(&[("other", "1")]), Ok(None));
        let p = policy(&[(SCALE_TO_ZERO_AFTER, "30s")]).unwrap().unwrap();
        assert_eq!(p.idle_after, Some(Duration::from_secs(30)));
        assert_eq!(p.queue_limit, 100);
        assert_eq!(p.hold_timeout, Duration::from_secs(30));
        assert!(p.holds());
        let p = policy(&[
            (SCALE_TO_ZERO_AFTER, "5m"),
            (SCALE_TO_ZERO_QUEUE, "0"),
            (SCALE_TO_ZERO_TIMEOUT, "1500ms"),
            (TARGET_CONCURRENCY, "4"),
            (MAX_REPLICAS, "3"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(p.idle_after, Some(Duration::from_secs(300)));
        assert_eq!(p.queue_limit, 0);
        assert_eq!(p.hold_timeout, Duration::from_millis(1500));
        assert_eq!((p.target_concurrency, p.max_replicas), (Some(4), 3));
        let p = policy(&[(TARGET_CONCURRENCY, "2")]).unwrap().unwrap();
        assert!(!p.holds());
    }

    #[test]
    fn bad_values_name_the_annotation() {
        let err = policy(&[(SCALE_TO_ZERO_AFTER, "soon")]).unwrap_err();
        assert_eq!(err.annotation, SCALE_TO_ZERO_AFTER);
        assert!(err.to_string().contains("\"soon\""), "{err}");
        assert!(policy(&[(SCALE_TO_ZERO_AFTER, "0s")]).is_err());
        assert!(policy(&[(SCALE_TO_ZERO_AFTER, "3d")]).is_err());
        assert!(policy(&[(TARGET_CONCURRENCY, "0")]).is_err());
        assert_eq!(
            policy(&[(SCALE_TO_ZERO_AFTER, "1m"), (SCALE_TO_ZERO_QUEUE, "-1")])
                .unwrap_err()
                .annotation,
            SCALE_TO_ZERO_QUEUE
        );
    }

    #[test]
    fn concurrency_scales_up_fast_and_down_slowly() {
        let p = policy(&[(TARGET_CONCURRENCY, "10"), (MAX_REPLICAS, "5")])
            .unwrap()
            .unwrap();
        // 35 in flight now: four pods, even if the window has not caught up.
        assert_eq!(p.desired_replicas(1, 35.0, 8.0), Some(4));
        // Never past the maximum.
        assert_eq!(p.desired_replicas(1, 500.0, 500.0), Some(5));
        // A quiet second alone does not scale down; a quiet window does, to one.
        assert_eq!(p.desired_replicas(4, 0.0, 35.0), None);
        assert_eq!(p.desired_replicas(4, 0.0, 0.0), Some(1));
        assert_eq!(p.desired_replicas(2, 15.0, 15.0), None);
        // Zero replicas are left to the first request.
        assert_eq!(p.desired_replicas(0, 30.0, 30.0), None);
        let idle_only = policy(&[(SCALE_TO_ZERO_AFTER, "1m")]).unwrap().unwrap();
        assert_eq!(idle_only.desired_replicas(3, 100.0, 100.0), None);
    }
}
