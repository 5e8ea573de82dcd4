//! The web console: a developer portal and a reviewer desk, served as three static files (no
//! build step) that use only the public HTTP API. Signing in exchanges an account token for an
//! HTTP-only, same-site cookie; the API accepts that cookie instead of `Authorization`, and for
//! any change also asks for the `X-Permgate-Console` header, which a cross-site form cannot send.

use axum::Json;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, SET_COOKIE, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, SignedIn};

/// The session cookie's name.
pub const COOKIE: &str = "permgate_session";
/// The header the console sends with every call; required for changes made with the cookie.
pub const CONSOLE_HEADER: &str = "x-permgate-console";
/// How long a console session lasts.
const SESSION_SECS: u32 = 12 * 3600;

const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'self'; frame-src 'self'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    // `frame-ancestors 'none'` for browsers that predate it, and no console URL (an app's or a
    // request's page) in the Referer of a link followed off the console.
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    r
}

pub async fn index() -> Response {
    asset(include_str!("index.html"), "text/html; charset=utf-8")
}

pub async fn script() -> Response {
    asset(include_str!("app.js"), "text/javascript; charset=utf-8")
}

pub async fn style() -> Response {
    asset(include_str!("app.css"), "text/css; charset=utf-8")
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    token: String,
}

/// The cookie, `Secure` when the console was reached over HTTPS (directly or through a proxy
/// that says so).
fn cookie(headers: &HeaderMap, value: &str, max_age: u32) -> HeaderValue {
    let https = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https");
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"))
        .unwrap_or(HeaderValue::from_static("permgate_session=; Path=/; Max-Age=0"))
}

/// `POST /v1/session {token}`: checks the token and sets the session cookie.
pub async fn sign_in(
    axum::extract::State(state): axum::extract::State<AppState>,
    crate::extract::ClientIp(ip): crate::extract::ClientIp,
    headers: HeaderMap,
    JsonBody(input): JsonBody<SignIn>,
) -> Result<Response, ApiError> {
    let token = input.token.trim().to_owned();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid("`token`: paste the account token as printed"));
    }
    let actor = state.sign_in(ip, Some(token.clone())).await?;
    let mut r = Json(json!(actor.account)).into_response();
    r.headers_mut().insert(SET_COOKIE, cookie(&headers, &token, SESSION_SECS));
    Ok(r)
}

/// `GET /v1/session`: the signed-in account with `signed_in: true`, or `{"signed_in": false}` (a
/// 200, so that a page asking before sign-in logs no error). A session cookie whose token is
/// refused is cleared: kept, it would count as a failed sign-in from this address on every page
/// load, towards the limit that then refuses everyone behind it.
pub async fn whoami(headers: HeaderMap, session: Result<SignedIn, ApiError>) -> Result<Response, ApiError> {
    match session {
        Ok(SignedIn(actor)) => {
            let mut v = json!(actor.account);
            v["signed_in"] = json!(true);
            Ok(Json(v).into_response())
        }
        Err(e) if e.code == -401 && e.status == StatusCode::UNAUTHORIZED => {
            let mut r = Json(json!({"signed_in": false, "msg": e.msg})).into_response();
            if crate::extract::session_cookie(&headers).is_some() {
                r.headers_mut().insert(SET_COOKIE, cookie(&headers, "", 0));
            }
            Ok(r)
        }
        Err(e) => Err(e),
    }
}

/// `DELETE /v1/session`: clears the cookie.
pub async fn sign_out(headers: HeaderMap) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(SET_COOKIE, cookie(&headers, "", 0));
    r
}
