//! `permgate serve`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use permgate_core::catalog::Catalog;
use permgate_core::credential::TokenVerifier;
use permgate_core::decision::CounterFailure;
use permgate_core::notify::NotifySettings;
use permgate_core::service::BootstrapOutcome;
use permgate_core::service::Services;
use permgate_quota_redis::RedisCounter;
use permgate_server::{
    AppState, Delivery, Upstreams, serve, serve_gateway, spawn_change_sync, spawn_delivery, spawn_saver, spawn_upkeep,
};

use crate::wiring;
use crate::{EngineArgs, StoreArgs};

#[derive(Args)]
pub struct ServeArgs {
    /// Address of the management and decision API.
    #[arg(long, env = "PERMGATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// Token of the bootstrap admin account; without it, the first start creates an admin and
    /// prints its token once.
    #[arg(long, env = "PERMGATE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Address of the built-in gateway (with PERMGATE_UPSTREAM).
    #[arg(long, env = "PERMGATE_GATEWAY_LISTEN")]
    gateway_listen: Option<SocketAddr>,
    /// Where the gateway sends allowed calls: `http://api:9000`, or by path prefix
    /// `/v2/local=http://local:9000,/=http://api:9000` (the longest prefix wins).
    #[arg(long, env = "PERMGATE_UPSTREAM")]
    upstream: Option<String>,
    /// Seconds the gateway waits for an upstream to connect and answer (then 504).
    #[arg(long, env = "PERMGATE_UPSTREAM_TIMEOUT", default_value_t = 30)]
    upstream_timeout: u64,
    /// Apply pending migrations at start; with `false`, the node waits (not ready) until
    /// `permgate migrate` has run.
    #[arg(long, env = "PERMGATE_AUTO_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    auto_migrate: bool,
    /// Redis (`redis://host:6379`): quota counters shared by every node, and part of readiness.
    #[arg(long, env = "PERMGATE_REDIS_URL")]
    redis_url: Option<String>,
    /// Prefix of permgate's Redis keys, to share one Redis between deployments.
    #[arg(long, env = "PERMGATE_REDIS_PREFIX", default_value = "permgate:")]
    redis_prefix: String,
    /// When Redis cannot be reached: `closed` denies calls that need counting (503, -1), `open`
    /// admits them uncounted.
    #[arg(long, env = "PERMGATE_QUOTA_FAILURE", default_value = "closed", value_parser = ["closed", "open"])]
    quota_failure: String,
    /// SMTP server that review notifications are e-mailed through: `smtp://host:25`,
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS) or `smtps://user:pass@host` (TLS).
    #[arg(long, env = "PERMGATE_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// The sender of notification e-mails.
    #[arg(long, env = "PERMGATE_SMTP_FROM", default_value = "permgate <permgate@localhost>")]
    smtp_from: String,
    /// An http:// URL that every request transition is POSTed to as JSON.
    #[arg(long, env = "PERMGATE_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Signs webhooks: header `X-Permgate-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
    #[arg(long, env = "PERMGATE_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// The console's public address, for links in notification e-mails.
    #[arg(long, env = "PERMGATE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Suspend apps that no node has seen called for this many days (-13 until the owner
    /// reactivates them); 0 never suspends.
    #[arg(long, env = "PERMGATE_SUSPEND_AFTER_DAYS", default_value_t = 0)]
    suspend_after_days: u64,
    /// Revoke grants no call has exercised for this many days (after a warning to the app's
    /// members); 0 never reaps.
    #[arg(long, env = "PERMGATE_REAP_UNUSED_DAYS", default_value_t = 0)]
    reap_unused_days: u32,
    /// Days between the unused-grant warning and the revocation.
    #[arg(long, env = "PERMGATE_REAP_WARNING_DAYS", default_value_t = 14)]
    reap_warning_days: u32,
    /// Seed an empty database with a demo developer, reviewer, app, requests and traffic.
    #[arg(long, env = "PERMGATE_DEMO")]
    demo: bool,
    /// A secret gateways must send in `X-Permgate-Secret` to `/v1/check` and `/v1/authz` (401,
    /// -401 without it); unset, whoever reaches the node may ask for decisions.
    #[arg(long, env = "PERMGATE_DECISION_SECRET", hide_env_values = true)]
    decision_secret: Option<String>,
    /// Seconds a management or decision request may take, its body included (then 408).
    #[arg(long, env = "PERMGATE_REQUEST_TIMEOUT", default_value_t = 60)]
    request_timeout: u64,
    /// Log filter, e.g. `info` or `permgate=debug`.
    #[arg(long, env = "PERMGATE_LOG", default_value = "info")]
    log: String,
    /// `text` (for people) or `json` (one object per line, for log collectors).
    #[arg(long, env = "PERMGATE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Seconds between looks at the catalog file for changes (0: reload only on SIGHUP or
    /// `POST /v1/catalog/reload`).
    #[arg(long, env = "PERMGATE_CATALOG_WATCH", default_value_t = 2)]
    catalog_watch: u64,
}

/// Reports `PERMGATE_*` variables that no setting reads (a misspelt name would otherwise be
/// silently ignored).
fn report_environment(known: &[String]) {
    const OTHERS: &[&str] = &["PERMGATE_CONFIG", "PERMGATE_TEST_DATABASE_URL", "PERMGATE_TEST_REDIS_URL"];
    for name in std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()) {
        if name.starts_with("PERMGATE_") && !known.contains(&name) && !OTHERS.contains(&name.as_str()) {
            tracing::warn!("unknown setting {name} ignored (check its spelling; `permgate config show` lists them)");
        }
    }
}

pub fn run(args: ServeArgs, known: &[String]) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("PERMGATE_LOG `{}` is not a valid log filter", args.log))?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if args.log_format == "json" {
        logs.json().with_current_span(false).init();
    } else {
        logs.with_target(false).with_ansi(std::io::stderr().is_terminal()).init();
    }
    report_environment(known);

    wiring::parse_database_url(&args.store.database_url)?;
    let catalog = wiring::load_catalog(args.engine.catalog.as_deref())?;
    tracing::info!(
        catalog = %catalog.version,
        apis = catalog.apis.len(),
        permissions = catalog.permissions.len(),
        "catalog loaded{}",
        if args.engine.catalog.is_none() { " (built-in)" } else { "" }
    );
    let verifier = Arc::new(args.engine.verifier()?);
    let gateway = match (args.gateway_listen, &args.upstream) {
        (Some(listen), Some(upstream)) => {
            Some((listen, Upstreams::parse(upstream).map_err(|e| anyhow::anyhow!("PERMGATE_UPSTREAM: {e}"))?))
        }
        (None, None) => None,
        _ => anyhow::bail!("the gateway needs both PERMGATE_GATEWAY_LISTEN and PERMGATE_UPSTREAM"),
    };
    let upstream_timeout = Duration::from_secs(args.upstream_timeout.max(1));
    if args.engine.jwt_secret.is_none() && args.engine.jwt_public_keys.is_none() {
        tracing::info!(
            "no PERMGATE_JWT_SECRET or PERMGATE_JWT_PUBLIC_KEYS: calls with user tokens (Bearer JWT) will be answered -401"
        );
    }
    match &args.redis_url {
        Some(_) => tracing::info!(failure = %args.quota_failure, "quota counters are shared in Redis"),
        None => tracing::info!(
            "quota counters are kept in this process (set PERMGATE_REDIS_URL to share them between nodes)"
        ),
    }

    if let Some(url) = &args.webhook_url
        && !url.starts_with("http://")
    {
        anyhow::bail!(
            "PERMGATE_WEBHOOK_URL `{url}` must be an http:// URL (this build sends webhooks without TLS; put a TLS proxy in front of an https endpoint)"
        );
    }
    match (&args.smtp_url, &args.webhook_url) {
        (None, None) => tracing::info!(
            "no PERMGATE_SMTP_URL or PERMGATE_WEBHOOK_URL: request transitions are audited but not notified"
        ),
        (smtp, hook) => tracing::info!(
            email = smtp.is_some(),
            webhook = hook.is_some(),
            "request transitions are notified through the outbox (GET /v1/notifications shows delivery)"
        ),
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let delivery =
        Delivery::new(args.smtp_url.as_deref(), &args.smtp_from, args.webhook_secret.clone(), runtime.handle().clone())
            .map_err(|e| anyhow::anyhow!(e))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        // Bound before the node gets ready, so that "ready" means both ports answer.
        let gateway = match gateway {
            None => None,
            Some((listen, upstreams)) => {
                let gw = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen} (gateway)"))?;
                let gw_addr = gw.local_addr().context("reading the gateway's address")?;
                tracing::info!("gateway serving on http://{gw_addr}");
                Some((gw, upstreams))
            }
        };
        let mut state = AppState::starting("connecting to the store");
        state.redis_url = args.redis_url.as_deref().map(Arc::from);
        state.catalog_path = args.engine.catalog.as_deref().map(Arc::from);
        state.request_timeout = Duration::from_secs(args.request_timeout.max(1));
        state.decision_secret = args.decision_secret.as_deref().filter(|s| !s.is_empty()).map(Arc::from);
        tokio::spawn(watch_catalog(state.clone(), Duration::from_secs(args.catalog_watch)));
        tracing::info!("listening on http://{addr}; getting ready");
        let stop = Arc::new(AtomicBool::new(false));
        let init_state = state.clone();
        let init_stop = stop.clone();
        let threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>> = Arc::default();
        let init_threads = threads.clone();
        std::thread::Builder::new()
            .name("permgate-init".into())
            .spawn(move || {
                let workers = Workers { stop: init_stop, threads: init_threads, delivery: Some(delivery) };
                get_ready(&args, catalog, &verifier, &init_state, addr, workers)
            })
            .context("starting the init thread")?;
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stopping.send(true);
        });
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let gateway_task = match gateway {
            None => None,
            Some((gw, upstreams)) => {
                let (state, shutdown) = (state.clone(), until_stopped(stopped.clone()));
                Some(tokio::spawn(serve_gateway(gw, state, upstreams, upstream_timeout, shutdown)))
            }
        };
        serve(listener, state, until_stopped(stopped)).await.context("serving HTTP")?;
        if let Some(task) = gateway_task {
            let _ = task.await;
        }
        // In-flight calls are answered; now save what they counted and deliver what is due.
        stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *threads.lock().unwrap_or_else(PoisonError::into_inner));
        for thread in &threads {
            thread.thread().unpark();
        }
        for thread in threads {
            let _ = thread.join();
        }
        tracing::info!("quota counters, activity and the decision log saved");
        tracing::info!("stopped");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// The background threads a node starts once it is ready (the saver, delivery), and what stops
/// them.
struct Workers {
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
    delivery: Option<Delivery>,
}

/// Connects, migrates (unless told not to), bootstraps the admin and builds the snapshot,
/// retrying until it succeeds, so nodes and the database may start in any order.
fn get_ready(
    args: &ServeArgs,
    catalog: Catalog,
    verifier: &Arc<TokenVerifier>,
    state: &AppState,
    addr: SocketAddr,
    mut workers: Workers,
) {
    let stop = &workers.stop;
    let mut last_error = String::new();
    while !stop.load(Ordering::Relaxed) {
        match init(args, catalog.clone(), verifier.clone()) {
            Ok((services, since)) => {
                let apps = services.snapshot.read().app_count();
                if let Err(e) = spawn_change_sync(services.clone(), since, stop.clone()) {
                    tracing::error!("cannot start the change sync: {e}");
                }
                let suspend_after = (args.suspend_after_days > 0)
                    .then(|| Duration::from_secs(args.suspend_after_days.saturating_mul(86_400)));
                let reap = (args.reap_unused_days > 0).then_some(permgate_core::service::ReapPolicy {
                    unused_days: args.reap_unused_days,
                    warning_days: args.reap_warning_days,
                });
                match spawn_saver(services.clone(), stop.clone()) {
                    Ok(handle) => workers.threads.lock().unwrap_or_else(PoisonError::into_inner).push(handle),
                    Err(e) => tracing::error!("cannot start the quota saver: {e}"),
                }
                match spawn_upkeep(services.clone(), stop.clone(), suspend_after, reap) {
                    Ok(handle) => workers.threads.lock().unwrap_or_else(PoisonError::into_inner).push(handle),
                    Err(e) => tracing::error!("cannot start the upkeep (grant lifecycle, idle apps): {e}"),
                }
                if let Some(d) = workers.delivery.take() {
                    match spawn_delivery(services.store.clone(), services.clock.clone(), d, stop.clone()) {
                        Ok(handle) => workers.threads.lock().unwrap_or_else(PoisonError::into_inner).push(handle),
                        Err(e) => tracing::error!("cannot start notification delivery: {e}"),
                    }
                }
                state.set_ready(services);
                tracing::info!(apps, database = %permgate_core::secret::redact_url(&args.store.database_url), "ready on http://{addr}");
                return;
            }
            Err(e) => {
                let message = format!("{e:#}");
                if message != last_error {
                    tracing::warn!("not ready: {message}; retrying");
                    last_error = message.clone();
                }
                state.set_starting(message);
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn init(args: &ServeArgs, catalog: Catalog, verifier: Arc<TokenVerifier>) -> anyhow::Result<(Services, i64)> {
    let store = wiring::connect(&args.store.database_url)?;
    let status = store.migration_status()?;
    if status.too_new() {
        anyhow::bail!(
            "the database schema is version {}, newer than this permgate binary knows ({}); upgrade permgate",
            status.current,
            status.latest
        );
    }
    if status.pending() {
        if !args.auto_migrate {
            anyhow::bail!(
                "the database schema is at version {} and this binary needs {}: run `permgate migrate`",
                status.current,
                status.latest
            );
        }
        let applied = store.migrate()?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied database migrations");
        }
    }
    let catalog_event = wiring::catalog_load_event(&catalog, args.engine.catalog.as_deref());
    let (mut services, since) = wiring::services(store, catalog, verifier)?;
    services = services.with_notifications(NotifySettings {
        email: args.smtp_url.is_some(),
        webhook_url: args.webhook_url.clone(),
        public_url: args.public_url.clone(),
    });
    if let Some(url) = &args.redis_url {
        let policy = if args.quota_failure == "open" { CounterFailure::Open } else { CounterFailure::Closed };
        let counter = match RedisCounter::connect(url, &args.redis_prefix) {
            Ok(counter) => counter,
            // Failing open, the node serves while Redis is down, from the start as afterwards.
            Err(e) if policy == CounterFailure::Open => {
                tracing::warn!(
                    "{e}; starting anyway: calls are admitted uncounted (PERMGATE_QUOTA_FAILURE=open) until Redis answers"
                );
                RedisCounter::unchecked(url, &args.redis_prefix, permgate_quota_redis::DEFAULT_TIMEOUT)
                    .map_err(|e| anyhow::anyhow!("{e}"))?
            }
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        };
        services = services.with_shared_counter(Arc::new(counter), policy);
    }
    let restored = services.restore_counters().map_err(|e| anyhow::anyhow!("restoring quota counters: {e}"))?;
    if restored > 0 {
        tracing::info!(restored, "quota counters restored");
    }
    match services.bootstrap_admin(args.admin_token.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))? {
        BootstrapOutcome::Created { id, token } => {
            println!();
            println!("  permgate created the admin account (id {id}). Its token, shown only this once:");
            println!();
            println!("      {token}");
            println!();
            println!("  Keep it: export PERMGATE_ADMIN_TOKEN={token}");
            println!();
        }
        BootstrapOutcome::FromConfiguration(id) => {
            tracing::info!("admin account {id} signs in with PERMGATE_ADMIN_TOKEN")
        }
        BootstrapOutcome::AlreadyThere => {
            tracing::info!("an admin account exists; set PERMGATE_ADMIN_TOKEN to reset the `admin` account's token")
        }
    }
    services.store.record_event(&catalog_event).context("recording the catalog load in the audit trail")?;
    if args.demo {
        match crate::demo::seed(&services).context("seeding the demo")? {
            Some(seeded) => {
                println!();
                println!("  Demo data seeded (app {}, \"Demo Shop\"). Sign in to the console with:", seeded.app_id);
                println!();
                println!("      developer  {}", seeded.developer);
                println!("      reviewer   {}", seeded.reviewer);
                println!();
            }
            None => tracing::info!("--demo: the database has apps already; nothing seeded"),
        }
    }
    Ok((services, since))
}

/// Reloads the catalog file on SIGHUP and, every `every`, when the file changed. A file that does
/// not parse is reported and the catalog in force stays.
async fn watch_catalog(state: AppState, every: Duration) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let stamp = |path: &std::path::Path| std::fs::metadata(path).ok().map(|m| (m.modified().ok(), m.len()));
    let mut seen = state.catalog_path.as_deref().and_then(stamp);
    let mut tick = tokio::time::interval(if every.is_zero() { Duration::from_secs(3600) } else { every });
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<Option<()>>();
        let why = tokio::select! {
            _ = hup => "SIGHUP",
            _ = tick.tick() => {
                let Some(path) = state.catalog_path.as_deref().filter(|_| !every.is_zero()) else { continue };
                let now = stamp(path);
                if now == seen {
                    continue;
                }
                // Let an editor finish writing before reading.
                tokio::time::sleep(Duration::from_millis(200)).await;
                seen = stamp(path);
                "the file changed"
            }
        };
        if state.catalog_path.is_none() {
            tracing::info!("{why}: this node runs the built-in catalog (no PERMGATE_CATALOG); nothing to reload");
            continue;
        }
        let Ok(services) = state.services().cloned() else { continue };
        let st = state.clone();
        let _ = tokio::task::spawn_blocking(move || permgate_server::reload_from_file(&st, &services, None, why)).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
