//! `/healthz` (the process is up), `/readyz` (this node can answer: store reachable and migrated,
//! snapshot built, Redis reachable when configured).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::AppState;

pub async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let Ok(services) = state.services() else {
        return Json(json!({"status": "ok", "ready": false, "version": env!("CARGO_PKG_VERSION")}));
    };
    let snapshot = services.snapshot.read();
    Json(json!({
        "status": "ok",
        "ready": true,
        "version": env!("CARGO_PKG_VERSION"),
        "store": services.store.backend(),
        "catalog_version": snapshot.catalog().version,
        "snapshot_version": snapshot.version,
        "apps": snapshot.app_count(),
    }))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let not_ready =
        |why: String| (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not ready", "reason": why})));
    let services = match state.services() {
        Ok(s) => s.clone(),
        Err(e) => return not_ready(e.msg),
    };
    let store = services.store.clone();
    let checked = tokio::task::spawn_blocking(move || {
        store.ping()?;
        store.migration_status()
    })
    .await;
    match checked {
        Ok(Ok(status)) if status.pending() => {
            return not_ready(format!(
                "database schema is at version {} but this binary needs {}: run `permgate migrate`",
                status.current, status.latest
            ));
        }
        Ok(Ok(status)) if status.too_new() => {
            return not_ready(format!(
                "database schema version {} is newer than this binary knows ({}): upgrade permgate",
                status.current, status.latest
            ));
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return not_ready(format!("store unreachable: {e}")),
        Err(e) => return not_ready(format!("store check failed: {e}")),
    }
    if let Some(url) = &state.redis_url
        && let Err(e) = crate::redis_ping::ping(url).await
    {
        return not_ready(format!("Redis unreachable: {e}"));
    }
    (StatusCode::OK, Json(json!({"status": "ready", "store": services.store.backend()})))
}
