//! `/v1/apps/...`: apps, keys, members, products, permissions; and `/v1/audit`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, Path, Query, SignedIn, id};
use permgate_core::error::ServiceError;
use permgate_core::model::{AccountId, AppId, KeyId};
use permgate_core::service::{
    AddKey, AddMember, BlockReason, CreateApp, GrantPermission, RevokePermission, SetPaidUsage, SetPlatforms,
    SetProduct,
};

type Created = (StatusCode, Json<Value>);

pub async fn create(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    JsonBody(input): JsonBody<CreateApp>,
) -> Result<Created, ApiError> {
    let app = state.run(move |s| s.create_app(&actor, input)).await?;
    Ok((StatusCode::CREATED, Json(json!(app))))
}

pub async fn list(State(state): State<AppState>, SignedIn(actor): SignedIn) -> Result<Json<Value>, ApiError> {
    let apps = state.run(move |s| s.apps(&actor)).await?;
    Ok(Json(json!({ "apps": apps })))
}

pub async fn get(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let view = state.run(move |s| s.app(&actor, app)).await?;
    Ok(Json(json!(view)))
}

pub async fn add_key(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
    JsonBody(input): JsonBody<AddKey>,
) -> Result<Created, ApiError> {
    let app: AppId = id("app id", &app)?;
    let key = state.run(move |s| s.add_key(&actor, app, input)).await?;
    Ok((StatusCode::CREATED, Json(json!(key))))
}

pub async fn rotate_key(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path((app, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (app, key): (AppId, KeyId) = (id("app id", &app)?, id("key id", &key)?);
    let key = state.run(move |s| s.rotate_key(&actor, app, key)).await?;
    Ok(Json(json!(key)))
}

pub async fn delete_key(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path((app, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (app, key): (AppId, KeyId) = (id("app id", &app)?, id("key id", &key)?);
    state.run(move |s| s.delete_key(&actor, app, key)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn set_platforms(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path((app, key)): Path<(String, String)>,
    JsonBody(input): JsonBody<SetPlatforms>,
) -> Result<Json<Value>, ApiError> {
    let (app, key): (AppId, KeyId) = (id("app id", &app)?, id("key id", &key)?);
    let key = state.run(move |s| s.set_platforms(&actor, app, key, input)).await?;
    Ok(Json(json!(key)))
}

pub async fn set_member(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
    JsonBody(input): JsonBody<AddMember>,
) -> Result<Created, ApiError> {
    let app: AppId = id("app id", &app)?;
    let (member, new) = state.run(move |s| s.set_member(&actor, app, input)).await?;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!(member))))
}

pub async fn remove_member(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path((app, account)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (app, account): (AppId, AccountId) = (id("app id", &app)?, id("account id", &account)?);
    state.run(move |s| s.remove_member(&actor, app, account)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn set_product(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path((app, product)): Path<(String, String)>,
    JsonBody(input): JsonBody<SetProduct>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let state_now = state.run(move |s| s.set_product(&actor, app, &product, input)).await?;
    Ok(Json(json!(state_now)))
}

pub async fn permissions(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let held = state.run(move |s| s.permissions(&actor, app)).await?;
    Ok(Json(json!({ "permissions": held })))
}

pub async fn grant(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
    JsonBody(input): JsonBody<GrantPermission>,
) -> Result<Created, ApiError> {
    let app: AppId = id("app id", &app)?;
    let held = state.run(move |s| s.grant_permission(&actor, app, input)).await?;
    Ok((StatusCode::CREATED, Json(json!(held))))
}

pub async fn revoke(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path((app, permission)): Path<(String, String)>,
    JsonBody(input): JsonBody<RevokePermission>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let revoked = state.run(move |s| s.revoke_permission(&actor, app, &permission, input)).await?;
    Ok(Json(json!({ "revoked": revoked })))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    app_id: Option<String>,
    limit: Option<String>,
}

pub async fn audit(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let app: Option<AppId> = q.app_id.as_deref().map(|a| id("app_id", a)).transpose()?;
    let limit: usize = q.limit.as_deref().map(|l| id("limit", l)).transpose()?.unwrap_or(1000).min(10_000);
    let events = state
        .run(move |s| {
            if !actor.is_staff() {
                return Err(ServiceError::Forbidden("only reviewers and admins read the audit trail".into()));
            }
            Ok(s.store.audit_events(app, limit)?)
        })
        .await?;
    Ok(Json(json!({ "events": events })))
}

pub async fn usage(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let usage = state.run(move |s| s.usage(&actor, app)).await?;
    Ok(Json(json!(usage)))
}

pub async fn set_paid_usage(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
    JsonBody(input): JsonBody<SetPaidUsage>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let paid = state.run(move |s| s.set_paid_usage(&actor, app, Some(input))).await?;
    Ok(Json(json!({ "paid_usage": paid })))
}

pub async fn delete_paid_usage(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let paid = state.run(move |s| s.set_paid_usage(&actor, app, None)).await?;
    Ok(Json(json!({ "paid_usage": paid })))
}

pub async fn block(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(target): Path<String>,
    JsonBody(input): JsonBody<BlockReason>,
) -> Result<Json<Value>, ApiError> {
    set_blocked(state, actor, &target, input, true).await
}

pub async fn unblock(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(target): Path<String>,
    JsonBody(input): JsonBody<BlockReason>,
) -> Result<Json<Value>, ApiError> {
    set_blocked(state, actor, &target, input, false).await
}

async fn set_blocked(
    state: AppState,
    actor: permgate_core::service::Actor,
    target: &str,
    input: BlockReason,
    blocked: bool,
) -> Result<Json<Value>, ApiError> {
    let target: AppId = id("app id", target)?;
    let done = state.run(move |s| s.set_app_blocked(&actor, target, blocked, input)).await?;
    Ok(Json(json!(done)))
}

#[derive(Deserialize)]
pub struct ExplainQuery {
    method: Option<String>,
    path: Option<String>,
}

pub async fn explain(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    Path(app): Path<String>,
    Query(q): Query<ExplainQuery>,
) -> Result<Json<Value>, ApiError> {
    let app: AppId = id("app id", &app)?;
    let method = q.method.unwrap_or_else(|| "GET".into());
    let path = q
        .path
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::invalid("`path` is required, e.g. ?method=GET&path=/v2/user/me"))?;
    let explanation = state.run(move |s| s.explain(&actor, app, &method, &path)).await?;
    Ok(Json(json!(explanation)))
}
