//! `pods/eviction` (policy/v1 `Eviction`): delete a pod unless that would
//! break a PodDisruptionBudget, which is what `kubectl drain` asks for.
//!
//! The budget's `status.disruptionsAllowed` decides when the disruption
//! controller has observed the budget's current generation; otherwise the
//! allowance is worked out here from the budget's spec and the pods it
//! selects (Ready, not being deleted). An allowed eviction takes one
//! disruption from the budget's status (recording the pod in
//! `disruptedPods`), written only if the budget did not change meanwhile,
//! so two evictions cannot spend the same allowance.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult, Cause};
use crate::objects::{Objects, Part, WriteOptions};
use crate::request::{Query, Target, body_value};
use crate::selectors::Selectors;

const ATTEMPTS: usize = 5;

pub async fn evict(
    state: Arc<AppState>,
    target: Target,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let eviction = body_value(&headers, &body)?;
    if let Some(kind) = eviction["kind"].as_str()
        && kind != "Eviction"
    {
        return Err(ApiError::BadRequest(format!(
            "the body of the request was of kind {kind:?}, but pods/eviction expects \"Eviction\""
        )));
    }
    let namespace = target.namespace.as_deref().unwrap_or("default");
    let name = target.name.as_deref().unwrap_or_default();
    if let Some(named) = eviction["metadata"]["name"].as_str()
        && !named.is_empty()
        && named != name
    {
        return Err(ApiError::BadRequest(format!(
            "name in URL does not match name in Eviction object: {named} != {name}"
        )));
    }
    let mut options = crate::rest::delete_options(&query, &[])?;
    let delete = &eviction["deleteOptions"];
    if let Some(grace) = delete["gracePeriodSeconds"].as_i64() {
        options.grace_period_seconds = Some(grace);
    }
    if let Some(uid) = delete["preconditions"]["uid"].as_str() {
        options.precondition_uid = Some(uid.to_string());
    }
    if delete["dryRun"]
        .as_array()
        .is_some_and(|d| d.iter().any(|v| v == "All"))
    {
        options.dry_run = true;
    }
    let pods = Objects::new(&state.store, target.resource);
    let pdb_resource = crate::kinds::pdb::resource();
    let budgets = Objects::new(&state.store, &pdb_resource);
    for _ in 0..ATTEMPTS {
        let (pod, _) = pods.get(Some(namespace), name).await?;
        // Pods that are done, not started or already going need no budget.
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        let exempt = matches!(phase, "Succeeded" | "Failed" | "Pending")
            || !pod["metadata"]["deletionTimestamp"].is_null();
        if !exempt {
            let (all, _) = budgets.list(Some(namespace), &Selectors::default()).await?;
            let matching: Vec<&Value> = all
                .iter()
                .filter(|pdb| selects(&pdb["spec"]["selector"], &pod))
                .collect();
            if matching.len() > 1 {
                return Err(ApiError::Internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
                ));
            }
            if let Some(pdb) = matching.first() {
                let (pods_selected, _) = pods.list(Some(namespace), &Selectors::default()).await?;
                let selected: Vec<&Value> = pods_selected
                    .iter()
                    .filter(|p| selects(&pdb["spec"]["selector"], p))
                    .collect();
                let budget = Budget::of(pdb, &selected);
                if budget.allowed <= 0 {
                    return Err(too_many_requests(pdb, &budget));
                }
                if !options.dry_run {
                    let mut spent = (*pdb).clone();
                    spent["status"]["disruptionsAllowed"] = json!(budget.allowed - 1);
                    spent["status"]["disruptedPods"][name] = json!(crate::meta::now());
                    for (field, value) in [
                        ("currentHealthy", budget.healthy),
                        ("desiredHealthy", budget.desired),
                        ("expectedPods", budget.expected),
                    ] {
                        if spent["status"][field].is_null() {
                            spent["status"][field] = json!(value);
                        }
                    }
                    let write = WriteOptions {
                        manager: Some("kube-apiserver".into()),
                        ..WriteOptions::default()
                    };
                    match budgets
                        .update(
                            Some(namespace),
                            crate::meta::name(pdb),
                            &spent,
                            Part::Status,
                            &write,
                        )
                        .await
                    {
                        Ok(_) => {}
                        // Someone else spent or recomputed it: look again.
                        Err(ApiError::Conflict { .. }) => continue,
                        Err(err) => return Err(err),
                    }
                }
            }
        }
        pods.delete(Some(namespace), name, &options).await?;
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success", "code": 201});
        return Ok((StatusCode::CREATED, axum::Json(status)).into_response());
    }
    Err(ApiError::Conflict {
        resource: "poddisruptionbudgets".into(),
        name: name.into(),
        message: "the disruption budget kept changing; try again".into(),
    })
}

/// Whether a budget's label selector selects the pod. In policy/v1 an
/// empty selector selects every pod of the namespace; a missing one none.
fn selects(selector: &Value, pod: &Value) -> bool {
    !selector.is_null()
        && crate::kinds::common::selector_matches(selector, &pod["metadata"]["labels"])
}

/// A budget's arithmetic for one eviction.
#[derive(Debug, PartialEq)]
struct Budget {
    allowed: i64,
    healthy: i64,
    desired: i64,
    expected: i64,
}

impl Budget {
    fn of(pdb: &Value, selected: &[&Value]) -> Budget {
        let healthy = selected
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && ready(p))
            .count() as i64;
        let expected = selected.len() as i64;
        let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
        let observed = pdb["status"]["observedGeneration"].as_i64();
        let status = &pdb["status"];
        if observed.is_some_and(|o| o >= generation)
            && let Some(allowed) = status["disruptionsAllowed"].as_i64()
        {
            return Budget {
                allowed,
                healthy: status["currentHealthy"].as_i64().unwrap_or(healthy),
                desired: status["desiredHealthy"].as_i64().unwrap_or(0),
                expected: status["expectedPods"].as_i64().unwrap_or(expected),
            };
        }
        let spec = &pdb["spec"];
        let desired = if !spec["minAvailable"].is_null() {
            scaled(&spec["minAvailable"], expected)
        } else if !spec["maxUnavailable"].is_null() {
            (expected - scaled(&spec["maxUnavailable"], expected)).max(0)
        } else {
            // Neither set: policy/v1 defaults minAvailable to 1.
            1
        };
        Budget {
            allowed: (healthy - desired).max(0),
            healthy,
            desired,
            expected,
        }
    }
}

/// An int-or-percent of `total`, percentages rounded up as Kubernetes does.
fn scaled(value: &Value, total: i64) -> i64 {
    match value {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(percent) => (percent * total + 99) / 100,
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn too_many_requests(pdb: &Value, budget: &Budget) -> ApiError {
    ApiError::TooManyRequests {
        message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
        causes: vec![Cause {
            reason: "DisruptionBudget",
            field: String::new(),
            message: format!(
                "The disruption budget {} needs {} healthy pods and has {} currently",
                crate::meta::name(pdb),
                budget.desired,
                budget.healthy
            ),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ready_now: bool) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready_now { "True" } else { "False" }}]}})
    }

    #[test]
    fn allowance_from_the_spec() {
        let pods = [pod(true), pod(true), pod(false)];
        let refs: Vec<&Value> = pods.iter().collect();
        let min = json!({"metadata": {"generation": 1}, "spec": {"minAvailable": 2}});
        assert_eq!(Budget::of(&min, &refs).allowed, 0);
        let pct = json!({"metadata": {"generation": 1}, "spec": {"maxUnavailable": "50%"}});
        // 50% of 3 rounds up to 2 unavailable: 1 must stay, 2 are healthy.
        assert_eq!(Budget::of(&pct, &refs).allowed, 1);
    }

    #[test]
    fn an_observed_status_wins() {
        let refs: Vec<&Value> = Vec::new();
        let pdb = json!({"metadata": {"generation": 2}, "spec": {"minAvailable": 0},
            "status": {"observedGeneration": 2, "disruptionsAllowed": 0}});
        assert_eq!(Budget::of(&pdb, &refs).allowed, 0);
        let stale = json!({"metadata": {"generation": 3}, "spec": {"minAvailable": 0},
            "status": {"observedGeneration": 2, "disruptionsAllowed": 0}});
        assert_eq!(Budget::of(&stale, &refs).allowed, 0);
        let refs_pods = [pod(true)];
        let refs: Vec<&Value> = refs_pods.iter().collect();
        assert_eq!(Budget::of(&stale, &refs).allowed, 1);
    }
}
