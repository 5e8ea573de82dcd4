//! `POST /v1/check`: the decision API. Always 200 with the decision, except a malformed body
//! (400 / -2). Decisions come from the in-memory snapshot; no database is touched.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::JsonBody;
use permgate_core::decision::{Query, decide};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// Whether an allowed call counts against quota (default true). Accepted now so clients
    /// can send it; quota counting arrives with the quota engine.
    #[serde(default)]
    #[expect(dead_code, reason = "quota counting is not built yet; the field is part of the stable contract")]
    pub consume: Option<bool>,
}

impl CheckRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub async fn check(State(state): State<AppState>, JsonBody(req): JsonBody<CheckRequest>) -> Result<Response, ApiError> {
    if req.method.trim().is_empty() {
        return Err(ApiError::invalid("`method` must not be empty"));
    }
    if !req.path.starts_with('/') {
        return Err(ApiError::invalid("`path` must start with `/`"));
    }
    let services = state.services()?;
    let now = services.clock.now();
    let query = Query {
        method: &req.method,
        path: &req.path,
        authorization: req.header("authorization"),
        origin: req.header("origin"),
        ka: req.header("ka"),
    };
    let decision = {
        let snapshot = services.snapshot.read();
        decide(&snapshot, &query, now)
    };
    Ok((StatusCode::OK, Json(decision)).into_response())
}
