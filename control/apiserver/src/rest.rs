//! The REST verbs on any registered resource: get, list, watch, create,
//! update, patch, delete, deletecollection, and the subresources.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_stream::wrappers::ReceiverStream;

use crate::AppState;
use crate::decode::FieldValidation;
use crate::error::Cause;
use crate::error::{ApiError, ApiResult};
use crate::objects::{DeleteOptions, ListAt, Objects, Part, Propagation, WriteOptions, Written};
use crate::request::{Query, Target, body_value, content_type, wants_table};
use crate::selectors::{FieldSelector, LabelSelector, Selectors};
use crate::{table, watch};

pub async fn handle(
    state: Arc<AppState>,
    method: Method,
    target: Target,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    // A definition written here is served (or gone) when the answer arrives.
    let definitions = crate::crd::is_definitions(target.resource) && method != Method::GET;
    let answer = route(state.clone(), method, target, query, headers, body).await;
    if definitions && answer.is_ok() {
        crate::crd::refresh(&state).await;
    }
    answer
}

async fn route(
    state: Arc<AppState>,
    method: Method,
    target: Target,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let sub = target.subresource.as_deref();
    match (&method, target.name.is_some(), sub) {
        (&Method::GET, false, None) if query.flag("watch") => {
            watch(state, target, query, headers).await
        }
        (&Method::GET, false, None) => list(state, target, query, headers).await,
        (&Method::POST, false, None) if crate::auth::is_review(target.resource) => {
            crate::auth::review_response(target, headers, body)
        }
        (&Method::POST, false, None) => create(state, target, query, headers, body).await,
        (&Method::DELETE, false, None) => delete_collection(state, target, query, body).await,
        (&Method::GET, true, None | Some("status")) => get(state, target, query, headers).await,
        (&Method::PUT, true, None) => update(state, target, Part::Main, query, headers, body).await,
        (&Method::PUT, true, Some("status")) if target.resource.has_status => {
            update(state, target, Part::Status, query, headers, body).await
        }
        (&Method::PATCH, true, None) => {
            patch(state, target, Part::Main, query, headers, body).await
        }
        (&Method::PATCH, true, Some("status")) if target.resource.has_status => {
            patch(state, target, Part::Status, query, headers, body).await
        }
        (&Method::DELETE, true, None) => delete(state, target, query, body).await,
        (&Method::GET, true, Some("log")) if target.resource.kind == "Pod" => {
            crate::logs::logs(state, target, query).await
        }
        (&Method::POST, true, Some("eviction")) if target.resource.kind == "Pod" => {
            crate::eviction::evict(state, target, query, headers, body).await
        }
        (&Method::POST, true, Some("binding")) if target.resource.kind == "Pod" => {
            crate::binding::bind(state, target, query, headers, body).await
        }
        (&Method::GET | &Method::PUT | &Method::PATCH, true, Some("scale"))
            if target.resource.subresources.contains(&"scale") =>
        {
            crate::scale::handle(state, method, target, query, headers, body).await
        }
        (_, _, Some(sub)) if !target.resource.subresources.contains(&sub) && sub != "status" => {
            Err(ApiError::NoRoute)
        }
        _ => Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

fn selectors(target: &Target, query: &Query) -> ApiResult<Selectors> {
    Ok(Selectors {
        labels: LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?,
        fields: FieldSelector::parse(
            query.get("fieldSelector").unwrap_or_default(),
            target.resource,
        )?,
    })
}

/// The write options of a request. The field manager is the
/// `fieldManager` parameter or, as Kubernetes does, the User-Agent up to
/// its first `/` (`kubectl/v1.32.0 (linux/amd64) …` → `kubectl`).
pub(crate) fn write_options(query: &Query, headers: &HeaderMap) -> ApiResult<WriteOptions> {
    let manager = match query.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(manager) if manager.len() > 128 || manager.chars().any(char::is_control) => {
            return Err(ApiError::BadRequest(format!(
                "fieldManager: Invalid value: {manager:?}: must be at most 128 printable characters"
            )));
        }
        Some(manager) => manager.to_string(),
        None => headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .unwrap_or("unknown")
            .chars()
            .take(128)
            .collect(),
    };
    Ok(WriteOptions {
        dry_run: query.dry_run()?,
        validation: FieldValidation::parse(query.get("fieldValidation"))?,
        manager: Some(manager),
        subresource: None,
    })
}

/// A JSON response with Kubernetes' `Warning` headers.
fn respond(code: StatusCode, body: &Value, warnings: &[String]) -> Response {
    let mut response = (code, axum::Json(body)).into_response();
    for warning in warnings {
        let text = format!("299 - {warning:?}");
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append("Warning", value);
        }
    }
    response
}

fn render(target: &Target, object: Value, headers: &HeaderMap, query: &Query) -> Value {
    match wants_table(headers, query) {
        Some(include) => {
            let rv = object["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string();
            table::table(target.resource, &[object], &rv, None, &include)
        }
        None => object,
    }
}

fn name(target: &Target) -> &str {
    target.name.as_deref().unwrap_or_default()
}

async fn get(
    state: Arc<AppState>,
    target: Target,
    query: Query,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let objects = Objects::new(&state.store, target.resource);
    let (object, _) = objects
        .get(target.namespace.as_deref(), name(&target))
        .await?;
    Ok(respond(
        StatusCode::OK,
        &render(&target, object, &headers, &query),
        &[],
    ))
}

async fn list(
    state: Arc<AppState>,
    target: Target,
    query: Query,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let selectors = selectors(&target, &query)?;
    let objects = Objects::new(&state.store, target.resource);
    // Paging: the continue token is the first page's revision and the store key of the
    // last object returned, so every page reads the same revision (the store's
    // `range_page`); once compaction passes that revision the token answers 410.
    let at = list_at(&query)?;
    let (at, start) = match query.get("continue").filter(|t| !t.is_empty()) {
        Some(_) if at != ListAt::Latest => {
            return Err(ApiError::BadRequest(
                "specifying resource version is not allowed when using continue".into(),
            ));
        }
        Some(token) => {
            let (revision, after) = parse_continue(token)?;
            (ListAt::Exact(revision), Some(format!("{after}\0")))
        }
        None => (at, None),
    };
    let limit = query.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    let page = objects
        .list_page(target.namespace.as_deref(), &selectors, at, start, limit)
        .await?;
    let items = page.items;
    let next = page
        .next
        .map(|key| hex::encode(format!("{}:{key}", page.revision)));
    let rv = page.revision.to_string();
    let body = match wants_table(&headers, &query) {
        Some(include) => table::table(target.resource, &items, &rv, next.as_deref(), &include),
        None => {
            let mut metadata = json!({"resourceVersion": rv});
            if let Some(token) = &next {
                metadata["continue"] = json!(token);
            }
            json!({
                "kind": target.resource.list_kind(),
                "apiVersion": target.resource.api_version(),
                "metadata": metadata,
                "items": items,
            })
        }
    };
    Ok(respond(StatusCode::OK, &body, &[]))
}

/// What a list's `resourceVersion` and `resourceVersionMatch` ask for, as Kubernetes
/// reads them: unset is the latest (linearizable), `0` any state (this member's),
/// `N` with `Exact` that revision, `N` with `NotOlderThan` or no match at least `N`.
fn list_at(query: &Query) -> ApiResult<ListAt> {
    let version = query.get("resourceVersion").filter(|v| !v.is_empty());
    let matching = query.get("resourceVersionMatch").filter(|m| !m.is_empty());
    let invalid = |cause: Cause| ApiError::Invalid {
        kind: "ListOptions".into(),
        name: String::new(),
        causes: vec![cause],
    };
    let Some(version) = version else {
        return match matching {
            None => Ok(ListAt::Latest),
            Some(_) => Err(invalid(Cause {
                reason: "FieldValueForbidden",
                field: "resourceVersionMatch".into(),
                message: "Forbidden: resourceVersionMatch is forbidden unless \
                          resourceVersion is provided"
                    .into(),
            })),
        };
    };
    let revision: i64 =
        version.parse().ok().filter(|r| *r >= 0).ok_or_else(|| {
            ApiError::BadRequest(format!("invalid resource version: {version:?}"))
        })?;
    match (matching, revision) {
        (None | Some("NotOlderThan"), 0) => Ok(ListAt::Any),
        (None | Some("NotOlderThan"), revision) => Ok(ListAt::NotOlderThan(revision)),
        (Some("Exact"), 0) => Err(invalid(Cause {
            reason: "FieldValueForbidden",
            field: "resourceVersionMatch".into(),
            message: "Forbidden: resourceVersionMatch \"exact\" is forbidden for \
                      resourceVersion \"0\""
                .into(),
        })),
        (Some("Exact"), revision) => Ok(ListAt::Exact(revision)),
        (Some(other), _) => Err(invalid(Cause::unsupported(
            "resourceVersionMatch",
            other,
            &["Exact", "NotOlderThan"],
        ))),
    }
}

/// A continue token: hex of `REVISION:KEY`.
fn parse_continue(token: &str) -> ApiResult<(i64, String)> {
    let text = String::from_utf8(hex::decode(token).map_err(|_| bad_continue())?)
        .map_err(|_| bad_continue())?;
    let (revision, key) = text.split_once(':').ok_or_else(bad_continue)?;
    let revision = revision.parse().map_err(|_| bad_continue())?;
    Ok((revision, key.to_owned()))
}

fn bad_continue() -> ApiError {
    ApiError::BadRequest("invalid continue token".into())
}

async fn watch(
    state: Arc<AppState>,
    target: Target,
    query: Query,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let request = watch::WatchRequest {
        namespace: target.namespace.clone(),
        selectors: selectors(&target, &query)?,
        resource_version: query.get("resourceVersion").map(String::from),
        timeout: query
            .int("timeoutSeconds")?
            .map(|s| Duration::from_secs(s.max(0) as u64)),
        bookmarks: query.flag("allowWatchBookmarks"),
        table: wants_table(&headers, &query),
    };
    let rx = watch::start(
        state.store.clone(),
        target.resource,
        request,
        state.cancel.clone(),
    )
    .await?;
    let body = Body::from_stream(futures::StreamExt::map(
        ReceiverStream::new(rx),
        Ok::<_, std::convert::Infallible>,
    ));
    let mut response = Response::new(body);
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

async fn create(
    state: Arc<AppState>,
    target: Target,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let value = body_value(&headers, &body)?;
    let objects = Objects::new(&state.store, target.resource);
    let Written {
        object, warnings, ..
    } = objects
        .create(
            target.namespace.as_deref(),
            &value,
            &write_options(&query, &headers)?,
        )
        .await?;
    Ok(respond(StatusCode::CREATED, &object, &warnings))
}

async fn update(
    state: Arc<AppState>,
    target: Target,
    part: Part,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let value = body_value(&headers, &body)?;
    let objects = Objects::new(&state.store, target.resource);
    let Written {
        object, warnings, ..
    } = objects
        .update(
            target.namespace.as_deref(),
            name(&target),
            &value,
            part,
            &write_options(&query, &headers)?,
        )
        .await?;
    Ok(respond(StatusCode::OK, &object, &warnings))
}

async fn patch(
    state: Arc<AppState>,
    target: Target,
    part: Part,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let media = content_type(&headers);
    if media == "application/apply-patch+yaml" {
        let objects = Objects::new(&state.store, target.resource);
        let options = write_options(&query, &headers)?;
        let (Written { object, warnings }, created) = objects
            .apply(
                target.namespace.as_deref(),
                name(&target),
                &body,
                part,
                &options,
                query.flag("force"),
            )
            .await?;
        let code = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return Ok(respond(code, &object, &warnings));
    }
    let patch_type = skiff_patch::PatchType::from_content_type(&media).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {media})"
        ))
    })?;
    let objects = Objects::new(&state.store, target.resource);
    let Written {
        object, warnings, ..
    } = objects
        .patch(
            target.namespace.as_deref(),
            name(&target),
            patch_type,
            &body,
            part,
            &write_options(&query, &headers)?,
        )
        .await?;
    Ok(respond(StatusCode::OK, &object, &warnings))
}

pub(crate) fn delete_options(query: &Query, body: &[u8]) -> ApiResult<DeleteOptions> {
    let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions body: {e}")))?
    };
    let dry_run = query.dry_run()?
        || options["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    let policy = query
        .get("propagationPolicy")
        .or(options["propagationPolicy"].as_str());
    let propagation = match policy {
        None | Some("") if options["orphanDependents"] == json!(true) => Propagation::Orphan,
        None | Some("") | Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    };
    Ok(DeleteOptions {
        propagation,
        grace_period_seconds: query
            .int("gracePeriodSeconds")?
            .or(options["gracePeriodSeconds"].as_i64()),
        precondition_uid: options["preconditions"]["uid"].as_str().map(String::from),
        precondition_resource_version: options["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
        dry_run,
    })
}

async fn delete(
    state: Arc<AppState>,
    target: Target,
    query: Query,
    body: Bytes,
) -> ApiResult<Response> {
    let options = delete_options(&query, &body)?;
    let objects = Objects::new(&state.store, target.resource);
    let object = objects
        .delete(target.namespace.as_deref(), name(&target), &options)
        .await?;
    Ok(respond(StatusCode::OK, &object, &[]))
}

async fn delete_collection(
    state: Arc<AppState>,
    target: Target,
    query: Query,
    body: Bytes,
) -> ApiResult<Response> {
    let options = delete_options(&query, &body)?;
    let selectors = selectors(&target, &query)?;
    let objects = Objects::new(&state.store, target.resource);
    let (items, revision) = objects
        .list(target.namespace.as_deref(), &selectors)
        .await?;
    let mut deleted = Vec::new();
    for item in items {
        let ns = item["metadata"]["namespace"].as_str().map(String::from);
        match objects
            .delete(ns.as_deref(), crate::meta::name(&item), &options)
            .await
        {
            Ok(object) => deleted.push(object),
            Err(ApiError::NotFound { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    let body = json!({
        "kind": target.resource.list_kind(),
        "apiVersion": target.resource.api_version(),
        "metadata": {"resourceVersion": revision.to_string()},
        "items": deleted,
    });
    Ok(respond(StatusCode::OK, &body, &[]))
}
