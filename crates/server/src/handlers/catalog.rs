//! `GET /v1/catalog`: the catalog in force, as JSON. `POST /v1/catalog/reload` reads the catalog
//! file again and puts it in force; `POST /v1/catalog/preview` says what a catalog (the body, or
//! the file) would change before it is applied.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use permgate_core::catalog::Catalog;
use permgate_core::error::ServiceError;
use permgate_core::service::{Actor, Reloaded, Services};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::SignedIn;

pub async fn catalog(State(state): State<AppState>, SignedIn(_): SignedIn) -> Result<Json<Value>, ApiError> {
    let catalog = state.services()?.snapshot.read().catalog().clone();
    Ok(Json(json!(*catalog)))
}

/// Reads and validates the configured catalog file.
fn read_file(state: &AppState) -> Result<(Catalog, String), ServiceError> {
    let Some(path) = &state.catalog_path else {
        return Err(ServiceError::Conflict(
            "this node runs the built-in catalog; set PERMGATE_CATALOG to a file to reload from".into(),
        ));
    };
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ServiceError::Invalid(format!("cannot read catalog {source}: {e}")))?;
    let catalog = Catalog::parse(&source, &text).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    Ok((catalog, source))
}

/// Reads the catalog file and reloads it: on any error the catalog in force stays. Counts the
/// outcome in `/metrics` and logs it. Blocking (file and store). Callers check the actor's role.
pub fn reload_from_file(
    state: &AppState,
    services: &Services,
    actor: Option<&Actor>,
    why: &str,
) -> Result<Reloaded, ServiceError> {
    let result = read_file(state).and_then(|(catalog, source)| services.reload_catalog(catalog, &source, actor));
    match &result {
        Ok(r) if r.changed => {
            state.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
            tracing::info!(version = %r.version, changes = %r.diff.lines().join("; "), "catalog reloaded ({why})");
        }
        Ok(r) => tracing::info!(version = %r.version, "catalog unchanged ({why}); nothing to reload"),
        Err(e) => {
            state.metrics.reloads_failed.fetch_add(1, Ordering::Relaxed);
            // A node without a catalog file, or a file with mistakes, is the operator's to fix:
            // a warning. Only what permgate itself failed at is an error.
            if matches!(e, ServiceError::Internal(_)) {
                tracing::error!("catalog reload ({why}) failed; the catalog in force stays: {e}");
            } else {
                tracing::warn!("catalog reload ({why}) failed; the catalog in force stays: {e}");
            }
        }
    }
    result
}

pub async fn reload(State(state): State<AppState>, SignedIn(actor): SignedIn) -> Result<Json<Value>, ApiError> {
    if !actor.is_admin() {
        return Err(ServiceError::Forbidden("only an admin may reload the catalog".into()).into());
    }
    let st = state.clone();
    let reloaded = state.run(move |s| reload_from_file(&st, s, Some(&actor), "POST /v1/catalog/reload")).await?;
    Ok(Json(json!({
        "version": reloaded.version,
        "changed": reloaded.changed,
        "changes": reloaded.diff.lines(),
        "diff": reloaded.diff,
    })))
}

pub async fn preview(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if !actor.is_admin() {
        return Err(ServiceError::Forbidden("only an admin may preview catalog changes".into()).into());
    }
    let st = state.clone();
    let preview = state
        .run(move |s| {
            let catalog = if body.iter().all(u8::is_ascii_whitespace) {
                read_file(&st)?.0
            } else {
                let text = std::str::from_utf8(&body)
                    .map_err(|_| ServiceError::Invalid("the catalog must be UTF-8 TOML".into()))?;
                Catalog::parse("request body", text).map_err(|e| ServiceError::Invalid(e.to_string()))?
            };
            s.preview_catalog(catalog, &mut |_, _| {})
        })
        .await?;
    let changes = preview.diff.lines();
    Ok(Json(json!({"changes": changes, "preview": preview})))
}

/// `GET /v1/shadow-report`: what enforcing each check in shadow mode would change.
pub async fn shadow_report(State(state): State<AppState>, SignedIn(actor): SignedIn) -> Result<Json<Value>, ApiError> {
    let report = state.run(move |s| s.shadow_report(&actor)).await?;
    Ok(Json(json!(report)))
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleInput {
    #[serde(default)]
    reap_unused_days: u32,
    #[serde(default)]
    reap_warning_days: Option<u32>,
}

/// `POST /v1/grants/lifecycle` (admin): sends the due expiry reminders now and, with
/// `reap_unused_days`, warns about and revokes unused grants; answers what it did.
pub async fn lifecycle(
    State(state): State<AppState>,
    SignedIn(actor): SignedIn,
    crate::extract::JsonBody(input): crate::extract::JsonBody<LifecycleInput>,
) -> Result<Json<Value>, ApiError> {
    let reap = (input.reap_unused_days > 0).then(|| permgate_core::service::ReapPolicy {
        unused_days: input.reap_unused_days,
        warning_days: input.reap_warning_days.unwrap_or(14),
    });
    let run = state.run(move |s| s.run_lifecycle_as(&actor, reap)).await?;
    Ok(Json(json!(run)))
}
