//! `/v1/accounts`: admins create accounts; anyone signed in reads their own.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, SignedIn};
use permgate_core::service::CreateAccount;

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
