//! `GET /v1/catalog`: the catalog in force, as JSON.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::SignedIn;

pub async fn catalog(State(state): State<AppState>, SignedIn(_): SignedIn) -> Result<Json<Value>, ApiError> {
    let catalog = state.services()?.snapshot.read().catalog().clone();
    Ok(Json(json!(*catalog)))
}
