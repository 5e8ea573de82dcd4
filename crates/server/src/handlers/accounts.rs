//! `/v1/accounts`: admins create accounts; anyone signed in reads their own.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, Path, SignedIn};
use permgate_core::model::AccountId;
use permgate_core::service::{BlockReason, CreateAccount};

use crate::extract::id;

pub async fn create(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    JsonBody(input): JsonBody<CreateAccount>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = state.run(move |s| s.create_account(&actor, input)).await?;
    Ok((StatusCode::CREATED, Json(json!(created))))
}

pub async fn list(State(state): State<AppState>, SignedIn(actor): SignedIn) -> Result<Json<Value>, ApiError> {
    let accounts = state.run(move |s| s.accounts(&actor)).await?;
    Ok(Json(json!({ "accounts": accounts })))
}

pub async fn me(SignedIn(actor): SignedIn) -> Json<Value> {
    Json(json!(actor.account))
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
    let target: AccountId = id("account id", target)?;
    let done = state.run(move |s| s.set_account_blocked(&actor, target, blocked, input)).await?;
    Ok(Json(json!(done)))
}
