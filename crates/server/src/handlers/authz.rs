//! `/v1/authz`: forward-auth for gateways that ask before proxying.
//!
//! - nginx `auth_request`: the original call in `X-Original-Method` and `X-Original-URI`.
//! - Traefik `ForwardAuth`: `X-Forwarded-Method` and `X-Forwarded-Uri`.
//! - Envoy `ext_authz` (HTTP, `path_prefix: /v1/authz`): the original method, and the original
//!   path after the prefix.
//!
//! Refused (400, -2) when a call is named both ways (`X-Original-*` and `X-Forwarded-*`: one set
//! came from the caller, since a proxy sends one), or when `Authorization`, `Origin` or `KA` comes
//! more than once (one call is decided on one credential, and an upstream might read the other).
//!
//! Allowed: 200 with `X-Permgate-App-Id`, `X-Permgate-Restriction`, `X-Permgate-User` and
//! `X-Permgate-Would-Deny` for the gateway to pass upstream, each present (empty when it does not
//! apply), so that a proxy copying them replaces any a caller sent. Denied: the Kakao status and `{"msg", "code"}` body, with
//! `X-Permgate-Code`, `X-Permgate-Status`, `X-Permgate-Msg` and `X-Permgate-Body` (the JSON
//! body, ASCII-escaped) so that a gateway which replaces the body (nginx) can send it back. The call is counted against its quotas.

use std::borrow::Cow;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;
use permgate_core::decision::{Decision, Query};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}

pub async fn authz(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.admit_gateway(&headers)?;
    refuse_ambiguity(&headers)?;
    let original_method = header(&headers, "x-original-method")
        .or_else(|| header(&headers, "x-forwarded-method"))
        .unwrap_or(method.as_str());
    let original_uri: Cow<'_, str> =
        match header(&headers, "x-original-uri").or_else(|| header(&headers, "x-forwarded-uri")) {
            Some(u) => Cow::Borrowed(u),
            None => {
                let rest = uri.path().strip_prefix("/v1/authz").unwrap_or("");
                let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
                Cow::Owned(format!("{rest}{query}"))
            }
        };
    if !original_uri.starts_with('/') {
        return Err(ApiError::invalid(
            "no original call: send X-Original-Method/X-Original-URI (nginx), X-Forwarded-Method/X-Forwarded-Uri (Traefik), or the path after /v1/authz (Envoy)",
        ));
    }
    let query = Query {
        method: original_method,
        path: &original_uri,
        authorization: header(&headers, "authorization"),
        origin: header(&headers, "origin"),
        ka: header(&headers, "ka"),
        recipients: &[],
        explain: false,
    };
    let decision = state.decide(&query, true).await?;
    Ok(respond(&decision))
}

/// Refuses a call named twice, or with a credential header given twice (see the module's notes).
fn refuse_ambiguity(headers: &HeaderMap) -> Result<(), ApiError> {
    let has = |name: &str| headers.contains_key(name);
    if (has("x-original-method") || has("x-original-uri")) && (has("x-forwarded-method") || has("x-forwarded-uri")) {
        return Err(ApiError::invalid(
            "the call is named twice, by X-Original-Method/X-Original-URI and by X-Forwarded-Method/X-Forwarded-Uri: \
             a proxy sends one set, so the other came from the caller; have the proxy pass only its own \
             (Traefik: authRequestHeaders)",
        ));
    }
    refuse_credential_twice(headers)
}

/// Refuses a call with a credential header (`Authorization`, `Origin` or `KA`) given more than
/// once: it is decided on one value, and an upstream might read the other. The gateway refuses
/// the same.
pub(crate) fn refuse_credential_twice(headers: &HeaderMap) -> Result<(), ApiError> {
    match ["authorization", "origin", "ka"].into_iter().find(|name| headers.get_all(*name).iter().nth(1).is_some()) {
        Some(name) => Err(ApiError::invalid(format!(
            "the {name} header is sent more than once: a call is decided on one credential"
        ))),
        None => Ok(()),
    }
}

/// Text made safe for a header value: non-ASCII and control characters become JSON `\\uXXXX`
/// escapes, which keeps a JSON body valid.
fn ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() && !c.is_ascii_control() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

fn respond(d: &Decision) -> Response {
    let mut headers = Vec::<(&'static str, String)>::new();
    if let Some(app) = d.app_id {
        headers.push(("x-permgate-app-id", app.to_string()));
    }
    let mut response = if d.allow {
        // Each one present, empty when it does not apply: Envoy copies only what the answer has,
        // and a caller's own `X-Permgate-User` must not reach the upstream as if permgate said so.
        let would_deny = d.would_deny.as_ref().map(|w| format!("{} {}", w.code, w.shadow));
        headers.push(("x-permgate-would-deny", would_deny.unwrap_or_default()));
        headers.push(("x-permgate-restriction", d.restriction.map(|r| r.as_str().to_owned()).unwrap_or_default()));
        headers.push(("x-permgate-user", ascii(d.user.as_deref().unwrap_or_default())));
        StatusCode::OK.into_response()
    } else {
        headers.push(("x-permgate-code", d.code.to_string()));
        headers.push(("x-permgate-status", d.status.to_string()));
        headers.push(("x-permgate-msg", ascii(&d.msg.clone().unwrap_or_default())));
        headers.push(("x-permgate-body", ascii(&d.error_body().to_string())));
        if let Some(seconds) = d.retry_after {
            headers.push(("retry-after", seconds.to_string()));
        }
        let status = StatusCode::from_u16(d.status).unwrap_or(StatusCode::FORBIDDEN);
        (status, Json(d.error_body())).into_response()
    };
    for (name, value) in headers {
        // Header values must be visible ASCII; a message that is not is dropped, not mangled.
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(HeaderName::from_static(name), value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::ascii;

    #[test]
    fn header_text_escapes_what_a_header_cannot_carry() {
        assert_eq!(ascii("permission denied"), "permission denied");
        assert_eq!(ascii("caller=https://한.example"), "caller=https://\\ud55c.example");
        assert_eq!(ascii("a\nb"), "a\\u000ab");
        let body = serde_json::json!({"msg": "é"}).to_string();
        let parsed: serde_json::Value = serde_json::from_str(&ascii(&body)).unwrap_or_default();
        assert_eq!(parsed["msg"], "é");
    }
}
