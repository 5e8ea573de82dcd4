//! `/healthz` (the process is up), `/readyz` (the store answers) and the landing page.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Html;
use serde_json::{Value, json};

use crate::AppState;

pub async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let snapshot = state.services.snapshot.read();
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "store": state.services.store.backend(),
        "catalog_version": snapshot.catalog().version,
        "snapshot_version": snapshot.version,
        "apps": snapshot.app_count(),
    }))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = state.services.store.clone();
    let ping = tokio::task::spawn_blocking(move || store.ping()).await;
    match ping {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not ready", "store": e.to_string()}))),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not ready", "store": e.to_string()}))),
    }
}

pub async fn landing() -> Html<&'static str> {
    Html(include_str!("landing.html"))
}
