//! The review workflow over HTTP: eligibility, business information, consent items, permission
//! requests (multipart with the evidence file, or JSON), reviewer and applicant actions, the
//! evidence download, and the notification outbox.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, Path, Query, SignedIn, id, parse_json};
use permgate_core::error::ServiceError;
use permgate_core::model::{AppId, TalkChannel};
use permgate_core::service::{
    ActOnRequest, Apply, ConnectChannel, ListRequests, MAX_EVIDENCE_BYTES, RemoveBusiness, SetBusiness, SetConsentItem,
    Upload,
};
use permgate_core::workflow::RequestState;

/// The largest body `POST /v1/apps/{id}/permission-requests` reads: the evidence file plus room
/// for the text fields and multipart framing.
pub const MAX_UPLOAD_BODY: usize = MAX_EVIDENCE_BYTES + 256 * 1024;

/// The largest text field of a multipart application.
const MAX_TEXT_FIELD: usize = 64 * 1024;

pub async fn eligibility(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let view = state.run(move |s| s.eligibility(&actor, app)).await?;
    Ok(Json(json!(view)))
}

pub async fn agree_eligibility(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let view = state.run(move |s| s.agree_eligibility(&actor, app)).await?;
    Ok(Json(json!(view)))
}

pub async fn set_business(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
    JsonBody(input): JsonBody<SetBusiness>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let view = state
        .run(move |s| {
            s.set_business(&actor, app, input)?;
            s.app(&actor, app)
        })
        .await?;
    Ok(Json(json!(view)))
}

pub async fn remove_business(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
    JsonBody(input): JsonBody<RemoveBusiness>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let (revoked, view) = state
        .run(move |s| {
            let revoked = s.remove_business(&actor, app, input)?;
            Ok((revoked, s.app(&actor, app)?))
        })
        .await?;
    Ok(Json(json!({ "revoked": revoked, "app": view })))
}

pub async fn reactivate(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let view = state.run(move |s| s.reactivate_app(&actor, app)).await?;
    Ok(Json(json!(view)))
}

pub async fn create_test_app(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let app: AppId = id("app id", &app)?;
    let view = state.run(move |s| s.create_test_app(&actor, app)).await?;
    Ok((StatusCode::CREATED, Json(json!(view))))
}

pub async fn upsert_channel(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    JsonBody(input): JsonBody<TalkChannel>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let channel = state.run(move |s| s.upsert_channel(&actor, input)).await?;
    Ok((StatusCode::CREATED, Json(json!(channel))))
}

pub async fn channels(State(state): State<AppState>, SignedIn(actor): SignedIn) -> Result<Json<Value>, ApiError> {
    let channels = state.run(move |s| s.channels(&actor)).await?;
    Ok(Json(json!({ "channels": channels })))
}

pub async fn connect_channel(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
    JsonBody(input): JsonBody<ConnectChannel>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let view = state
        .run(move |s| {
            s.connect_channel(&actor, app, input)?;
            s.app(&actor, app)
        })
        .await?;
    Ok(Json(json!(view)))
}

pub async fn disconnect_channel(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path((app, channel)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let view = state
        .run(move |s| {
            s.disconnect_channel(&actor, app, &channel)?;
            s.app(&actor, app)
        })
        .await?;
    Ok(Json(json!(view)))
}

pub async fn set_consent_item(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path((app, scope)): Path<(String, String)>,
    JsonBody(input): JsonBody<SetConsentItem>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let setting = state.run(move |s| s.set_consent_item(&actor, app, &scope, input)).await?;
    Ok(Json(json!(setting)))
}

pub async fn unset_consent_item(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path((app, scope)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let app: AppId = id("app id", &app)?;
    state.run(move |s| s.unset_consent_item(&actor, app, &scope)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/apps/{id}/permission-requests`: `multipart/form-data` (fields and the evidence in
/// part `file`), or a JSON object for requests that need no file.
pub async fn apply(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
    req: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let app: AppId = id("app id", &app)?;
    let first = actor.clone();
    state.run(move |s| s.may_apply(&first, app)).await?;
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"));
    let input = if multipart {
        let form = Multipart::from_request(req, &state)
            .await
            .map_err(|e| ApiError::invalid(format!("could not read the multipart form: {}", e.body_text())))?;
        read_application(form).await?
    } else {
        let bytes = axum::body::to_bytes(req.into_body(), crate::MAX_JSON_BODY).await.map_err(|_| {
            ApiError::invalid(format!(
                "the body is larger than {} bytes; send the evidence file as multipart/form-data",
                crate::MAX_JSON_BODY
            ))
        })?;
        parse_json::<Apply>(&bytes)?
    };
    let request = state.run(move |s| s.apply(&actor, app, input)).await?;
    Ok((StatusCode::CREATED, Json(json!(request))))
}

/// Reads the fields of a multipart application, refusing unknown, repeated and oversized parts.
async fn read_application(mut form: Multipart) -> Result<Apply, ApiError> {
    let mut input = Apply::default();
    let (mut seen_permission, mut seen_url, mut seen_reason) = (false, false, false);
    let mut seen = Vec::<String>::new();
    loop {
        let field = form.next_field().await.map_err(multipart_error)?;
        let Some(mut field) = field else { break };
        let name = field.name().unwrap_or("").to_owned();
        if seen.contains(&name) {
            return Err(ApiError::invalid(format!("the form has the part `{name}` twice; send each part once")));
        }
        seen.push(name.clone());
        if name == "file" {
            let file_name = field.file_name().unwrap_or("evidence").to_owned();
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                if bytes.len() + chunk.len() > MAX_EVIDENCE_BYTES {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            input.evidence = Some(Upload { file_name, bytes });
            continue;
        }
        let mut text = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if text.len() + chunk.len() > MAX_TEXT_FIELD {
                return Err(ApiError::invalid(format!("`{name}` is longer than {MAX_TEXT_FIELD} bytes")));
            }
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(text).map_err(|_| ApiError::invalid(format!("`{name}` is not UTF-8 text")))?;
        match name.as_str() {
            "permission" => (input.permission, seen_permission) = (text, true),
            "service_url" => (input.service_url, seen_url) = (text, true),
            "reason" => (input.reason, seen_reason) = (text, true),
            "usage_scenario" => input.usage_scenario = Some(text),
            "requested_rule" => input.requested_rule = Some(text.trim().to_owned()).filter(|t| !t.is_empty()),
            "requested_limit" => {
                let t = text.trim();
                if !t.is_empty() {
                    input.requested_limit = Some(t.parse().map_err(|_| {
                        ApiError::invalid(format!("`requested_limit`: `{t}` is not a positive whole number"))
                    })?);
                }
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown form part `{other}`; expected permission, service_url, reason, usage_scenario, requested_limit, requested_rule and file"
                )));
            }
        }
    }
    for (seen, field) in [(seen_permission, "permission"), (seen_url, "service_url"), (seen_reason, "reason")] {
        if !seen {
            return Err(ApiError::invalid(format!("the form lacks the part `{field}`")));
        }
    }
    Ok(input)
}

fn too_large() -> ApiError {
    ApiError::invalid(format!(
        "`file`: the evidence file is larger than 20 MB ({MAX_EVIDENCE_BYTES} bytes); send a smaller screenshot or PDF"
    ))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let text = e.body_text();
    if text.contains("length limit") || e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::invalid(format!("could not read the multipart form: {text}"))
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    app_id: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Query(q): Query<ListQuery>,
) -> Result<Json<permgate_core::service::RequestPage>, ApiError> {
    let query = ListRequests {
        state: q
            .state
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<RequestState>().map_err(|e| ApiError::invalid(format!("`state`: {e}"))))
            .transpose()?,
        app_id: q.app_id.as_deref().filter(|s| !s.is_empty()).map(|a| id("app_id", a)).transpose()?,
        before: q.before.as_deref().filter(|s| !s.is_empty()).map(|b| id("before", b)).transpose()?,
        limit: q.limit.as_deref().filter(|s| !s.is_empty()).map(|l| id("limit", l)).transpose()?,
    };
    Ok(Json(state.run(move |s| s.permission_requests(&actor, query)).await?))
}

pub async fn list_for_app(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
) -> Result<Json<permgate_core::service::RequestPage>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let query = ListRequests { app_id: Some(app), ..ListRequests::default() };
    Ok(Json(state.run(move |s| s.permission_requests(&actor, query)).await?))
}

pub async fn get(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(request): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let request: i64 = id("request id", &request)?;
    let request = state.run(move |s| s.permission_request(&actor, request)).await?;
    Ok(Json(json!(request)))
}

pub async fn act(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(request): Path<String>,
    JsonBody(input): JsonBody<ActOnRequest>,
) -> Result<Json<Value>, ApiError> {
    let request: i64 = id("request id", &request)?;
    let request = state.run(move |s| s.act_on_request(&actor, request, input)).await?;
    Ok(Json(json!(request)))
}

pub async fn evidence(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(request): Path<String>,
) -> Result<Response, ApiError> {
    let request: i64 = id("request id", &request)?;
    let (info, bytes) = state.run(move |s| s.request_evidence(&actor, request)).await?;
    let disposition = format!(
        "inline; filename=\"{}\"",
        info.file_name.chars().map(|c| if c == '"' || !c.is_ascii() { '_' } else { c }).collect::<String>()
    );
    let mut response = Body::from(bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&info.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Uploaded content, shown in the console: an image may run nothing; a PDF gets no sandbox
    // (Chromium's PDF viewer refuses to load in one) but may load nothing and be framed only by
    // the console.
    let policy = if info.content_type == "application/pdf" {
        "default-src 'none'; frame-ancestors 'self'"
    } else {
        "sandbox; default-src 'none'; frame-ancestors 'self'"
    };
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct NotificationsQuery {
    app_id: Option<String>,
}

/// `GET /v1/notifications?app_id=`: the outbox with each message's delivery state.
pub async fn notifications(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Query(q): Query<NotificationsQuery>,
) -> Result<Json<Value>, ApiError> {
    let app: Option<AppId> = q.app_id.as_deref().filter(|s| !s.is_empty()).map(|a| id("app_id", a)).transpose()?;
    let messages = state
        .run(move |s| {
            if !actor.is_staff() {
                return Err(ServiceError::Forbidden("only reviewers and admins read the notification outbox".into()));
            }
            Ok(s.store.messages(app, 1000)?)
        })
        .await?;
    Ok(Json(json!({ "notifications": messages })))
}
