//! Dev-only helpers for permgate's tests: a real server on port 0 over a fresh SQLite file, a
//! manual clock, and small HTTP helpers that return `(status, json)`.
//!
//! # Layout
//! - [`TestApp::spawn`] builds the whole stack (store, catalog, snapshot, services, router) and
//!   serves it on an ephemeral port; dropping it stops the server and deletes the database.
//! - [`TestApp`]'s methods speak the public HTTP API only, as an outside client would.
//! - The clock is a [`ManualClock`] the test moves; nothing sleeps.
//! - [`scratch_dir`] gives each test its own directory; [`pg::fresh_schema`] its own PostgreSQL
//!   schema; [`both_backends!`] runs one HTTP test over each backend.

pub mod browser;
pub mod conformance;
pub mod pg;
pub mod redis_keys;
pub mod smtp_sink;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use permgate_core::catalog::Catalog;
use permgate_core::credential::{TokenVerifier, mint_user_token};
use permgate_core::model::AppId;
use permgate_core::notify::NotifySettings;
use permgate_core::ports::Store;
use permgate_core::service::{BootstrapOutcome, Services};
use permgate_core::snapshot::{SharedSnapshot, Snapshot};
use permgate_core::time::{ManualClock, Timestamp};
use permgate_server::AppState;
use permgate_store_postgres::PostgresStore;
use permgate_store_sqlite::SqliteStore;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// 2026-11-28T00:00:00Z: where test clocks start.
pub const EPOCH: Timestamp = Timestamp(1_795_824_000);
/// The HS256 secret test servers verify user tokens with.
pub const JWT_SECRET: &str = "testkit-jwt-secret";
/// The bootstrap admin token of test servers.
pub const ADMIN_TOKEN: &str = "testkit-admin-token-0123456789";

/// A port that nothing listens on now (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| unreachable!("{e}"));
    l.local_addr().map(|a| a.port()).unwrap_or_else(|e| unreachable!("{e}"))
}

/// A directory of its own for one test, removed when dropped.
#[derive(Debug)]
pub struct ScratchDir(pub PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes a fresh, empty directory for one test.
pub fn scratch_dir(label: &str) -> ScratchDir {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "permgate-test-{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        unreachable!("cannot create {}: {e}", dir.display());
    }
    ScratchDir(dir)
}

/// A running permgate over a fresh database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub services: Services,
    pub admin: String,
    server: tokio::task::JoinHandle<()>,
    _dir: ScratchDir,
    _schema: Option<pg::PgSchema>,
}

/// Runs blocking work on tokio's blocking pool and waits for it.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => unreachable!("blocking task failed: {e}"),
    }
}

/// Declares an HTTP test that runs twice: over SQLite (`<name>::sqlite`) and over PostgreSQL
/// (`<name>::postgres`, skipped with a notice when `PERMGATE_TEST_DATABASE_URL` is not set).
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($t:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports, reason = "the test body uses some of its file's imports")]
            use super::*;

            async fn run($t: $crate::TestApp) $body

            #[tokio::test]
            async fn sqlite() {
                run($crate::TestApp::spawn().await).await
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(t) = $crate::TestApp::spawn_postgres().await {
                    run(t).await
                }
            }
        }
    )*};
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    /// Starts a server with the built-in catalog.
    pub async fn spawn() -> TestApp {
        let catalog = match Catalog::builtin() {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        Self::spawn_with(catalog).await
    }

    /// Starts a server with `catalog` over a fresh SQLite file.
    pub async fn spawn_with(catalog: Catalog) -> TestApp {
        let dir = scratch_dir("http");
        let store = match SqliteStore::open(&dir.0.join("permgate.db")) {
            Ok(s) => Arc::new(s),
            Err(e) => unreachable!("{e}"),
        };
        Self::spawn_over(store, catalog, dir, None, NotifySettings::default()).await
    }

    /// Starts a server with the built-in catalog that notifies request transitions as `notify`
    /// says, over SQLite or (`postgres`) PostgreSQL (`None` without `PERMGATE_TEST_DATABASE_URL`).
    /// Nothing delivers by itself: tests call [`TestApp::deliver`].
    pub async fn spawn_notifying(notify: NotifySettings, postgres: bool) -> Option<TestApp> {
        let catalog = Catalog::builtin().unwrap_or_else(|e| unreachable!("{e}"));
        if postgres {
            let (store, schema) = Self::postgres_store().await?;
            return Some(Self::spawn_over(store, catalog, scratch_dir("http-pg"), Some(schema), notify).await);
        }
        let dir = scratch_dir("http");
        let store = Arc::new(SqliteStore::open(&dir.0.join("permgate.db")).unwrap_or_else(|e| unreachable!("{e}")));
        Some(Self::spawn_over(store, catalog, dir, None, notify).await)
    }

    /// One delivery round over the outbox, as the delivery thread runs it, at the test's clock.
    pub async fn deliver(&self, delivery: Arc<permgate_server::Delivery>) -> usize {
        let services = self.services.clone();
        let clock = self.clock.clone();
        blocking(move || permgate_server::deliver_due(services.store.as_ref(), clock.as_ref(), &delivery))
            .await
            .unwrap_or_else(|e| unreachable!("delivery round: {e}"))
    }

    /// Starts a server with the built-in catalog over a fresh PostgreSQL schema, or `None` when
    /// `PERMGATE_TEST_DATABASE_URL` is not set.
    pub async fn spawn_postgres() -> Option<TestApp> {
        let (store, schema) = Self::postgres_store().await?;
        let catalog = match Catalog::builtin() {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        Some(Self::spawn_over(store, catalog, scratch_dir("http-pg"), Some(schema), NotifySettings::default()).await)
    }

    async fn postgres_store() -> Option<(Arc<dyn Store>, pg::PgSchema)> {
        let schema = pg::fresh_schema("http")?;
        let url = schema.url.clone();
        let store = blocking(move || {
            let store = PostgresStore::connect(&url)?;
            store.migrate()?;
            Ok::<_, permgate_core::ports::StoreError>(store)
        })
        .await;
        let store: Arc<dyn Store> = match store {
            Ok(s) => Arc::new(s),
            Err(e) => unreachable!("{e}"),
        };
        Some((store, schema))
    }

    async fn spawn_over(
        store: Arc<dyn Store>,
        catalog: Catalog,
        dir: ScratchDir,
        schema: Option<pg::PgSchema>,
        notify: NotifySettings,
    ) -> TestApp {
        let clock = Arc::new(ManualClock::new(EPOCH));
        let verifier = TokenVerifier::new(Some(JWT_SECRET.as_bytes()));
        let snapshot = Snapshot::build(Arc::new(catalog), Arc::new(verifier), Vec::new());
        let services =
            Services::new(store, Arc::new(SharedSnapshot::new(snapshot)), clock.clone()).with_notifications(notify);
        let boot = services.clone();
        match blocking(move || boot.bootstrap_admin(Some(ADMIN_TOKEN))).await {
            Ok(BootstrapOutcome::FromConfiguration(_)) => {}
            other => unreachable!("bootstrap: {other:?}"),
        }
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => unreachable!("bind: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => unreachable!("{e}"),
        };
        let mut state = AppState::new(services.clone());
        state.catalog_path = Some(dir.0.join("catalog.toml").into());
        let server = tokio::spawn(async move {
            let _ = permgate_server::serve(listener, state, std::future::pending()).await;
        });
        TestApp {
            addr,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            clock,
            services,
            admin: ADMIN_TOKEN.to_owned(),
            server,
            _dir: dir,
            _schema: schema,
        }
    }

    /// Runs a store or service call off the async runtime (the PostgreSQL driver blocks).
    pub async fn store<T: Send + 'static>(&self, f: impl FnOnce(&Services) -> T + Send + 'static) -> T {
        let services = self.services.clone();
        blocking(move || f(&services)).await
    }

    /// Sends a request; `body` is sent as raw text when it is a JSON string, else as JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match body {
            Some(Value::String(raw)) => req = req.header("content-type", "application/json").body(raw),
            Some(v) => req = req.json(&v),
            None => {}
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => unreachable!("{path}: {e}"),
        };
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let json =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, json)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), body).await
    }

    /// Creates an account with `role`; returns `(id, token)`.
    pub async fn account(&self, name: &str, role: &str) -> (i64, String) {
        let (status, body) =
            self.post("/v1/accounts", &self.admin, serde_json::json!({"name": name, "role": role})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (body["id"].as_i64().unwrap_or_default(), body["token"].as_str().unwrap_or_default().to_owned())
    }

    /// Creates an account with `role` and an e-mail address; returns `(id, token)`.
    pub async fn account_with_email(&self, name: &str, role: &str, email: &str) -> (i64, String) {
        let body = serde_json::json!({"name": name, "role": role, "email": email});
        let (status, body) = self.post("/v1/accounts", &self.admin, body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (body["id"].as_i64().unwrap_or_default(), body["token"].as_str().unwrap_or_default().to_owned())
    }

    /// `POST /v1/apps/{app}/permission-requests` as `multipart/form-data`: the text `fields` and,
    /// if given, the evidence file `(file name, bytes)` in part `file`.
    pub async fn apply(
        &self,
        app: i64,
        token: &str,
        fields: &[(&str, &str)],
        file: Option<(&str, Vec<u8>)>,
    ) -> (StatusCode, Value) {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text((*k).to_owned(), (*v).to_owned());
        }
        if let Some((name, bytes)) = file {
            form = form.part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()));
        }
        let req = self
            .client
            .post(format!("{}/v1/apps/{app}/permission-requests", self.base))
            .bearer_auth(token)
            .multipart(form);
        let resp = req.send().await.unwrap_or_else(|e| unreachable!("apply: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `POST /v1/permission-requests/{id}/actions`.
    pub async fn act(&self, request: i64, token: &str, body: Value) -> (StatusCode, Value) {
        self.post(&format!("/v1/permission-requests/{request}/actions"), token, body).await
    }

    /// Sets `scopes` as consent items of `app` (an API needing an unset item answers -3).
    pub async fn consent(&self, app: i64, token: &str, scopes: &[&str]) {
        for scope in scopes {
            let body = serde_json::json!({"consent_type": "optional", "purpose": "test"});
            let (status, set) = self.put(&format!("/v1/apps/{app}/consent-items/{scope}"), token, body).await;
            assert_eq!(status, StatusCode::OK, "{set}");
        }
    }

    /// Creates an app owned by the account behind `token`; returns the app as the API shows it.
    pub async fn app(&self, token: &str, name: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/apps",
                token,
                serde_json::json!({"name": name, "company_name": "Example Co", "category": "shopping"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// A user token for `app` signed with the server's secret, valid for an hour.
    pub fn user_token(&self, app: i64, sub: &str, scope: &str) -> String {
        let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
        let exp = Timestamp(self.clock_now().0 + 3600);
        match mint_user_token(JWT_SECRET.as_bytes(), AppId(app), sub, &scopes, exp) {
            Ok(t) => t,
            Err(e) => unreachable!("{e}"),
        }
    }

    /// The catalog file `POST /v1/catalog/reload` reads (tests write it first).
    pub fn catalog_file(&self) -> std::path::PathBuf {
        self._dir.0.join("catalog.toml")
    }

    pub fn clock_now(&self) -> Timestamp {
        use permgate_core::time::Clock;
        self.clock.now()
    }

    /// `POST /v1/check` for a call with this Authorization header.
    pub async fn check(&self, method: &str, path: &str, authorization: &str) -> Value {
        let body = serde_json::json!({"method": method, "path": path, "headers": {"authorization": authorization}});
        let (status, decision) = self.call(Method::POST, "/v1/check", None, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{decision}");
        decision
    }
}

/// The smallest valid PNG (a 1x1 transparent pixel), as evidence files in tests.
pub const TINY_PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\x00\x01\x00\x00\x05\x00\x01\r\n-\xb4\x00\x00\x00\x00IEND\xaeB`\x82";

/// The first key of `kind` in an app as the API shows it.
pub fn key_of(app: &Value, kind: &str) -> String {
    app["keys"][kind][0]["key"].as_str().unwrap_or_default().to_owned()
}
