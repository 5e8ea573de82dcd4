//! The services' error type. Each variant maps to one HTTP status and one stable code, in the one
//! place the server maps errors (`server::error`). Internal causes are logged there and never sent.

use crate::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// 400 / -2: the input is malformed or out of range.
    #[error("{0}")]
    Invalid(String),
    /// 401 / -401: no or bad account token.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403 / -5: the caller's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 403 / -3: the app is entitled but a setting is missing (e.g. a consent item not set).
    #[error("{0}")]
    NotConfigured(String),
    /// 404 / -404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 409 / -409: the current state forbids it.
    #[error("{0}")]
    Conflict(String),
    /// 500 / -1: something failed that the caller cannot fix; the cause is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn code(&self) -> i32 {
        match self {
            ServiceError::Invalid(_) => -2,
            ServiceError::Unauthenticated(_) => -401,
            ServiceError::Forbidden(_) => -5,
            ServiceError::NotConfigured(_) => -3,
            ServiceError::NotFound(_) => -404,
            ServiceError::Conflict(_) => -409,
            ServiceError::Internal(_) => -1,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ServiceError::Invalid(_) => 400,
            ServiceError::Unauthenticated(_) => 401,
            ServiceError::Forbidden(_) | ServiceError::NotConfigured(_) => 403,
            ServiceError::NotFound(_) => 404,
            ServiceError::Conflict(_) => 409,
            ServiceError::Internal(_) => 500,
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ServiceError::Conflict(m),
            StoreError::NotFound(m) => ServiceError::NotFound(m),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<crate::secret::RandomError> for ServiceError {
    fn from(e: crate::secret::RandomError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
