//! A real nginx (from Debian's packages; `.ci/run` installs it) in front of a test upstream, with
//! `examples/nginx/permgate.conf` exactly as the README gives it, asking permgate through
//! `/v1/authz`. Skipped with a notice where nginx is not installed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use permgate_testkit::{TestApp, free_port, key_of, scratch_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};

const RECIPE: &str = include_str!("../../../../examples/nginx/permgate.conf");

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_binary() -> Option<String> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| (*p).to_owned())
}

/// An upstream that answers with the permgate headers nginx passed it.
async fn upstream() -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
        let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        axum::Json(
            json!({"upstream": true, "app_id": get("x-permgate-app-id"), "restriction": get("x-permgate-restriction"),
                "user": get("x-permgate-user"), "would_deny": get("x-permgate-would-deny")}),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| unreachable!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| unreachable!("{e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test]
async fn nginx_auth_request_passes_allowed_calls_and_answers_denials_like_kakao() {
    let Some(nginx) = nginx_binary() else {
        eprintln!("skipping: nginx is not installed (apt-get install nginx-light)");
        return;
    };
    let t = TestApp::spawn().await;
    let upstream = upstream().await;
    let dir = scratch_dir("nginx");
    let port = free_port();
    let site = RECIPE
        .replace("listen 8000;", &format!("listen 127.0.0.1:{port};"))
        .replace("127.0.0.1:8080", &t.addr.to_string())
        .replace("127.0.0.1:9000", &upstream.to_string());
    std::fs::write(dir.0.join("permgate.conf"), site).unwrap_or_else(|e| unreachable!("{e}"));
    let d = dir.0.display();
    let main = format!(
        "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n\
         uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi; include {d}/permgate.conf; }}\n"
    );
    std::fs::write(dir.0.join("nginx.conf"), main).unwrap_or_else(|e| unreachable!("{e}"));
    let child = Command::new(&nginx)
        .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| unreachable!("{e}"));
    let _nginx = Nginx(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(dir.0.join("error.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (_, dev) = t.account("dev", "developer").await;
    let app = t.app(&dev, "Shop").await;
    let id = app["id"].as_i64().unwrap_or_default();
    let rest = format!("KakaoAK {}", key_of(&app, "rest_api"));
    t.consent(id, &dev, &["friends"]).await;
    let user = format!("Bearer {}", t.user_token(id, "u1", "friends"));
    let get = |path: &str, auth: &str| {
        t.client.get(format!("http://127.0.0.1:{port}{path}")).header("authorization", auth.to_owned()).send()
    };
    let read = |r: reqwest::Response| async move {
        let status = r.status();
        let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body: Value = r.json().await.unwrap_or_default();
        (status, retry, body)
    };

    let (status, _, body) =
        read(get("/v2/local/search/keyword.json?query=coffee", &rest).await.unwrap_or_else(|e| unreachable!("{e}")))
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["upstream"].as_bool(), body["app_id"].as_str()), (Some(true), Some(id.to_string().as_str())));

    let (status, _, body) =
        read(get("/v1/api/talk/friends", &user).await.unwrap_or_else(|e| unreachable!("{e}"))).await;
    assert_eq!((status, body["restriction"].as_str()), (StatusCode::OK, Some("members_only")), "{body}");
    assert_eq!(body["user"].as_str(), Some("u1"), "{body}");

    // permgate's headers reach the upstream from permgate only: a caller's own are replaced.
    let forged = t
        .client
        .get(format!("http://127.0.0.1:{port}/v2/local/search/keyword.json?query=coffee"))
        .header("authorization", rest.clone())
        .header("x-permgate-user", "someone-else")
        .header("x-permgate-restriction", "none")
        .header("x-permgate-would-deny", "0 forged")
        .header("x-permgate-app-id", "1")
        .send()
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    let (status, _, body) = read(forged).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["user"].as_str(), body["restriction"].as_str(), body["would_deny"].as_str()),
        (Some(""), Some(""), Some("")),
        "{body}"
    );
    assert_eq!(body["app_id"].as_str(), Some(id.to_string().as_str()));

    let (status, _, body) =
        read(get("/openapi/v4/adAccounts/pages", &user).await.unwrap_or_else(|e| unreachable!("{e}"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!((body["msg"].as_str(), body["code"].as_i64()), (Some("permission denied"), Some(-5)), "{body}");

    let (status, _, body) =
        read(get("/v2/local/search/keyword.json", "KakaoAK not-a-key").await.unwrap_or_else(|e| unreachable!("{e}")))
            .await;
    assert_eq!((status, body["code"].as_i64()), (StatusCode::UNAUTHORIZED, Some(-401)), "{body}");

    // A per-second quota (Moment's ad account creation, 1 a second): the second call is -10.
    t.post(&format!("/v1/apps/{id}/permissions"), &t.admin, json!({"permission": "kakao_moment", "reason": "agency"}))
        .await;
    let post = || {
        t.client
            .post(format!("http://127.0.0.1:{port}/openapi/v4/adAccounts"))
            .header("authorization", user.clone())
            .send()
    };
    let (status, _, _) = read(post().await.unwrap_or_else(|e| unreachable!("{e}"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, retry, body) = read(post().await.unwrap_or_else(|e| unreachable!("{e}"))).await;
    assert_eq!(
        (status, body["code"].as_i64(), retry.as_deref()),
        (StatusCode::BAD_REQUEST, Some(-10), Some("1")),
        "{body}"
    );
}

#[test]
fn the_readme_gives_the_tested_recipe() {
    let readme = include_str!("../../../../README.md");
    assert!(readme.contains(RECIPE.trim()), "README.md's nginx recipe differs from examples/nginx/permgate.conf");
}
