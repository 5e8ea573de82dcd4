//! `permgate serve`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use permgate_core::ports::Store;
use permgate_core::service::BootstrapOutcome;
use permgate_server::{AppState, serve};

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
    /// Log filter, e.g. `info` or `permgate=debug`.
    #[arg(long, env = "PERMGATE_LOG", default_value = "info")]
    log: String,
}

/// Settings named by SPEC section 7 that this build does not act on yet.
const NOT_YET: &[(&str, &str)] = &[
    ("PERMGATE_GATEWAY_LISTEN", "the built-in gateway"),
    ("PERMGATE_UPSTREAM", "the built-in gateway"),
    ("PERMGATE_REDIS_URL", "shared quota counters"),
    ("PERMGATE_JWT_PUBLIC_KEYS", "RS256/EdDSA user tokens"),
    ("PERMGATE_SMTP_URL", "e-mail notifications"),
];

const KNOWN: &[&str] = &[
    "PERMGATE_LISTEN",
    "PERMGATE_DATABASE_URL",
    "PERMGATE_CATALOG",
    "PERMGATE_ADMIN_TOKEN",
    "PERMGATE_JWT_SECRET",
    "PERMGATE_LOG",
    "PERMGATE_TEST_DATABASE_URL",
    "PERMGATE_TEST_REDIS_URL",
];

fn report_environment() {
    for (name, _) in std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))) {
        if !name.starts_with("PERMGATE_") || KNOWN.contains(&name.as_str()) {
            continue;
        }
        match NOT_YET.iter().find(|(n, _)| *n == name) {
            Some((_, what)) => tracing::warn!("{name} is set, but {what} is not part of this build yet; ignoring it"),
            None => tracing::warn!("unknown setting {name} ignored (check its spelling)"),
        }
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("PERMGATE_LOG `{}` is not a valid log filter", args.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    report_environment();

    let store = wiring::open_store(&args.store.database_url)?;
    let catalog = wiring::load_catalog(args.engine.catalog.as_deref())?;
    tracing::info!(
        catalog = %catalog.version,
        apis = catalog.apis.len(),
        permissions = catalog.permissions.len(),
        "catalog loaded{}",
        if args.engine.catalog.is_none() { " (built-in)" } else { "" }
    );
    if args.engine.jwt_secret.is_none() {
        tracing::info!("no PERMGATE_JWT_SECRET: calls with user tokens (Bearer JWT) will be answered -401");
    }
    let store: Arc<dyn Store> = store;
    let services = wiring::services(store, catalog, args.engine.jwt_secret.as_deref())?;
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
    let apps = services.snapshot.read().app_count();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        tracing::info!(apps, database = %args.store.database_url, "permgate listening on http://{addr}");
        serve(listener, AppState::new(services), shutdown_signal()).await.context("serving HTTP")?;
        tracing::info!("stopped");
        anyhow::Ok(ExitCode::SUCCESS)
    })
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
