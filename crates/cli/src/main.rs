//! The `permgate` binary: parse flags, load configuration, wire the crates together, run.
//!
//! # Layout
//! - `main.rs`: the command line (clap) and dispatch.
//! - `wiring.rs`: opening the store, loading the catalog, building the snapshot and services.
//! - `serve.rs`: `permgate serve`; `commands.rs`: every other command.

mod commands;
mod config;
mod demo;
mod ops;
mod serve;
mod table;
mod wiring;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "permgate",
    version,
    about = "The permission system of an API platform: decisions, grants, quotas and an exact record."
)]
struct Cli {
    /// A TOML file of settings named like the environment (`listen = "0.0.0.0:8080"` or
    /// `PERMGATE_LISTEN = ...`); flags and the environment override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: management API, /v1/check, health.
    Serve(Box<serve::ServeArgs>),
    /// Decide one call from the command line, against the database and catalog.
    Check(commands::CheckArgs),
    /// Work with catalog files.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Apply pending database migrations.
    Migrate(StoreArgs),
    /// Work with the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Sign a user token (HS256) for development and tests.
    Token(commands::TokenArgs),
    /// Accounts: list, create, block, unblock.
    Accounts(ops::Group<ops::AccountsCommand>),
    /// Apps: list, show, block, unblock.
    Apps(ops::Group<ops::AppsCommand>),
    /// The permissions apps hold: list, add, revoke.
    Grants(ops::Group<ops::GrantsCommand>),
    /// Permission requests: list, show, decide.
    Requests(ops::Group<ops::RequestsCommand>),
    /// An app's quota use per rule.
    Usage {
        app: i64,
        #[command(flatten)]
        ctx: ops::Ctx,
    },
    /// Every check a call of an app to an API goes through, which pass and fail, and what to do.
    Explain {
        app: i64,
        /// e.g. GET
        method: String,
        /// e.g. /v2/user/me
        path: String,
        #[command(flatten)]
        ctx: ops::Ctx,
    },
    /// What enforcing each permission, API or quota rule in shadow mode would deny, from the
    /// recent decision log.
    ShadowReport {
        #[command(flatten)]
        ctx: ops::Ctx,
    },
    /// Show the settings `permgate serve` would run with.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the management API's OpenAPI 3.1 document (what `GET /openapi.json` serves).
    Openapi,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Every setting, its value (secrets redacted) and where it came from: flag, environment,
    /// configuration file or default.
    Show {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Check a catalog file and report every error with its line.
    Validate {
        /// The catalog TOML file.
        file: PathBuf,
    },
    /// Print the built-in catalog's TOML, to start your own from.
    Show,
    /// What changed between two catalogs (`builtin` names the built-in one); exits 1 when they
    /// differ.
    Diff {
        old: String,
        new: String,
        #[arg(long)]
        json: bool,
    },
    /// Replay the recent decision log against a new catalog: which apps and APIs would be
    /// decided differently. Nothing is applied.
    Preview {
        /// The new catalog file.
        new: String,
        #[command(flatten)]
        ctx: ops::Ctx,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit trail's hash chain from the first event to the last.
    Verify(StoreArgs),
}

/// Where the data lives.
#[derive(Args, Clone)]
pub struct StoreArgs {
    /// `sqlite://PATH` (default `sqlite://permgate.db` in the working directory).
    #[arg(long, env = "PERMGATE_DATABASE_URL", default_value = wiring::DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

/// The catalog and token settings decisions need.
#[derive(Args, Clone)]
pub struct EngineArgs {
    /// A catalog TOML file; default: the built-in Kakao catalog.
    #[arg(long, env = "PERMGATE_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// HS256 secret that user tokens (`Authorization: Bearer <JWT>`) are signed with.
    #[arg(long, env = "PERMGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// A file of public keys user tokens may be signed with: a JWKS document or PEM blocks
    /// (RS256/384/512, EdDSA, ES256).
    #[arg(long, env = "PERMGATE_JWT_PUBLIC_KEYS")]
    pub jwt_public_keys: Option<PathBuf>,
}

impl EngineArgs {
    /// The user-token verifier these settings describe.
    pub fn verifier(&self) -> anyhow::Result<permgate_core::credential::TokenVerifier> {
        use anyhow::Context;
        let mut verifier = permgate_core::credential::TokenVerifier::new(self.jwt_secret.as_deref().map(str::as_bytes));
        if let Some(path) = &self.jwt_public_keys {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading PERMGATE_JWT_PUBLIC_KEYS {}", path.display()))?;
            let keys = permgate_core::credential::load_public_keys(&text)
                .map_err(|e| anyhow::anyhow!("PERMGATE_JWT_PUBLIC_KEYS {}: {e}", path.display()))?;
            verifier = verifier.with_public_keys(keys);
        }
        Ok(verifier)
    }
}

/// mimalloc instead of glibc's allocator: a proxied call allocates a few dozen small blocks across
/// two threads (hyper's buffers, headers, the upstream client's channel), where glibc's arenas
/// showed as 8–12 % of the gateway's CPU; side by side it gave the gateway and the decision API
/// about 4 % more requests/s (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let file = match config::config_path(&argv) {
        None => config::FileSettings::default(),
        Some(path) => match config::load(&path, &Cli::command()) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        },
    };
    let command = config::apply(Cli::command(), &file);
    let cli = match Cli::from_arg_matches(&command.clone().get_matches_from(&argv)) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if matches!(cli.command, Command::Check(_) | Command::Usage { .. } | Command::Explain { .. })
        && (std::env::var_os("PERMGATE_REDIS_URL").is_some_and(|v| !v.is_empty())
            || file.values.contains_key("PERMGATE_REDIS_URL"))
    {
        // The nodes' shared counts in Redis include the units each node holds in its lease, so
        // only a node can tell what is used: say so rather than print the database's zeros.
        eprintln!(
            "note: PERMGATE_REDIS_URL is set: the nodes count quota in Redis, which this command does not read; \
             its counts are those saved in the database, which nodes counting in Redis do not keep. \
             A node's GET /v1/apps/{{id}}/usage (or /v1/check) has them."
        );
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args, &config::known_names(&command)),
        Command::Config(ConfigCommand::Show { json }) => config::show(&command, &file, json),
        Command::Check(args) => commands::check(args),
        Command::Openapi => {
            println!("{:#}", permgate_server::openapi::document());
            Ok(ExitCode::SUCCESS)
        }
        Command::Catalog(CatalogCommand::Validate { file }) => commands::validate_catalog(&file),
        Command::Catalog(CatalogCommand::Show) => {
            print!("{}", permgate_core::catalog::DEFAULT_CATALOG);
            Ok(ExitCode::SUCCESS)
        }
        Command::Catalog(CatalogCommand::Diff { old, new, json }) => ops::catalog_diff(&old, &new, json),
        Command::Catalog(CatalogCommand::Preview { new, ctx }) => ops::catalog_preview(&ctx, &new),
        Command::Accounts(g) => ops::accounts(&g.ctx, g.command),
        Command::Apps(g) => ops::apps(&g.ctx, g.command),
        Command::Grants(g) => ops::grants(&g.ctx, g.command),
        Command::Requests(g) => ops::requests(&g.ctx, g.command),
        Command::Usage { app, ctx } => ops::usage(&ctx, app),
        Command::ShadowReport { ctx } => ops::shadow_report(&ctx),
        Command::Explain { app, method, path, ctx } => ops::explain(&ctx, app, &method, &path),
        Command::Migrate(store) => commands::migrate(&store),
        Command::Audit(AuditCommand::Verify(store)) => commands::audit_verify(&store),
        Command::Token(args) => commands::token(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
