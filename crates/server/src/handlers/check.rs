//! `POST /v1/check`: the decision API. Always 200 with the decision, except a malformed body
//! (400 / -2). Decisions come from the in-memory snapshot and the quota counter; no database is
//! touched. A quota deny also carries `Retry-After`.
//!
//! The API server answers this route before the router (see [`crate::serve`]): it is the one
//! route gateways call per request, so it skips routing and middleware, and reads the body's
//! strings in place (no copy unless a string has escapes). The router's route answers through the
//! same [`check_body`], so both give the same answers (tested).

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;

use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use crate::AppState;
use crate::extract::{BodyBytes, parse_json, unreadable_body};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest<'a> {
    #[serde(borrow)]
    #[schemars(with = "String")]
    pub method: Text<'a>,
    #[serde(borrow)]
    #[schemars(with = "String")]
    pub path: Text<'a>,
    #[serde(default, borrow)]
    #[schemars(with = "HashMap<String, String>", extend("default" = {}))]
    pub headers: CallHeaders<'a>,
    /// Whether an allowed call counts against quota (default true).
    #[serde(default)]
    pub consume: Option<bool>,
    /// The call's recipients (e.g. a message's `receiver_uuids`), for recipient and pair quotas.
    #[serde(default, borrow)]
    #[schemars(with = "Vec<String>", extend("default" = []))]
    pub recipients: Vec<Text<'a>>,
}

/// A JSON string, borrowed from the body unless it has escapes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    fn str<'s>(text: &'s Option<Text<'_>>) -> Option<&'s str> {
        text.as_ref().map(|t| t.0.as_ref())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// The call's headers that a decision reads, from the `headers` object: names in any case (the
/// last of a name wins); every value must be a string, and other headers are ignored.
#[derive(Debug, Default)]
pub struct CallHeaders<'a> {
    pub authorization: Option<Text<'a>>,
    pub origin: Option<Text<'a>>,
    pub ka: Option<Text<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for CallHeaders<'a> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;
        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = CallHeaders<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header names to strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CallHeaders<'de>, A::Error> {
                let mut headers = CallHeaders::default();
                while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
                    let value = map.next_value::<Text<'de>>()?;
                    let slot = if name.eq_ignore_ascii_case("authorization") {
                        &mut headers.authorization
                    } else if name.eq_ignore_ascii_case("origin") {
                        &mut headers.origin
                    } else if name.eq_ignore_ascii_case("ka") {
                        &mut headers.ka
                    } else {
                        continue;
                    };
                    *slot = Some(value);
                }
                Ok(headers)
            }
        }
        deserializer.deserialize_map(HeadersVisitor)
    }
}

/// The router's route: the secret is checked before the body is read, as [`direct`] does.
pub async fn check(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    if let Err(e) = state.admit_gateway(request.headers()) {
        return e.into_response();
    }
    match BodyBytes::from_request(request, &state).await {
        Ok(BodyBytes(body)) => check_body(&state, &body).await,
        Err(e) => e.into_response(),
    }
}

/// The API server's direct answer to `POST /v1/check`, before the router: the body limit and the
/// time limit are the router's.
pub(crate) async fn direct(
    state: std::sync::Arc<AppState>,
    req: axum::http::Request<hyper::body::Incoming>,
) -> Result<Response, Infallible> {
    if let Err(e) = state.admit_gateway(req.headers()) {
        return Ok(e.into_response());
    }
    let limit = state.request_timeout;
    let answer = async {
        match Limited::new(req.into_body(), crate::MAX_JSON_BODY).collect().await {
            Ok(body) => check_body(&state, &body.to_bytes()).await,
            Err(e) => unreadable_body(&e.to_string()).into_response(),
        }
    };
    Ok(tokio::time::timeout(limit, answer).await.unwrap_or_else(|_| crate::timed_out(limit)))
}

/// Decides the call a `/v1/check` body describes.
pub(crate) async fn check_body(state: &AppState, body: &[u8]) -> Response {
    let req: CheckRequest<'_> = match parse_json(body) {
        Ok(req) => req,
        Err(e) => return e.into_response(),
    };
    if req.method.0.trim().is_empty() {
        return crate::ApiError::invalid("`method` must not be empty").into_response();
    }
    if !req.path.0.starts_with('/') {
        return crate::ApiError::invalid("`path` must start with `/`").into_response();
    }
    let recipients: Vec<&str> = req.recipients.iter().map(|r| r.0.as_ref()).collect();
    let query = permgate_core::Query {
        method: &req.method.0,
        path: &req.path.0,
        authorization: Text::str(&req.headers.authorization),
        origin: Text::str(&req.headers.origin),
        ka: Text::str(&req.headers.ka),
        recipients: &recipients,
        explain: true,
    };
    let decision = match state.decide(&query, req.consume.unwrap_or(true)).await {
        Ok(decision) => decision,
        Err(e) => return e.into_response(),
    };
    let mut json = Vec::with_capacity(512);
    if let Err(e) = serde_json::to_writer(&mut json, &decision) {
        return crate::ApiError::internal(format!("writing the decision: {e}")).into_response();
    }
    let mut response =
        (StatusCode::OK, [(CONTENT_TYPE, HeaderValue::from_static("application/json"))], Bytes::from(json))
            .into_response();
    if let Some(seconds) = decision.retry_after {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_read_in_place_unless_escaped() {
        let body = br#"{"method":"GET","path":"/v2/a\/b","headers":{"Authorization":"KakaoAK k","X-Other":"x","ka":"sdk\u0020"},"recipients":["r1"]}"#;
        let req: CheckRequest<'_> = parse_json(body).unwrap_or_else(|e| unreachable!("{}", e.msg));
        assert!(matches!(req.method.0, Cow::Borrowed("GET")));
        assert!(matches!(req.path.0, Cow::Owned(ref p) if p == "/v2/a/b"));
        assert!(matches!(req.headers.authorization, Some(Text(Cow::Borrowed("KakaoAK k")))));
        assert!(matches!(req.headers.ka, Some(Text(Cow::Owned(ref k))) if k == "sdk "));
        assert!(req.headers.origin.is_none());
        assert!(matches!(req.recipients.as_slice(), [Text(Cow::Borrowed("r1"))]));
    }

    #[test]
    fn a_cut_off_body_is_named_without_a_place() {
        let e = parse_json::<CheckRequest<'_>>(br#"{"method": "GET""#).err().map(|e| e.msg);
        assert_eq!(e.as_deref(), Some("the body is not valid JSON: EOF while parsing an object at line 1 column 16"));
    }

    #[test]
    fn header_values_must_be_strings() {
        let e = parse_json::<CheckRequest<'_>>(br#"{"method":"GET","path":"/","headers":{"x-other":1}}"#)
            .err()
            .map(|e| e.msg);
        assert!(
            e.as_ref().is_some_and(|m| m.contains("`headers.x-other`") && m.contains("expected a string")),
            "{e:?}"
        );
    }
}
