//! Every command but `serve`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use permgate_core::audit::verify_trail;
use permgate_core::catalog::Catalog;
use permgate_core::credential::mint_user_token;
use permgate_core::decision::{CounterFailure, Query, decide_and_count};
use permgate_core::model::AppId;
use permgate_core::time::{Clock, SystemClock};

use crate::wiring;
use crate::{EngineArgs, StoreArgs};

#[derive(Args)]
pub struct CheckArgs {
    /// HTTP method of the call, e.g. GET.
    method: String,
    /// Path of the call, e.g. /v1/api/talk/friends.
    path: String,
    /// The call's Authorization header, e.g. "KakaoAK 0123…" or "Bearer eyJ…".
    #[arg(long, short = 'a')]
    authorization: Option<String>,
    /// The call's Origin header (JavaScript keys).
    #[arg(long)]
    origin: Option<String>,
    /// The call's KA header (native keys).
    #[arg(long)]
    ka: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Decides one call; prints the decision as JSON; exits 0 if allowed, 1 if denied.
pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let services =
        wiring::open_services(&args.store.database_url, args.engine.catalog.as_deref(), args.engine.verifier()?)?;
    let query = Query {
        method: &args.method,
        path: &args.path,
        authorization: args.authorization.as_deref(),
        origin: args.origin.as_deref(),
        ka: args.ka.as_deref(),
        recipients: &[],
        explain: true,
    };
    services.restore_counters().map_err(|e| anyhow::anyhow!("reading saved quota counters: {e}"))?;
    // Counting from the command line would be lost: report the quota state without consuming.
    let decision = decide_and_count(
        &services.snapshot.read(),
        &query,
        services.counter.as_ref(),
        SystemClock.now(),
        false,
        CounterFailure::Closed,
    );
    println!("{}", serde_json::to_string_pretty(&decision).context("printing the decision")?);
    Ok(if decision.allow { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Validates a catalog file; exits 1 listing every error.
pub fn validate_catalog(file: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match Catalog::parse(&file.display().to_string(), &text) {
        Ok(c) => {
            println!(
                "{}: ok: catalog {} with {} products, {} permissions, {} consent items, {} APIs, {} quota rules, {} review reasons",
                file.display(),
                c.version,
                c.products.len(),
                c.permissions.len(),
                c.consent_items.len(),
                c.apis.len(),
                c.quota_rules.len(),
                c.review_reasons.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Applies pending migrations and reports what it did.
pub fn migrate(store: &StoreArgs) -> anyhow::Result<ExitCode> {
    let db = wiring::connect(&store.database_url)?;
    let where_ = permgate_core::secret::redact_url(&store.database_url);
    let before = db.migration_status()?;
    let pending = u64::try_from(before.latest - before.current).unwrap_or(0);
    let mut progress = (pending > 0).then(|| crate::table::Progress::new("applying migrations", pending));
    let mut done = 0;
    let applied = db.migrate_with(&mut |version, name| {
        if let Some(bar) = progress.as_mut() {
            bar.label(format!("applying migration {version} ({name})"));
            bar.set(done);
        }
        done += 1;
    })?;
    if let Some(mut bar) = progress {
        bar.label("applied migrations".into());
        bar.set(done);
        bar.finish();
    }
    if applied.is_empty() {
        println!("{where_}: schema is at version {}, nothing to apply", before.current);
    } else {
        let list: Vec<String> = applied.iter().map(ToString::to_string).collect();
        println!("{where_}: applied migration(s) {}; schema is at version {}", list.join(", "), before.latest);
    }
    Ok(ExitCode::SUCCESS)
}

/// Verifies the audit hash chain.
pub fn audit_verify(store: &StoreArgs) -> anyhow::Result<ExitCode> {
    let store = wiring::open_store(&store.database_url)?;
    let events = store.audit_events(None, usize::MAX)?;
    let head = store.audit_head()?;
    match verify_trail(&events, head.as_ref()) {
        Ok(()) => {
            let newest =
                events.last().map_or_else(String::new, |e| format!("; newest event {} has hash {}", e.seq, e.hash));
            println!("audit chain ok: {} events verified{newest}", events.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("audit chain BROKEN: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

#[derive(Args)]
pub struct TokenArgs {
    /// The app the user token is for.
    #[arg(long)]
    app_id: i64,
    /// The user (`sub` claim).
    #[arg(long, default_value = "user-1")]
    sub: String,
    /// Consented scopes, space-separated (e.g. "friends talk_message").
    #[arg(long, default_value = "")]
    scope: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: i64,
    /// The HS256 secret (the server's PERMGATE_JWT_SECRET).
    #[arg(long, env = "PERMGATE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
}

/// Prints a signed user token.
pub fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let scopes: Vec<String> = args.scope.split_whitespace().map(str::to_owned).collect();
    let exp = SystemClock.now().plus_seconds(args.ttl);
    let token = mint_user_token(args.jwt_secret.as_bytes(), AppId(args.app_id), &args.sub, &scopes, exp)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
