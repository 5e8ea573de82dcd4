//! The built-in gateway: a reverse proxy in front of the platform's APIs. Each call is decided
//! (and counted) by the same engine as `/v1/check`; an allowed call goes to the upstream its path
//! prefix names, with `X-Permgate-App-Id`, `X-Permgate-Restriction` and `X-Permgate-User`, its
//! body and the response streamed; a denied call gets the Kakao status and body. Responses of APIs
//! with guarded fields (`/v2/user/me`) are asked for unencoded and whole (no `Range`), read,
//! filtered and re-sent; one that cannot be read as JSON is not passed on (502), since its fields
//! could not be filtered. A call with `Authorization`, `Origin` or `KA` twice is refused (400).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{
    ACCEPT_ENCODING, ACCESS_CONTROL_REQUEST_METHOD, AUTHORIZATION, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, HOST,
    IF_RANGE, ORIGIN, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, RANGE, RETRY_AFTER, TE, TRAILER, TRANSFER_ENCODING,
    UPGRADE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use permgate_core::response;
use permgate_core::route::Method;

use crate::AppState;
use crate::error::ApiError;

/// Upstreams by path prefix; the longest matching prefix wins.
#[derive(Debug, Clone)]
pub struct Upstreams(Vec<(String, Uri)>);

impl Upstreams {
    /// Parses `http://api:9000` (everything) or `/v2/local=http://local:9000,/=http://api:9000`.
    pub fn parse(text: &str) -> Result<Upstreams, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (prefix, url) = match part.split_once('=') {
                Some((prefix, url)) => (prefix.trim().to_owned(), url.trim()),
                None => ("/".to_owned(), part),
            };
            if !prefix.starts_with('/') {
                return Err(format!("upstream prefix `{prefix}` must start with `/`"));
            }
            let uri: Uri = url.parse().map_err(|e| format!("upstream `{url}` is not a URL: {e}"))?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(format!(
                    "upstream `{url}` must be http://HOST:PORT (TLS to upstreams is not supported yet)"
                ));
            }
            out.push((prefix, uri));
        }
        if out.is_empty() {
            return Err("PERMGATE_UPSTREAM names no upstream".into());
        }
        out.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(Upstreams(out))
    }

    fn pick(&self, path: &str) -> Option<&Uri> {
        self.0.iter().find(|(prefix, _)| path.starts_with(prefix.as_str())).map(|(_, uri)| uri)
    }
}

/// Shared by every call (behind one `Arc`).
struct Gateway {
    state: AppState,
    upstreams: Upstreams,
    client: Client<HttpConnector, Body>,
    timeout: Duration,
}

/// The largest request body read to find a message's recipients, and the largest response body
/// read to filter guarded fields.
const MAX_BUFFERED: usize = 10 * 1024 * 1024;

/// Serves the gateway on `listener` until `shutdown` completes (as [`crate::serve`] serves the
/// API): every request on every path is proxied, handed straight to the proxy (no router).
pub async fn serve_gateway(
    listener: tokio::net::TcpListener,
    state: AppState,
    upstreams: Upstreams,
    timeout: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeout));
    // A request goes out as soon as it is written, as from nginx (`tcp_nodelay on`).
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
    let g = Arc::new(Gateway { state, upstreams, client, timeout });
    let proxy = move |req: axum::http::Request<hyper::body::Incoming>| {
        let g = g.clone();
        async move {
            Ok::<_, std::convert::Infallible>(match handle(g, req.map(Body::new)).await {
                Ok(r) | Err(r) => r,
            })
        }
    };
    crate::serve_with(listener, proxy, shutdown).await
}

static KA: HeaderName = HeaderName::from_static("ka");

static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Drops the hop-by-hop headers, and those `Connection` names as hop-by-hop (RFC 9110 7.6.1).
/// One pass over the (few) headers a call has finds whether there is any: most calls have none,
/// and each removal by name costs a lookup.
fn strip(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for h in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(h);
    }
}

fn gateway_error(status: StatusCode, msg: String) -> Response {
    (status, axum::Json(serde_json::json!({"msg": msg, "code": -1}))).into_response()
}

/// A denied call's answer: the Kakao status and body, and `Retry-After` on a quota deny.
fn denial(decision: &permgate_core::decision::Decision) -> Response {
    let status = StatusCode::from_u16(decision.status).unwrap_or(StatusCode::FORBIDDEN);
    let mut r = (status, axum::Json(decision.error_body())).into_response();
    if let Some(seconds) = decision.retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    r
}

async fn handle(g: Arc<Gateway>, req: Request) -> Result<Response, Response> {
    let services = g.state.services().map_err(IntoResponse::into_response)?;
    let (mut parts, body) = req.into_parts();
    crate::handlers::authz::refuse_credential_twice(&parts.headers).map_err(IntoResponse::into_response)?;
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if let Some(segment) = unsafe_segment(parts.uri.path()) {
        return Err(ApiError::invalid(format!(
            "the path segment `{segment}` is refused: a dot segment or an encoded `/`, `\\` or `.` could reach another path upstream than the one decided"
        ))
        .into_response());
    }
    if parts.method == axum::http::Method::OPTIONS && parts.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
        return preflight(&g, services, parts, body, &path_and_query).await;
    }
    let header = |name: &HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let (authorization, origin, ka) = (header(&AUTHORIZATION), header(&ORIGIN), header(&KA));
    let query = |recipients| permgate_core::Query {
        method: parts.method.as_str(),
        path: &path_and_query,
        authorization,
        origin,
        ka,
        recipients,
        explain: false,
    };

    // Message APIs count per recipient: read the body to find them, once the call is known to be
    // allowed (a denied caller makes the gateway read nothing), within the time limit. That first
    // look is the pure decision: it neither counts quota (a shared counter's round trip) nor shows
    // in the metrics; the counted decision below does both, once.
    let recipient_field = Method::parse(parts.method.as_str()).and_then(|m| {
        services.snapshot.read().catalog().route(m, &path_and_query).and_then(|a| a.recipient_from.clone())
    });
    let (body, recipients) = match recipient_field {
        None => (body, Vec::new()),
        Some(field) => {
            let first = permgate_core::decide(&services.snapshot.read(), &query(&[]), services.clock.now());
            if !first.allow {
                return Ok(denial(&first));
            }
            let bytes = tokio::time::timeout(g.timeout, axum::body::to_bytes(body, MAX_BUFFERED))
                .await
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        -2,
                        format!("the body did not arrive within {:?}", g.timeout),
                    )
                    .into_response()
                })?
                .map_err(|_| {
                    ApiError::invalid(format!("the body is larger than {MAX_BUFFERED} bytes")).into_response()
                })?;
            let recipients = recipients_in(&bytes, &field).map_err(|msg| ApiError::invalid(msg).into_response())?;
            (Body::from(bytes), recipients)
        }
    };

    let recipients: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let decision = g.state.decide(&query(&recipients), true).await.map_err(IntoResponse::into_response)?;
    if !decision.allow {
        return Ok(denial(&decision));
    }
    // Guarded fields are filtered from the whole, unencoded response.
    let guarded = response::guards_fields(&services.snapshot.read(), &decision);
    if guarded {
        parts.headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        parts.headers.remove(RANGE);
        parts.headers.remove(IF_RANGE);
    }
    let identity = [
        ("x-permgate-app-id", decision.app_id.map(|a| a.to_string())),
        ("x-permgate-restriction", decision.restriction.map(|r| r.as_str().to_owned())),
        ("x-permgate-would-deny", decision.would_deny.as_ref().map(|w| format!("{} {}", w.code, w.shadow))),
        ("x-permgate-user", decision.user.clone()),
    ];
    let (mut head, incoming) = forward(&g, parts, body, &path_and_query, identity).await?;

    if !(guarded && head.status.is_success()) {
        return Ok(Response::from_parts(head, Body::new(incoming)));
    }
    // Fails closed: a guarded answer that permgate cannot read is not passed on unfiltered.
    if let Some(encoding) =
        head.headers.get(CONTENT_ENCODING).filter(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(gateway_error(
            StatusCode::BAD_GATEWAY,
            format!(
                "the upstream's answer to an API with guarded fields is encoded ({}) although asked for identity: it cannot be filtered",
                String::from_utf8_lossy(encoding.as_bytes())
            ),
        ));
    }
    let bytes: Bytes = tokio::time::timeout(g.timeout, Limited::new(incoming, MAX_BUFFERED).collect())
        .await
        .map_err(|_| {
            gateway_error(StatusCode::GATEWAY_TIMEOUT, "the upstream's response did not finish in time".into())
        })?
        .map_err(|e| gateway_error(StatusCode::BAD_GATEWAY, format!("reading the upstream's response: {e}")))?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(Response::from_parts(head, Body::empty()));
    }
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Err(gateway_error(
            StatusCode::BAD_GATEWAY,
            "the upstream's answer to an API with guarded fields is not JSON: it cannot be filtered".into(),
        ));
    };
    response::filter(&services.snapshot.read(), &decision, services.clock.now(), &mut json);
    let out = json.to_string();
    head.headers.insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    Ok(Response::from_parts(head, Body::from(out)))
}

/// Sends a call upstream with permgate's `X-Permgate-*` headers set to `identity` (a caller's
/// own are dropped: only permgate sets them), and hands back the answer's head, without its
/// hop-by-hop headers, and body.
async fn forward(
    g: &Gateway,
    mut parts: axum::http::request::Parts,
    body: Body,
    path_and_query: &str,
    identity: [(&'static str, Option<String>); 4],
) -> Result<(axum::http::response::Parts, hyper::body::Incoming), Response> {
    let Some(base) = g.upstreams.pick(parts.uri.path()) else {
        return Err(gateway_error(StatusCode::BAD_GATEWAY, format!("no upstream serves {}", parts.uri.path())));
    };
    let target = upstream_uri(base, path_and_query)
        .map_err(|e| gateway_error(StatusCode::BAD_GATEWAY, format!("bad upstream URL: {e}")))?;
    strip(&mut parts.headers);
    parts.headers.remove(HOST);
    let own: Vec<HeaderName> =
        parts.headers.keys().filter(|k| k.as_str().starts_with("x-permgate-")).cloned().collect();
    for k in own {
        parts.headers.remove(k);
    }
    for (name, value) in identity {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            parts.headers.insert(HeaderName::from_static(name), v);
        }
    }
    parts.uri = target;
    let upstream_req = axum::http::Request::from_parts(parts, body);
    let response = match tokio::time::timeout(g.timeout, g.client.request(upstream_req)).await {
        Err(_) => {
            return Err(gateway_error(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the upstream did not answer within {:?}", g.timeout),
            ));
        }
        Ok(Err(e)) => return Err(gateway_error(StatusCode::BAD_GATEWAY, format!("the upstream is unreachable: {e}"))),
        Ok(Ok(r)) => r,
    };
    let (mut head, incoming) = response.into_parts();
    strip(&mut head.headers);
    Ok((head, incoming))
}

/// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`): a browser asks, without
/// any credential, whether a call from a web page's origin may be made. The upstream answers
/// with its own CORS policy; the call itself, with the JavaScript key and its `Origin`, is
/// decided when it comes. Only a preflight for an API the catalog knows is passed on.
async fn preflight(
    g: &Gateway,
    services: &permgate_core::service::Services,
    parts: axum::http::request::Parts,
    body: Body,
    path_and_query: &str,
) -> Result<Response, Response> {
    let requested = parts.headers.get(ACCESS_CONTROL_REQUEST_METHOD).and_then(|v| v.to_str().ok()).unwrap_or("");
    let known =
        Method::parse(requested).is_some_and(|m| services.snapshot.read().catalog().route(m, path_and_query).is_some());
    if !known {
        let path = permgate_core::route::without_query(path_and_query);
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            permgate_core::decision::code::NO_SUCH_API,
            format!("a preflight for no known API: no API matches {requested} {path}"),
        )
        .into_response());
    }
    let (head, incoming) = forward(g, parts, body, path_and_query, Default::default()).await?;
    Ok(Response::from_parts(head, Body::new(incoming)))
}

/// A path segment the gateway will not forward: `.` or `..` (an upstream resolving them would
/// serve another path than the one decided, e.g. `/openapi/v4/campaigns/../../../v1/...` through a
/// parameter), or one holding an encoded `/`, `\` or `.` (`%2F`, `%5C`, `%2E`: an upstream that
/// decodes before resolving would do the same).
fn unsafe_segment(path: &str) -> Option<&str> {
    // Nearly every path has neither a `%` nor a `/.`: one pass, no allocation.
    if !path.bytes().any(|b| b == b'%') && !path.contains("/.") {
        return None;
    }
    let encoded =
        |w: &[u8]| w[0] == b'%' && matches!((w[1], w[2].to_ascii_lowercase()), (b'2', b'f' | b'e') | (b'5', b'c'));
    path.split('/').find(|seg| *seg == "." || *seg == ".." || seg.as_bytes().windows(3).any(encoded))
}

/// Where a call goes: the upstream's scheme and authority, its path (if any) before the call's
/// path and query. The parsed parts are reused; only the path is parsed again.
fn upstream_uri(base: &Uri, path_and_query: &str) -> Result<Uri, axum::http::Error> {
    let prefix = base.path().trim_end_matches('/');
    let path = if prefix.is_empty() { path_and_query.to_owned() } else { format!("{prefix}{path_and_query}") };
    let mut builder = Uri::builder().path_and_query(path);
    if let Some(scheme) = base.scheme() {
        builder = builder.scheme(scheme.clone());
    }
    if let Some(authority) = base.authority() {
        builder = builder.authority(authority.clone());
    }
    builder.build()
}

/// The recipients a message names in `field`: a JSON body's array, or a form field holding a
/// JSON array string (`receiver_uuids=["a","b"]`). A message whose recipients cannot be told
/// exactly (the field missing, empty, given twice in a form, or not a list of strings) is refused:
/// counted as naming nobody, it would pass the per-recipient quotas uncharged, and Kakao refuses
/// it too (-2).
fn recipients_in(body: &[u8], field: &str) -> Result<Vec<String>, String> {
    let unreadable = || format!("`{field}` must be a non-empty JSON array of strings");
    let list = |v: &serde_json::Value| -> Result<Vec<String>, String> {
        let items: Vec<String> = match v {
            serde_json::Value::Array(items) => {
                items.iter().map(|i| i.as_str().map(str::to_owned)).collect::<Option<_>>().ok_or_else(unreadable)?
            }
            serde_json::Value::String(s) => serde_json::from_str(s).map_err(|_| unreadable())?,
            _ => return Err(unreadable()),
        };
        if items.is_empty() { Err(unreadable()) } else { Ok(items) }
    };
    let mut json = serde_json::Deserializer::from_slice(body);
    match serde::de::DeserializeSeed::deserialize(TopLevel(field), &mut json).and_then(|v| json.end().map(|()| v)) {
        Ok(value) => {
            return value
                .ok_or_else(|| format!("the message names no recipients: `{field}` is missing"))
                .and_then(|v| list(&v));
        }
        Err(e) if e.to_string().starts_with(TWICE) => {
            return Err(format!("`{field}` is given twice: which recipients the message goes to is ambiguous"));
        }
        // Not a JSON object: a form, or neither.
        Err(_) => {}
    }
    let text = std::str::from_utf8(body).map_err(|_| "the message body is neither JSON nor a UTF-8 form".to_owned())?;
    let mut found = text.split('&').filter_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == field).then(|| percent_decode(v))
    });
    let value = found.next().ok_or_else(|| format!("the message names no recipients: `{field}` is missing"))?;
    if found.next().is_some() {
        return Err(format!("`{field}` is given twice: which recipients the message goes to is ambiguous"));
    }
    list(&serde_json::Value::String(value))
}

/// The value of one key of a JSON object, refusing the key given twice: a parser keeps either the
/// first or the last of duplicate keys (serde_json the last), and an upstream that keeps the
/// other would send the message elsewhere than it was counted.
struct TopLevel<'f>(&'f str);

/// How [`TopLevel`]'s refusal of a duplicate key starts.
const TWICE: &str = "duplicate key";

impl<'de> serde::de::DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Option<serde_json::Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TopLevel<'_> {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != self.0 {
                map.next_value::<serde::de::IgnoredAny>()?;
            } else if found.is_some() {
                return Err(serde::de::Error::custom(TWICE));
            } else {
                found = Some(map.next_value::<serde_json::Value>()?);
            }
        }
        Ok(found)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
            .flatten();
        match (b[i], hex) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_encoded_separators_are_refused_and_nothing_else() {
        for bad in
            ["/a/../b", "/a/./b", "/..", "/openapi/v4/campaigns/..%2F..%2Fv1", "/a/%2e%2e/b", "/a/x%5Cy", "/a/%2E"]
        {
            assert!(unsafe_segment(bad).is_some(), "{bad}");
        }
        for good in ["/v2/local/search/keyword.json", "/a/b.c/d", "/a/...x", "/", "/a/%20b", "/v1/api/talk/friends"] {
            assert_eq!(unsafe_segment(good), None, "{good}");
        }
    }

    #[test]
    fn a_call_goes_to_the_upstream_with_its_path_and_query() {
        let uri = |base: &str, pq: &str| {
            upstream_uri(&base.parse().unwrap_or_else(|e| unreachable!("{e}")), pq).map(|u| u.to_string())
        };
        assert_eq!(uri("http://api:9000", "/v2/x?q=1").ok().as_deref(), Some("http://api:9000/v2/x?q=1"));
        assert_eq!(uri("http://api:9000/", "/v2/x").ok().as_deref(), Some("http://api:9000/v2/x"));
        assert_eq!(uri("http://api:9000/base/", "/v2/x?q").ok().as_deref(), Some("http://api:9000/base/v2/x?q"));
        assert!(uri("http://api:9000", "/bad path").is_err());
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_and_the_rest_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("KakaoAK k"));
        headers.insert("x-other", HeaderValue::from_static("1"));
        let untouched = headers.clone();
        strip(&mut headers);
        assert_eq!(headers, untouched, "no hop-by-hop header: nothing changes");
        for name in [
            "Connection",
            "keep-alive",
            "Proxy-Authenticate",
            "proxy-authorization",
            "TE",
            "trailer",
            "transfer-encoding",
            "Upgrade",
        ] {
            let mut with = untouched.clone();
            with.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| unreachable!("{e}")),
                HeaderValue::from_static("x"),
            );
            with.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            strip(&mut with);
            assert_eq!(with, untouched, "{name}");
        }
        let mut named = untouched.clone();
        named.append(CONNECTION, HeaderValue::from_static("close, X-Hop-One"));
        named.append(CONNECTION, HeaderValue::from_static("x-hop-two"));
        named.insert("x-hop-one", HeaderValue::from_static("1"));
        named.insert("x-hop-two", HeaderValue::from_static("2"));
        strip(&mut named);
        assert_eq!(named, untouched, "the headers `Connection` names go with it");
    }

    #[test]
    fn the_longest_prefix_picks_the_upstream() {
        let u =
            Upstreams::parse("/=http://api:9000, /v2/local=http://local:9001").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(u.pick("/v2/local/search/keyword.json").map(ToString::to_string), Some("http://local:9001/".into()));
        assert_eq!(u.pick("/v2/user/me").map(ToString::to_string), Some("http://api:9000/".into()));
        assert!(Upstreams::parse("https://api").is_err());
        assert!(Upstreams::parse("v2=http://api:1").is_err());
        assert!(Upstreams::parse("").is_err());
    }

    #[test]
    fn recipients_come_from_json_or_form_bodies() {
        let found = |body: &[u8]| recipients_in(body, "receiver_uuids");
        assert_eq!(found(br#"{"receiver_uuids": ["a", "b"]}"#), Ok(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(found(br#"{"receiver_uuids": "[\"a\"]"}"#), Ok(vec!["a".to_owned()]));
        let form = b"template_id=1&receiver_uuids=%5B%22x%22%2C%22y%22%5D";
        assert_eq!(found(form), Ok(vec!["x".to_owned(), "y".to_owned()]));
    }

    #[test]
    fn a_message_whose_recipients_are_unclear_is_refused() {
        let refused = |body: &[u8]| recipients_in(body, "receiver_uuids").err().unwrap_or_default();
        assert!(refused(b"").contains("missing"));
        assert!(refused(b"template_id=1").contains("missing"));
        assert!(refused(br#"{"template_id": 1}"#).contains("missing"));
        assert!(refused(b"receiver_uuids=oops%").contains("array of strings"));
        assert!(refused(b"receiver_uuids=%5B%5D").contains("array of strings"), "an empty list");
        assert!(refused(br#"{"receiver_uuids": [1, 2]}"#).contains("array of strings"));
        assert!(refused(br#"{"receiver_uuids": "a"}"#).contains("array of strings"));
        let twice = b"receiver_uuids=%5B%22x%22%5D&receiver_uuids=%5B%22y%22%2C%22z%22%5D";
        assert!(refused(twice).contains("twice"));
        // In JSON too, even spelled with an escape; other keys may repeat.
        assert!(refused(br#"{"receiver_uuids": ["a"], "receiver_uuids": ["b"]}"#).contains("twice"));
        assert!(refused(br#"{"receiver_uuids": ["a"], "receiver\u005fuuids": ["b"]}"#).contains("twice"));
        let found = recipients_in(br#"{"x": 1, "x": 2, "receiver_uuids": ["a"]}"#, "receiver_uuids");
        assert_eq!(found, Ok(vec!["a".to_owned()]));
    }
}
