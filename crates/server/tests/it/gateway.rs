//! The built-in gateway in front of a test upstream that echoes what it received.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::IntoResponse;
use permgate_server::{AppState, Upstreams, serve_gateway};
use permgate_testkit::{TestApp, both_backends, key_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An upstream answering `/v2/user/me` with a full user, calls with `x-test-slow` after 2 s, and anything else
/// with an echo of the call.
async fn upstream(name: &'static str) -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
        let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        if uri.path() == "/v2/user/me" && headers.contains_key("x-test-gzip") {
            return ([("content-type", "application/json"), ("content-encoding", "gzip")], "\u{1f}\u{8b}not-really").into_response();
        }
        if uri.path() == "/v2/user/me" && headers.contains_key("x-test-text") {
            return ([("content-type", "text/plain")], "email: ryan@kakao.example").into_response();
        }
        if uri.path() == "/v2/user/me" {
            return axum::Json(json!({
                "seen_accept_encoding": get("accept-encoding"), "seen_range": get("range"),
                "id": 42, "account_id": 7, "talk_user_id": 9,
                "kakao_account": {
                    "profile_nickname_needs_agreement": false, "profile": {"nickname": "Ryan"},
                    "email_needs_agreement": false, "email": "ryan@kakao.example", "is_email_valid": true
                }
            }))
            .into_response();
        }
        if headers.contains_key("x-test-slow") {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        axum::Json(json!({
            "upstream": name, "method": method.as_str(), "uri": uri.to_string(),
            "app_id": get("x-permgate-app-id"), "restriction": get("x-permgate-restriction"), "user": get("x-permgate-user"),
            "body": String::from_utf8_lossy(&body), "hop": get("x-hop"),
        }))
        .into_response()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| unreachable!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| unreachable!("{e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn gateway(t: &TestApp, upstreams: &str, timeout: Duration) -> String {
    let upstreams = Upstreams::parse(upstreams).unwrap_or_else(|e| unreachable!("{e}"));
    let state = AppState::new(t.services.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| unreachable!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| unreachable!("{e}"));
    tokio::spawn(serve_gateway(listener, state, upstreams, timeout, std::future::pending()));
    format!("http://{addr}")
}

async fn send(t: &TestApp, req: reqwest::RequestBuilder) -> (StatusCode, Option<String>, Value) {
    let _ = t;
    let resp = req.send().await.unwrap_or_else(|e| unreachable!("{e}"));
    let status = resp.status();
    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, retry, resp.json().await.unwrap_or_default())
}

both_backends! {
    async fn allowed_calls_reach_their_upstream_with_permgate_headers_and_denials_do_not(t) {
        let main = upstream("main").await;
        let local = upstream("local").await;
        let gw = gateway(&t, &format!("/=http://{main},/v2/local=http://{local}"), Duration::from_secs(5)).await;
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let rest = format!("KakaoAK {}", key_of(&app, "rest_api"));
        t.consent(id, &dev, &["friends", "talk_message"]).await;
        let user = format!("Bearer {}", t.user_token(id, "u1", "friends talk_message"));

        let (status, _, body) = send(&t, t.client.get(format!("{gw}/v2/local/search/keyword.json?query=coffee"))
            .header("authorization", &rest).header("x-permgate-app-id", "999")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["upstream"], "local", "the longest prefix wins");
        assert_eq!(body["uri"], "/v2/local/search/keyword.json?query=coffee");
        assert_eq!(body["app_id"], id.to_string(), "a caller's own X-Permgate-App-Id is replaced");

        let (status, _, body) = send(&t, t.client.get(format!("{gw}/v1/api/talk/friends")).header("authorization", &user)).await;
        assert_eq!((status, body["upstream"].as_str(), body["restriction"].as_str(), body["user"].as_str()),
            (StatusCode::OK, Some("main"), Some("members_only"), Some("u1")), "{body}");

        let form = "template_id=1&receiver_uuids=%5B%22friend-1%22%5D";
        let (status, _, body) = send(&t, t.client.post(format!("{gw}/v1/api/talk/friends/message/default/send"))
            .header("authorization", &user).header("content-type", "application/x-www-form-urlencoded").body(form)).await;
        assert_eq!((status, body["body"].as_str()), (StatusCode::OK, Some(form)), "the body reaches the upstream intact");

        let (status, _, body) = send(&t, t.client.get(format!("{gw}/openapi/v4/adAccounts/pages")).header("authorization", &user)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body, json!({"msg": "permission denied", "code": -5, "permission": "kakao_moment", "request_url": format!("/v1/apps/{id}/permission-requests")}));

        let (status, _, body) = send(&t, t.client.get(format!("{gw}/v2/local/search/keyword.json"))).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::UNAUTHORIZED, Some(-401)));
    }
}

both_backends! {
    async fn preflights_pass_to_the_upstream_and_hop_headers_and_unclear_recipients_do_not(t) {
        let main = upstream("main").await;
        let gw = gateway(&t, &format!("http://{main}"), Duration::from_secs(5)).await;
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        let rest = format!("KakaoAK {}", key_of(&app, "rest_api"));

        // A browser's CORS preflight carries no credential: the upstream answers it.
        let preflight = |path: &str, method: &str| {
            t.client.request(Method::OPTIONS, format!("{gw}{path}"))
                .header("origin", "https://shop.example").header("access-control-request-method", method)
        };
        let (status, _, body) = send(&t, preflight("/v2/local/search/keyword.json", "GET")).await;
        assert_eq!((status, body["method"].as_str(), body["app_id"].as_str()), (StatusCode::OK, Some("OPTIONS"), Some("")), "{body}");
        let (status, _, body) = send(&t, preflight("/v2/nothing/here", "GET")).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::NOT_FOUND, Some(-404)), "{body}");
        let (status, _, body) = send(&t, t.client.request(Method::OPTIONS, format!("{gw}/v2/local/search/keyword.json"))).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "an OPTIONS call that is no preflight: {body}");

        // Headers that `Connection` names are for one hop only.
        let (status, _, body) = send(&t, t.client.get(format!("{gw}/v2/local/search/keyword.json"))
            .header("authorization", &rest).header("connection", "x-hop").header("x-hop", "secret")).await;
        assert_eq!((status, body["hop"].as_str()), (StatusCode::OK, Some("")), "{body}");

        // A message whose recipients cannot be told exactly is not sent uncharged.
        t.consent(id, &dev, &["friends", "talk_message"]).await;
        let user = format!("Bearer {}", t.user_token(id, "u1", "friends talk_message"));
        let message = |form: &'static str| {
            t.client.post(format!("{gw}/v1/api/talk/friends/message/default/send")).header("authorization", &user)
                .header("content-type", "application/x-www-form-urlencoded").body(form)
        };
        let (status, _, body) = send(&t, message("template_id=1&receiver_uuids=%5B%22a%22%5D&receiver_uuids=%5B%22b%22%5D")).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{body}");
        assert!(body["msg"].as_str().is_some_and(|m| m.contains("twice")), "{body}");
        let (status, _, body) = send(&t, message("template_id=1")).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{body}");
    }
}

both_backends! {
    async fn a_quota_deny_at_the_gateway_carries_retry_after(t) {
        let main = upstream("main").await;
        let gw = gateway(&t, &format!("http://{main}"), Duration::from_secs(5)).await;
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Ads").await;
        let id = app["id"].as_i64().unwrap_or_default();
        t.post(&format!("/v1/apps/{id}/permissions"), &t.admin, json!({"permission": "kakao_moment", "reason": "agency"})).await;
        let user = format!("Bearer {}", t.user_token(id, "u1", ""));
        let post = || t.client.post(format!("{gw}/openapi/v4/adAccounts")).header("authorization", &user);
        assert_eq!(send(&t, post()).await.0, StatusCode::OK);
        let (status, retry, body) = send(&t, post()).await;
        assert_eq!((status, retry.as_deref(), body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some("1"), Some(-10)), "{body}");
    }
}

/// A gateway in front of the test upstream, and an app with Kakao Login whose user consented to
/// their nickname only: the gateway's URL, the app's id and the user's `Authorization`.
async fn login_gateway(t: &TestApp) -> (String, i64, String) {
    let main = upstream("main").await;
    let gw = gateway(t, &format!("http://{main}"), Duration::from_secs(5)).await;
    let (_, dev) = t.account("dev", "developer").await;
    let app = t.app(&dev, "Login").await;
    let id = app["id"].as_i64().unwrap_or_default();
    t.put(&format!("/v1/apps/{id}/products/kakao_login"), &dev, json!({"activated": true})).await;
    t.consent(id, &dev, &["profile_nickname"]).await;
    (gw, id, format!("Bearer {}", t.user_token(id, "u1", "profile_nickname")))
}

both_backends! {
    async fn user_info_is_filtered_by_consent_and_response_permissions(t) {
        let (gw, id, user) = login_gateway(&t).await;
        let me = || t.client.get(format!("{gw}/v2/user/me")).header("authorization", &user);

        let (status, _, body) = send(&t, me()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["kakao_account"]["profile"]["nickname"], "Ryan", "consented");
        assert!(body["kakao_account"].get("email").is_none(), "{body}");
        assert!(body["kakao_account"].get("is_email_valid").is_none(), "{body}");
        assert_eq!(body["kakao_account"]["email_needs_agreement"], true, "Kakao's convention for withheld fields");
        assert!(body.get("account_id").is_none() && body.get("talk_user_id").is_none(), "internal fields need their permission: {body}");
        assert_eq!(body["id"], 42);

        t.post(&format!("/v1/apps/{id}/permissions"), &t.admin, json!({"permission": "account_id_response", "reason": "affiliate"})).await;
        let (_, _, body) = send(&t, me()).await;
        assert_eq!(body["account_id"], 7, "{body}");
        assert!(body.get("talk_user_id").is_none());
    }
}

both_backends! {
    async fn a_guarded_answer_is_asked_for_whole_and_unencoded_and_never_passed_on_unread(t) {
        let (gw, _, user) = login_gateway(&t).await;
        let me = || t.client.get(format!("{gw}/v2/user/me")).header("authorization", &user);

        // The caller asks for gzip and a part; the upstream is asked for neither.
        let (status, _, body) = send(&t, me().header("accept-encoding", "gzip").header("range", "bytes=0-20")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!((body["seen_accept_encoding"].as_str(), body["seen_range"].as_str()), (Some("identity"), Some("")));
        assert!(body["kakao_account"].get("email").is_none(), "{body}");
        // An upstream that encodes anyway, or answers with what is not JSON: nothing of it is
        // passed on, since its personal fields could not be filtered.
        let (status, _, body) = send(&t, me().header("x-test-gzip", "1")).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_GATEWAY, Some(-1)), "{body}");
        assert!(body["msg"].as_str().is_some_and(|m| m.contains("encoded (gzip)")), "{body}");
        let (status, _, body) = send(&t, me().header("x-test-text", "1")).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_GATEWAY, Some(-1)), "{body}");
        assert!(body.to_string().find("ryan@").is_none(), "{body}");
    }
}

/// Sends `head` (a request head announcing a body that never comes) straight to the gateway:
/// the status it answers with and how long that took.
async fn status_without_the_body(gw: &str, head: String) -> (u16, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::net::TcpStream::connect(gw.trim_start_matches("http://")).await.unwrap_or_else(|e| unreachable!("{e}"));
    stream.write_all(head.as_bytes()).await.unwrap_or_else(|e| unreachable!("{e}"));
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| unreachable!("no answer within 5 s"))
        .unwrap_or_else(|e| unreachable!("{e}"));
    let text = String::from_utf8_lossy(&buf[..n]);
    (text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), started.elapsed())
}

both_backends! {
    async fn a_message_body_is_read_only_for_an_allowed_call_and_only_for_so_long(t) {
        let main = upstream("main").await;
        let timeout = Duration::from_millis(300);
        let gw = gateway(&t, &format!("http://{main}"), timeout).await;
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let id = app["id"].as_i64().unwrap_or_default();
        t.consent(id, &dev, &["friends", "talk_message"]).await;
        let user = format!("Bearer {}", t.user_token(id, "u1", "friends talk_message"));
        let head = |auth: &str| format!(
            "POST /v1/api/talk/friends/message/default/send HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 1000000\r\n{auth}\r\n"
        );
        // Without a credential the call is denied before its body is waited for.
        let (status, took) = status_without_the_body(&gw, head("")).await;
        assert_eq!(status, 401);
        assert!(took < timeout, "took {took:?}");
        // An allowed call whose body does not come is answered when the time limit passes.
        let (status, took) = status_without_the_body(&gw, head(&format!("authorization: {user}\r\n"))).await;
        assert_eq!(status, 408);
        assert!(took >= timeout && took < timeout * 6, "took {took:?}");

        // A dot segment, or an encoded separator, could reach another path upstream than the one
        // decided: refused before anything is forwarded.
        let escape = format!("GET /openapi/v4/campaigns/..%2F..%2F..%2Fv1%2Fapi%2Ftalk%2Ffriends HTTP/1.1\r\nhost: x\r\nauthorization: {user}\r\n\r\n");
        assert_eq!(status_without_the_body(&gw, escape).await.0, 400);
        let dots = format!("GET /v2/local/search/../../../v1/api/talk/friends HTTP/1.1\r\nhost: x\r\nauthorization: {user}\r\n\r\n");
        assert_eq!(status_without_the_body(&gw, dots).await.0, 400);

        // Two credentials: refused, whichever the upstream would have read.
        let (status, _, body) = send(&t, t.client.get(format!("{gw}/v2/local/search/keyword.json"))
            .header("authorization", &user).header("authorization", format!("KakaoAK {}", key_of(&app, "rest_api")))).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(-2)), "{body}");
    }
}

both_backends! {
    async fn an_unreachable_or_slow_upstream_gets_a_clear_error_not_a_hang(t) {
        let main = upstream("main").await;
        let dead = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap_or_else(|e| unreachable!("{e}"));
        let gw = gateway(&t, &format!("/v2/local/search=http://{main},/=http://{dead}"), Duration::from_millis(300)).await;
        let (_, dev) = t.account("dev", "developer").await;
        let app = t.app(&dev, "Shop").await;
        let rest = format!("KakaoAK {}", key_of(&app, "rest_api"));
        let (status, _, body) = send(&t, t.client.get(format!("{gw}/v2/local/geo/coord2address.json")).header("authorization", &rest)).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_GATEWAY, Some(-1)), "{body}");
        assert!(body["msg"].as_str().is_some_and(|m| m.contains("unreachable")), "{body}");
        let started = std::time::Instant::now();
        let (status, _, body) = send(&t, t.client.get(format!("{gw}/v2/local/search/keyword.json"))
            .header("authorization", &rest).header("x-test-slow", "1")).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::GATEWAY_TIMEOUT, Some(-1)), "{body}");
        assert!(started.elapsed() < Duration::from_secs(2), "answered before the upstream did");
        // A path the catalog does not know is denied before any upstream is asked.
        let (status, _, _) = send(&t, t.client.get(format!("{gw}/nothing/here")).header("authorization", &rest)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
