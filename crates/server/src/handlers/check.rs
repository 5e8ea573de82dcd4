//! `POST /v1/check`: the decision API. Always 200 with the decision, except a malformed body
//! (400 / -2). Decisions come from the in-memory snapshot and the quota counter; no database is
//! touched. A quota deny also carries `Retry-After`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::{AppState, Call};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// Whether an allowed call counts against quota (default true).
    #[serde(default)]
    pub consume: Option<bool>,
    /// The call's recipients (e.g. a message's `receiver_uuids`), for recipient and pair quotas.
    #[serde(default)]
    pub recipients: Vec<String>,
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
    let call = Call {
        authorization: req.header("authorization").map(str::to_owned),
        origin: req.header("origin").map(str::to_owned),
        ka: req.header("ka").map(str::to_owned),
        consume: req.consume.unwrap_or(true),
        explain: true,
        method: req.method,
        path: req.path,
        recipients: req.recipients,
    };
    let decision = state.decide(call).await?;
    let mut response = (StatusCode::OK, Json(&decision)).into_response();
    if let Some(seconds) = decision.retry_after
        && let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
    }
    Ok(response)
}
