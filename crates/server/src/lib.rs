//! permgate's HTTP surface: the management API of SPEC section 5, the decision API `/v1/check`,
//! health endpoints and the web console, as one axum `Router`.
//!
//! # Layout
//! - [`router`] builds the whole `Router` from an [`AppState`]; tests call it directly.
//! - `handlers/` holds one file per resource; handlers only parse, call a service and shape JSON.
//! - `error.rs` is the one place errors become responses (`{"msg", "code"}` with the status);
//!   `extract.rs` holds the extractors that turn bad input into -2 and bad tokens into -401.
//! - Store calls block, so handlers run services on tokio's blocking pool via [`AppState::run`];
//!   `sync.rs` keeps the snapshot current with other nodes' writes on a thread of its own.

mod console;
mod delivery;
mod error;
mod extract;
mod gateway;
mod handlers;
mod metrics;
pub mod openapi;
mod redis_ping;
mod saver;
mod sync;
mod throttle;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, delete, get, post, put};
use permgate_core::service::Services;

pub use delivery::{Delivery, deliver_due, signature, spawn_delivery};
pub use error::ApiError;
pub use gateway::{Upstreams, serve_gateway};
pub use handlers::catalog::reload_from_file;
pub use metrics::Metrics;
pub use saver::{spawn_saver, spawn_upkeep};
pub use sync::spawn_change_sync;
pub use throttle::{LIMIT as SIGN_IN_LIMIT, WINDOW as SIGN_IN_WINDOW};

/// What every handler can reach. A node serves from the moment it binds its port; until the store
/// is reachable and migrated and the snapshot is built, [`AppState::services`] answers 503 and
/// `/readyz` says why.
#[derive(Clone)]
pub struct AppState {
    services: Arc<OnceLock<Services>>,
    /// Why the node is not ready yet, while `services` is unset.
    starting: Arc<Mutex<String>>,
    /// `redis://…` when configured: part of readiness.
    pub redis_url: Option<Arc<str>>,
    /// What `/metrics` reports.
    pub metrics: Arc<Metrics>,
    /// The catalog file `POST /v1/catalog/reload` reads (none: the built-in catalog).
    pub catalog_path: Option<Arc<std::path::Path>>,
    /// Failed sign-ins by address.
    pub(crate) throttle: Arc<throttle::SignInThrottle>,
    /// The longest a management or decision request may take, body included (then 408).
    pub request_timeout: std::time::Duration,
    /// The secret gateways present in [`SECRET_HEADER`] to `/v1/check` and `/v1/authz`
    /// (`PERMGATE_DECISION_SECRET`); none: whoever reaches the node may ask.
    pub decision_secret: Option<Arc<str>>,
}

/// The header carrying the decision API's shared secret.
pub const SECRET_HEADER: &str = "x-permgate-secret";

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("ready", &self.services.get().is_some()).finish()
    }
}

impl AppState {
    /// A ready state, for tests and embedders that built their services already.
    pub fn new(services: Services) -> Self {
        let state = AppState::starting("starting");
        state.set_ready(services);
        state
    }

    /// A state that answers 503 until [`AppState::set_ready`].
    pub fn starting(reason: &str) -> Self {
        AppState {
            services: Arc::new(OnceLock::new()),
            starting: Arc::new(Mutex::new(reason.to_owned())),
            redis_url: None,
            metrics: Arc::default(),
            catalog_path: None,
            throttle: Arc::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            decision_secret: None,
        }
    }

    /// Records why the node is still not ready.
    pub fn set_starting(&self, reason: impl Into<String>) {
        *self.starting.lock().unwrap_or_else(PoisonError::into_inner) = reason.into();
    }

    pub fn set_ready(&self, services: Services) {
        let _ = self.services.set(services);
    }

    pub fn is_ready(&self) -> bool {
        self.services.get().is_some()
    }

    /// The services, or 503 saying why the node is not ready.
    pub fn services(&self) -> Result<&Services, ApiError> {
        self.services.get().ok_or_else(|| {
            let reason = self.starting.lock().unwrap_or_else(PoisonError::into_inner).clone();
            ApiError::unavailable(format!("permgate is not ready yet: {reason}"))
        })
    }

    /// Signs in with an account token from `ip`, through the brute-force throttle: a refused
    /// address is refused whatever it presents, and a token that does not sign in counts against
    /// it (asking without a token does not).
    pub(crate) async fn sign_in(
        &self,
        ip: Option<std::net::IpAddr>,
        token: Option<String>,
    ) -> Result<permgate_core::service::Actor, ApiError> {
        self.throttle.check(ip)?;
        let guess = token.is_some();
        let signed_in = self.run(move |s| s.authenticate(token.as_deref())).await;
        if signed_in.as_ref().is_err_and(|e| e.code == -401) && guess {
            self.throttle.failed(ip);
        }
        signed_in
    }

    /// Whether a call to the decision API (`/v1/check`, `/v1/authz`) may be answered: always,
    /// unless a shared secret is configured, which it must then carry in [`SECRET_HEADER`].
    pub(crate) fn admit_gateway(&self, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        let Some(secret) = &self.decision_secret else { return Ok(()) };
        let presented = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if permgate_core::secret::hashes_equal(presented, secret) {
            return Ok(());
        }
        let what = if presented.is_empty() { "needs" } else { "did not get" };
        Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            -401,
            format!(
                "this node's decision API {what} its shared secret in X-Permgate-Secret (PERMGATE_DECISION_SECRET)"
            ),
        ))
    }

    /// Runs a blocking service call off the async workers.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Services) -> Result<T, permgate_core::error::ServiceError> + Send + 'static,
    {
        let services = self.services()?.clone();
        match tokio::task::spawn_blocking(move || f(&services)).await {
            Ok(result) => result.map_err(ApiError::from),
            Err(join) => Err(ApiError::internal(format!("a service call failed: {join}"))),
        }
    }
}

/// A query's strings owned, so that deciding can move to a blocking thread.
struct OwnedQuery {
    method: String,
    path: String,
    authorization: Option<String>,
    origin: Option<String>,
    ka: Option<String>,
    recipients: Vec<String>,
    explain: bool,
}

impl OwnedQuery {
    fn new(q: &permgate_core::Query<'_>) -> Self {
        OwnedQuery {
            method: q.method.to_owned(),
            path: q.path.to_owned(),
            authorization: q.authorization.map(str::to_owned),
            origin: q.origin.map(str::to_owned),
            ka: q.ka.map(str::to_owned),
            recipients: q.recipients.iter().map(|r| (*r).to_owned()).collect(),
            explain: q.explain,
        }
    }
}

impl AppState {
    /// Decides and counts one call. Counting in memory never blocks: the call is decided in
    /// place, borrowing the caller's strings and the services (nothing is copied per call). A
    /// shared counter may wait on Redis, so then the call's strings are copied to the blocking
    /// pool. Quota alerts the call raised are queued for the saver.
    pub(crate) async fn decide(
        &self,
        query: &permgate_core::Query<'_>,
        consume: bool,
    ) -> Result<permgate_core::Decision, ApiError> {
        let services = self.services()?;
        if services.memory.is_some() {
            return Ok(decide_now(services, &self.metrics, query, consume));
        }
        let (services, metrics, owned) = (services.clone(), self.metrics.clone(), OwnedQuery::new(query));
        tokio::task::spawn_blocking(move || {
            let recipients: Vec<&str> = owned.recipients.iter().map(String::as_str).collect();
            let query = permgate_core::Query {
                method: &owned.method,
                path: &owned.path,
                authorization: owned.authorization.as_deref(),
                origin: owned.origin.as_deref(),
                ka: owned.ka.as_deref(),
                recipients: &recipients,
                explain: owned.explain,
            };
            decide_now(&services, &metrics, &query, consume)
        })
        .await
        .map_err(|e| ApiError::internal(format!("decision task failed: {e}")))
    }
}

fn decide_now(
    services: &Services,
    metrics: &Metrics,
    query: &permgate_core::Query<'_>,
    consume: bool,
) -> permgate_core::Decision {
    let started = std::time::Instant::now();
    let now = services.clock.now();
    let mut decision = {
        let snapshot = services.snapshot.read();
        permgate_core::decision::decide_and_count(
            &snapshot,
            query,
            services.counter.as_ref(),
            now,
            consume,
            services.on_counter_failure,
        )
    };
    metrics.record(&decision, started.elapsed(), consume);
    if consume {
        services.decision_log.note(&decision, query.method, query.path, now);
    }
    if !decision.alerts.is_empty() {
        services.alerts.lock().unwrap_or_else(PoisonError::into_inner).append(&mut decision.alerts);
    }
    report_counter_health(&decision);
    decision
}

/// Logs once when the quota counter starts failing and once when it recovers, not per call.
fn report_counter_health(decision: &permgate_core::Decision) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DOWN: AtomicBool = AtomicBool::new(false);
    match &decision.counter_error {
        Some(e) if !DOWN.swap(true, Ordering::Relaxed) => tracing::warn!(
            "quota counter unavailable: {e}; calls that need counting are {}",
            if decision.allow { "admitted uncounted (PERMGATE_QUOTA_FAILURE=open)" } else { "denied (fail closed)" }
        ),
        None if decision.quota.is_some() && DOWN.swap(false, Ordering::Relaxed) => {
            tracing::info!("quota counter available again");
        }
        _ => {}
    }
}

/// The default of [`AppState::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Answers 408 when a request (its body included) takes longer than the state's limit: a client
/// that sends its body slowly holds nothing for long.
async fn time_limit(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let limit = state.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => timed_out(limit),
    }
}

/// The answer to a request that took longer than `limit`.
pub(crate) fn timed_out(limit: std::time::Duration) -> axum::response::Response {
    use axum::response::IntoResponse;
    ApiError::new(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        -2,
        format!("the request took longer than {} s (PERMGATE_REQUEST_TIMEOUT)", limit.as_secs()),
    )
    .into_response()
}

/// The largest JSON body the management API and `/v1/check` accept.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// Builds the router.
pub fn router(state: AppState) -> Router {
    use handlers::{accounts, apps, authz, catalog, check, health, requests};
    Router::new()
        .route("/", get(console::index))
        .route("/console/app.js", get(console::script))
        .route("/console/app.css", get(console::style))
        .route("/v1/session", get(console::whoami).post(console::sign_in).delete(console::sign_out))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi::serve))
        .route("/v1/check", post(check::check))
        .route("/v1/authz", any(authz::authz))
        .route("/v1/authz/{*original}", any(authz::authz))
        .route("/v1/catalog", get(catalog::catalog))
        .route("/v1/catalog/reload", post(catalog::reload))
        .route("/v1/catalog/preview", post(catalog::preview))
        .route("/v1/shadow-report", get(catalog::shadow_report))
        .route("/v1/grants/lifecycle", post(catalog::lifecycle))
        .route("/v1/accounts", post(accounts::create).get(accounts::list))
        .route("/v1/accounts/me", get(accounts::me))
        .route("/v1/accounts/{id}/block", post(accounts::block))
        .route("/v1/accounts/{id}/unblock", post(accounts::unblock))
        .route("/v1/apps", post(apps::create).get(apps::list))
        .route("/v1/apps/{id}", get(apps::get))
        .route("/v1/apps/{id}/keys", post(apps::add_key))
        .route("/v1/apps/{id}/keys/{key_id}", delete(apps::delete_key))
        .route("/v1/apps/{id}/keys/{key_id}/rotate", post(apps::rotate_key))
        .route("/v1/apps/{id}/keys/{key_id}/platforms", put(apps::set_platforms))
        .route("/v1/apps/{id}/members", post(apps::set_member))
        .route("/v1/apps/{id}/members/{account_id}", delete(apps::remove_member))
        .route("/v1/apps/{id}/products/{product}", put(apps::set_product))
        .route("/v1/apps/{id}/permissions", get(apps::permissions).post(apps::grant))
        .route("/v1/apps/{id}/permissions/{permission}", delete(apps::revoke))
        .route("/v1/apps/{id}/usage", get(apps::usage))
        .route("/v1/apps/{id}/explain", get(apps::explain))
        .route("/v1/apps/{id}/block", post(apps::block))
        .route("/v1/apps/{id}/unblock", post(apps::unblock))
        .route("/v1/apps/{id}/paid-usage", put(apps::set_paid_usage).delete(apps::delete_paid_usage))
        .route("/v1/apps/{id}/eligibility", get(requests::eligibility).post(requests::agree_eligibility))
        .route("/v1/apps/{id}/business", put(requests::set_business).delete(requests::remove_business))
        .route("/v1/apps/{id}/test-apps", post(requests::create_test_app))
        .route("/v1/apps/{id}/reactivate", post(requests::reactivate))
        .route("/v1/apps/{id}/channels", post(requests::connect_channel))
        .route("/v1/apps/{id}/channels/{channel_id}", delete(requests::disconnect_channel))
        .route("/v1/channels", get(requests::channels).post(requests::upsert_channel))
        .route(
            "/v1/apps/{id}/consent-items/{scope}",
            put(requests::set_consent_item).delete(requests::unset_consent_item),
        )
        .route(
            "/v1/apps/{id}/permission-requests",
            post(requests::apply).layer(DefaultBodyLimit::max(requests::MAX_UPLOAD_BODY)).get(requests::list_for_app),
        )
        .route("/v1/permission-requests", get(requests::list))
        .route("/v1/permission-requests/{id}", get(requests::get))
        .route("/v1/permission-requests/{id}/actions", post(requests::act))
        .route("/v1/permission-requests/{id}/evidence", get(requests::evidence))
        .route("/v1/notifications", get(requests::notifications))
        .route("/v1/audit", get(apps::audit))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), time_limit))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight requests.
/// `POST /v1/check`, which gateways call per request, is answered before the router (see
/// [`handlers::check`]); everything else goes through [`router`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    type Answer = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>,
    >;
    let router = router(state.clone());
    let state = Arc::new(state);
    let handle = move |req: axum::http::Request<hyper::body::Incoming>| -> Answer {
        if req.method() == axum::http::Method::POST && req.uri().path() == "/v1/check" {
            Box::pin(handlers::check::direct(state.clone(), req))
        } else {
            Box::pin(tower_service::Service::call(&mut router.clone(), req))
        }
    };
    serve_with(listener, handle, shutdown).await
}

/// How long a client may take to send a request's headers (slow clients are cut off).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The most headers a request may carry (more: 431).
pub const MAX_HEADERS: usize = 100;
/// How long in-flight requests may take to finish once shutting down.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves every connection the same way: HTTP/1.1 with keep-alive, a [`HEADER_READ_TIMEOUT`]
/// against slow clients, at most [`MAX_HEADERS`] headers, the peer's address for the handlers, and
/// on `shutdown` no new connections while in-flight requests finish (for at most
/// [`DRAIN_TIMEOUT`]).
pub(crate) async fn serve_with<F, A>(
    listener: tokio::net::TcpListener,
    handle: F,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    F: Fn(axum::http::Request<hyper::body::Incoming>) -> A + Clone + Send + Sync + 'static,
    A: std::future::Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let service = hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            handle(req)
        });
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_headers(MAX_HEADERS);
            let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = async { drop(stopped.wait_for(|s| *s).await) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        // Forget finished connections as we go.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            "{} connection(s) still busy after {} s; closing them",
            connections.len(),
            DRAIN_TIMEOUT.as_secs()
        );
        connections.abort_all();
    }
    Ok(())
}
