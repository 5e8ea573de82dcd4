//! The one place errors become HTTP responses: `{"msg": ..., "code": ...}` with the status the
//! SPEC names. Internal causes are logged with a trace id; the client gets only the trace id.

use axum::Json;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use permgate_core::error::ServiceError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: i32,
    pub msg: String,
}

impl ApiError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, code: -2, msg: msg.into() }
    }

    pub fn unavailable(msg: impl Into<String>) -> Self {
        ApiError { status: StatusCode::SERVICE_UNAVAILABLE, code: -1, msg: msg.into() }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let trace_id = trace_id();
        tracing::error!(%trace_id, %cause, "internal error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: -1,
            msg: format!("internal error; quote trace id {trace_id} when reporting it"),
        }
    }
}

fn trace_id() -> String {
    permgate_core::secret::new_app_key().unwrap_or_else(|_| "unavailable".into())
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        if let ServiceError::Internal(cause) = &e {
            return ApiError::internal(cause);
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError { status, code: e.code(), msg: e.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({"msg": self.msg, "code": self.code}))).into_response()
    }
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError { status: StatusCode::NOT_FOUND, code: -404, msg: format!("no such endpoint: {}", uri.path()) }
}

pub async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: -2,
        msg: "this endpoint does not accept that method".into(),
    }
}
