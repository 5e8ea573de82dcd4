//! The one place errors become HTTP responses: `{"msg": ..., "code": ..., "trace_id": ...}` with
//! the status the SPEC names, and the trace id also in `X-Permgate-Trace-Id`. Every error is
//! logged with its trace id (internal ones at error level with their cause, which the client
//! never sees), so a user quoting the id can be found in the logs.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use permgate_core::error::ServiceError;

/// The response header carrying an error's trace id.
pub const TRACE_HEADER: &str = "x-permgate-trace-id";

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: i32,
    pub msg: String,
    /// Set when the error was logged already (internal errors); otherwise made when answering.
    pub trace_id: Option<String>,
    /// Seconds to send as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: i32, msg: impl Into<String>) -> Self {
        ApiError { status, code, msg: msg.into(), trace_id: None, retry_after: None }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, -2, msg)
    }

    pub fn unavailable(msg: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, -1, msg)
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let trace_id = trace_id();
        tracing::error!(%trace_id, %cause, "internal error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: -1,
            msg: format!("internal error; quote trace id {trace_id} when reporting it"),
            trace_id: Some(trace_id),
            retry_after: None,
        }
    }
}

/// A trace id unique in this process and unlikely to repeat across nodes and restarts: a random
/// prefix chosen at start, then a counter. 16 hex digits.
pub fn trace_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let random = permgate_core::secret::new_app_key().unwrap_or_default();
        u32::from_str_radix(random.get(..8).unwrap_or("0"), 16).unwrap_or_else(|_| std::process::id())
    });
    format!("{prefix:08x}{:08x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        if let ServiceError::Internal(cause) = &e {
            return ApiError::internal(cause);
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let trace_id = self.trace_id.unwrap_or_else(|| {
            let id = trace_id();
            tracing::info!(trace_id = %id, status = self.status.as_u16(), code = self.code, "refused: {}", self.msg);
            id
        });
        let header = HeaderValue::from_str(&trace_id).ok();
        let body = serde_json::json!({"msg": self.msg, "code": self.code, "trace_id": trace_id});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(value) = header {
            response.headers_mut().insert(TRACE_HEADER, value);
        }
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, -404, format!("no such endpoint: {}", uri.path()))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, -2, "this endpoint does not accept that method")
}
