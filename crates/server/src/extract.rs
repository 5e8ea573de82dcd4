//! Extractors that turn bad input into the documented errors instead of axum's plain-text ones:
//! a malformed or oversized JSON body is 400 / -2 naming the problem; a missing or bad account
//! token is 401 / -401.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;
use permgate_core::service::Actor;

/// A JSON body. The content type is not checked, so `curl -d '{...}'` works as pasted.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let BodyBytes(bytes) = BodyBytes::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A body's bytes, within the router's body limit.
pub struct BodyBytes(pub Bytes);

impl FromRequest<AppState> for BodyBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        Bytes::from_request(req, state).await.map(BodyBytes).map_err(|e| unreadable_body(&e.body_text()))
    }
}

/// A body that could not be read: too large (`length limit` in the reader's error), or the
/// reader's own error.
pub fn unreadable_body(error: &str) -> ApiError {
    if error.contains("length limit") {
        ApiError::invalid(format!("the body is larger than {} bytes", crate::MAX_JSON_BODY))
    } else {
        ApiError::invalid(format!("could not read the body: {error}"))
    }
}

/// Parses JSON, describing what is wrong and where.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    // A good body is read once, without tracking where the reader is; a bad one is read again
    // to say where.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid("the body is empty; send a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let e = e.into_inner();
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "the body is not valid JSON",
            _ => "the body does not have the expected fields",
        };
        // serde_path_to_error says `.` for the top level and `?` where it lost track (at the end of
        // the input): no place worth naming.
        if path == "." || path == "?" || path.is_empty() {
            ApiError::invalid(format!("{what}: {e}"))
        } else {
            ApiError::invalid(format!("{what}: `{path}`: {e}"))
        }
    })?;
    de.end().map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// The signed-in account (`Authorization: Bearer <account token>`).
pub struct SignedIn(pub Actor);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}").to_owned());
        let mut token = header.as_deref().map(|h| {
            let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h, ""));
            if scheme.eq_ignore_ascii_case("Bearer") { rest.trim().to_owned() } else { String::new() }
        });
        if header.is_some() && token.as_deref() == Some("") {
            return Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                -401,
                "use `Authorization: Bearer <account token>`",
            ));
        }
        if token.is_none()
            && let Some(session) = session_cookie(&parts.headers)
        {
            // A cookie travels with cross-site requests too: a change must also carry the
            // console's header, which a cross-site form or image cannot set.
            let safe = matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD);
            if !safe && !parts.headers.contains_key(crate::console::CONSOLE_HEADER) {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    -5,
                    "a change made with the console's session cookie must carry the X-Permgate-Console header",
                ));
            }
            token = Some(session);
        }
        state.sign_in(client_ip(parts), token).await.map(SignedIn)
    }
}

/// The address the request came from, as an extractor.
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// The address the request came from, when the server knows it.
pub(crate) fn client_ip(parts: &Parts) -> Option<std::net::IpAddr> {
    parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
}

/// The console session's token from the `Cookie` header, if any.
pub(crate) fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == crate::console::COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// Parses a numeric id from the path, or answers -2 naming it.
pub fn id<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, ApiError> {
    text.parse().map_err(|_| ApiError::invalid(format!("{what} `{text}` is not a number")))
}

/// Wraps an axum extractor of request parts so that its rejection is 400 / -2 in the JSON shape
/// (prefixed with what was being read), not axum's plain text.
macro_rules! json_rejection {
    ($(#[$doc:meta])* $name:ident, $inner:ident, $what:literal) => {
        $(#[$doc])*
        pub struct $name<T>(pub T);

        impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for $name<T> {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
                match axum::extract::$inner::<T>::from_request_parts(parts, state).await {
                    Ok(axum::extract::$inner(value)) => Ok($name(value)),
                    Err(e) => Err(ApiError::invalid(format!(concat!($what, ": {}"), e.body_text()))),
                }
            }
        }
    };
}

json_rejection!(
    /// A query string whose errors (e.g. a repeated parameter) are JSON.
    Query,
    Query,
    "the query string"
);
json_rejection!(
    /// Path parameters whose errors (e.g. a segment that is not UTF-8 once decoded) are JSON.
    Path,
    Path,
    "the path"
);
