//! The review APIs kubectl's `auth` commands call: `SelfSubjectAccessReview`
//! (`kubectl auth can-i`), `SelfSubjectRulesReview` (`can-i --list`) and
//! `SelfSubjectReview` (`kubectl auth whoami`). They are create-only and
//! nothing is stored: the answer is computed and sent back.
//!
//! Skiff has no authentication nor authorization yet (it listens on loopback
//! and lets every request through), and the answers say exactly that: every
//! access is allowed, and the caller is the anonymous user.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SelfSubjectRulesReview};
use serde_json::{Value, json};

use crate::decode::{FieldValidation, decode_as};
use crate::error::ApiResult;
use crate::kinds::common;
use crate::request::{Target, body_value};
use crate::resources::Resource;
use crate::table::{self, Column, TableDef};

const REASON: &str = "Skiff has no authorization yet: every request is allowed";

const COLUMNS: &[Column] = &[table::NAME];

fn cells(object: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    vec![object["metadata"]["name"].clone()]
}

fn review(
    group: &'static str,
    kind: &'static str,
    names: (&'static str, &'static str),
    decode: crate::decode::DecodeFn,
) -> Resource {
    Resource {
        namespaced: false,
        ..common::base(
            group,
            "v1",
            kind,
            names,
            decode,
            TableDef {
                columns: COLUMNS,
                cells,
            },
        )
    }
}

/// The review resources, for the registry.
pub fn resources() -> Vec<Resource> {
    vec![
        review(
            "authorization.k8s.io",
            "SelfSubjectAccessReview",
            ("selfsubjectaccessreviews", "selfsubjectaccessreview"),
            decode_as::<SelfSubjectAccessReview>,
        ),
        review(
            "authorization.k8s.io",
            "SelfSubjectRulesReview",
            ("selfsubjectrulesreviews", "selfsubjectrulesreview"),
            decode_as::<SelfSubjectRulesReview>,
        ),
        review(
            "authentication.k8s.io",
            "SelfSubjectReview",
            ("selfsubjectreviews", "selfsubjectreview"),
            decode_as::<SelfSubjectReview>,
        ),
    ]
}

/// Whether `resource` is one of the create-only reviews.
pub fn is_review(resource: &Resource) -> bool {
    matches!(
        resource.kind,
        "SelfSubjectAccessReview" | "SelfSubjectRulesReview" | "SelfSubjectReview"
    ) && resource.custom.is_none()
}

/// Answer a review: the request with its `status` filled in, 201 Created.
pub fn review_response(target: Target, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let resource = target.resource;
    let input = body_value(&headers, &body)?;
    let mut answer = (resource.decode)(&input, FieldValidation::Ignore)?.object;
    answer["apiVersion"] = json!(resource.api_version());
    answer["kind"] = json!(resource.kind);
    if !answer["metadata"].is_object() {
        answer["metadata"] = json!({});
    }
    answer["metadata"]["creationTimestamp"] = Value::Null;
    answer["status"] = match resource.kind {
        "SelfSubjectAccessReview" => json!({"allowed": true, "reason": REASON}),
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
            "evaluationError": REASON,
        }),
        _ => json!({"userInfo": {
            "username": "system:anonymous",
            "groups": ["system:unauthenticated"],
        }}),
    };
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[tokio::test]
    async fn can_i_says_yes_and_why() {
        let resource: &'static Resource = Box::leak(Box::new(resources().remove(0)));
        let target = Target {
            resource,
            namespace: None,
            name: None,
            subresource: None,
        };
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let body = Bytes::from(
            r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview",
            "spec":{"resourceAttributes":{"verb":"create","resource":"pods","namespace":"default"}}}"#,
        );
        let response = review_response(target, headers, body).unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let answer: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer["status"]["allowed"], true);
        assert_eq!(answer["spec"]["resourceAttributes"]["verb"], "create");
        assert!(
            answer["status"]["reason"]
                .as_str()
                .unwrap()
                .contains("no authorization")
        );
    }
}
