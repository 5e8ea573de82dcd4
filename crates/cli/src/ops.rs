//! What an operator does by hand, straight on the database: accounts, apps, grants, permission
//! requests, blocking, usage. Every change goes through the same services as the API (the same
//! checks, the same audit events, signed by an admin account), and running nodes pick it up
//! from the change feed within a second. Tables by default, `--json` for scripts.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use permgate_core::model::{AccountId, AppId, Role};
use permgate_core::service::{
    ActOnRequest, Actor, BlockReason, CreateAccount, GrantPermission, ListRequests, ReapPolicy, RevokePermission,
    Services,
};
use permgate_core::time::Timestamp;
use permgate_core::workflow::RequestState;
use serde::Serialize;

use crate::table::render;
use crate::wiring;

/// A group of commands with the context they share.
#[derive(Args)]
pub struct Group<C: Subcommand> {
    #[command(flatten)]
    pub ctx: Ctx,
    #[command(subcommand)]
    pub command: C,
}

/// Where to work, as whom, and how to print; accepted before or after the subcommand.
#[derive(Args, Clone)]
pub struct Ctx {
    /// `sqlite://PATH` or `postgres://…` (default `sqlite://permgate.db`).
    #[arg(long, env = "PERMGATE_DATABASE_URL", default_value = wiring::DEFAULT_DATABASE_URL, global = true)]
    database_url: String,
    /// The catalog in force (default: the built-in one).
    #[arg(long, env = "PERMGATE_CATALOG", global = true)]
    catalog: Option<std::path::PathBuf>,
    /// The admin account the change is recorded under (default: the oldest admin).
    #[arg(long = "as", value_name = "ACCOUNT_ID", global = true)]
    as_account: Option<i64>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum AccountsCommand {
    /// Every account.
    List,
    /// Create an account; its token is printed once.
    Create {
        name: String,
        /// developer, reviewer or admin.
        #[arg(long, default_value = "developer")]
        role: String,
        /// Where review notifications go.
        #[arg(long)]
        email: Option<String>,
    },
    /// Block an account and every app it owns (-12).
    Block(Blocking),
    /// Unblock an account; its apps get back the status they had.
    Unblock(Blocking),
}

/// Who is blocked or unblocked, and why (the reason goes to the audit trail).
#[derive(Args)]
pub struct Blocking {
    id: i64,
    #[arg(long)]
    reason: String,
}

#[derive(Subcommand)]
pub enum AppsCommand {
    /// Every app.
    List,
    /// One app: keys (hints only), members, products, grants.
    Show { id: i64 },
    /// Block an app (-12).
    Block(Blocking),
    /// Unblock an app.
    Unblock(Blocking),
}

#[derive(Subcommand)]
pub enum GrantsCommand {
    /// The permissions an app holds.
    List { app: i64 },
    /// Grant a permission as the operator.
    Add {
        app: i64,
        permission: String,
        #[arg(long)]
        reason: String,
        /// RFC 3339, e.g. 2027-01-01T00:00:00+09:00.
        #[arg(long)]
        expires_at: Option<String>,
        /// Parameters as JSON, e.g. '{"rule": "talk_share_daily", "limit": 100000}'.
        #[arg(long)]
        params: Option<String>,
    },
    /// Grant permissions listed in a CSV file with the header `app_id,permission,reason,expires_at`
    /// (`expires_at` may be empty). Every row is checked before anything is written; rows the app
    /// holds already are skipped, so a file can be imported again.
    Import { file: std::path::PathBuf },
    /// Send the grant-expiry reminders that are due and, with --reap-unused-days, warn about and
    /// revoke grants no call has exercised (a running server does this every 5 minutes).
    Lifecycle {
        #[arg(long, env = "PERMGATE_REAP_UNUSED_DAYS", default_value_t = 0)]
        reap_unused_days: u32,
        #[arg(long, env = "PERMGATE_REAP_WARNING_DAYS", default_value_t = 14)]
        reap_warning_days: u32,
    },
    /// Revoke a permission.
    Revoke {
        app: i64,
        permission: String,
        #[arg(long)]
        reason: String,
        /// The key a grant made for one key is bound to (the app-wide grant without it).
        #[arg(long)]
        key: Option<i64>,
        /// For `increased_quota` held for several quota rules: the rule whose grant to revoke
        /// (every rule's without it).
        #[arg(long)]
        rule: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum RequestsCommand {
    /// Permission requests, newest first.
    List {
        /// submitted, in_review, on_hold, approved, rejected or withdrawn.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        app: Option<i64>,
    },
    /// One request with its history.
    Show { id: i64 },
    /// Act on a request: start_review, approve, reject, hold or supplement.
    Decide {
        id: i64,
        action: String,
        /// A review reason from the catalog (reject and hold need one).
        #[arg(long)]
        reason_code: Option<String>,
        #[arg(long)]
        comment: Option<String>,
        /// RFC 3339: when an approved grant ends.
        #[arg(long)]
        expires_at: Option<String>,
        /// For quota permissions: the limit granted.
        #[arg(long)]
        granted_limit: Option<u64>,
    },
}

/// The services over the configured store and catalog.
fn services(ctx: &Ctx) -> anyhow::Result<Services> {
    wiring::open_services(
        &ctx.database_url,
        ctx.catalog.as_deref(),
        permgate_core::credential::TokenVerifier::new(None),
    )
}

/// The services over the configured store, and the admin acting.
fn open(ctx: &Ctx) -> anyhow::Result<(Services, Actor)> {
    let services = services(ctx)?;
    let accounts = services.store.accounts()?;
    let account = match ctx.as_account {
        Some(id) => accounts
            .into_iter()
            .find(|a| a.id == AccountId(id))
            .with_context(|| format!("--as {id}: no such account"))?,
        None => accounts.into_iter().filter(|a| a.role == Role::Admin && !a.blocked).min_by_key(|a| a.id.0).context(
            "the database has no admin account yet: start `permgate serve` once (it creates one), or pass --as",
        )?,
    };
    if account.role != Role::Admin || account.blocked {
        bail!("--as {}: account `{}` is not an active admin", account.id, account.name);
    }
    Ok((services, Actor { account }))
}

fn err(e: permgate_core::error::ServiceError) -> anyhow::Error {
    anyhow::anyhow!("{e} (code {})", e.code())
}

fn time(t: Timestamp) -> String {
    t.to_rfc3339()
}

fn opt_time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".into(), time)
}

fn timestamp(field: &str, text: Option<&str>) -> anyhow::Result<Option<Timestamp>> {
    text.map(|t| Timestamp::parse_rfc3339(t).with_context(|| format!("{field} `{t}` is not an RFC 3339 time")))
        .transpose()
}

/// Prints `value` as JSON, or one line saying what was done.
fn report(json: bool, value: &impl Serialize, text: impl FnOnce() -> String) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(value).context("printing JSON")?);
    } else {
        println!("{}", text());
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints `value` as JSON, or the table `rows` under `headers`.
fn emit(json: bool, value: &impl Serialize, headers: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(value).context("printing JSON")?);
    } else if rows.is_empty() {
        println!("(none)");
    } else {
        print!("{}", render(headers, &rows));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn accounts(ctx: &Ctx, command: AccountsCommand) -> anyhow::Result<ExitCode> {
    let blocked = matches!(command, AccountsCommand::Block(_));
    let (s, actor) = open(ctx)?;
    match command {
        AccountsCommand::List => {
            let accounts = s.accounts(&actor).map_err(err)?;
            let rows = accounts
                .iter()
                .map(|a| {
                    vec![
                        a.id.to_string(),
                        a.name.clone(),
                        a.role.to_string(),
                        a.email.clone().unwrap_or_else(|| "-".into()),
                        if a.blocked { "blocked" } else { "active" }.into(),
                        time(a.created_at),
                    ]
                })
                .collect();
            emit(ctx.json, &accounts, &["ID", "NAME", "ROLE", "EMAIL", "STATUS", "CREATED"], rows)
        }
        AccountsCommand::Create { name, role, email } => {
            let role: Role =
                role.parse().map_err(|_| anyhow::anyhow!("--role must be developer, reviewer or admin"))?;
            let created = s.create_account(&actor, CreateAccount { name, role, email }).map_err(err)?;
            if ctx.json {
                return emit(true, &created, &[], Vec::new());
            }
            println!(
                "created {} account {} ({}). Its token, shown only this once:",
                created.account.role, created.account.id, created.account.name
            );
            println!("\n    {}\n", created.token);
            Ok(ExitCode::SUCCESS)
        }
        AccountsCommand::Block(Blocking { id, reason }) | AccountsCommand::Unblock(Blocking { id, reason }) => {
            let done = s.set_account_blocked(&actor, AccountId(id), blocked, BlockReason { reason }).map_err(err)?;
            report(ctx.json, &done, || {
                let apps: Vec<String> = done.owned_apps.iter().map(ToString::to_string).collect();
                let apps = if apps.is_empty() { "none".to_owned() } else { apps.join(", ") };
                format!("account {id} {}; apps it owns: {apps}", if blocked { "blocked" } else { "unblocked" })
            })
        }
    }
}

pub fn apps(ctx: &Ctx, command: AppsCommand) -> anyhow::Result<ExitCode> {
    let blocked = matches!(command, AppsCommand::Block(_));
    let (s, actor) = open(ctx)?;
    match command {
        AppsCommand::List => {
            let apps = s.apps(&actor).map_err(err)?;
            let rows = apps
                .iter()
                .map(|a| {
                    vec![
                        a.id.to_string(),
                        a.name.clone(),
                        a.classification.to_owned(),
                        a.status.to_string(),
                        a.owner_id.to_string(),
                        a.members.len().to_string(),
                        time(a.created_at),
                    ]
                })
                .collect();
            emit(ctx.json, &apps, &["ID", "NAME", "TYPE", "STATUS", "OWNER", "MEMBERS", "CREATED"], rows)
        }
        AppsCommand::Show { id } => {
            let app = s.app(&actor, AppId(id)).map_err(err)?;
            let grants = s.permissions(&actor, AppId(id)).map_err(err)?;
            if ctx.json {
                return emit(true, &serde_json::json!({"app": app, "permissions": grants}), &[], Vec::new());
            }
            println!(
                "app {} \"{}\" ({}), {}; owner account {}",
                app.id, app.name, app.classification, app.status, app.owner_id
            );
            println!("company {}, category {}, created {}\n", app.company_name, app.category, time(app.created_at));
            let keys: Vec<Vec<String>> =
                [&app.keys.rest_api, &app.keys.javascript, &app.keys.native_app, &app.keys.admin]
                    .into_iter()
                    .flatten()
                    .map(|k| vec![k.id.to_string(), k.kind.to_string(), k.hint.clone(), time(k.created_at)])
                    .collect();
            print!("{}", render(&["KEY", "KIND", "HINT", "CREATED"], &keys));
            println!();
            let members: Vec<Vec<String>> =
                app.members.iter().map(|m| vec![m.account_id.to_string(), m.role.to_string()]).collect();
            print!("{}", render(&["MEMBER", "ROLE"], &members));
            println!();
            let on: Vec<&str> = app.products.iter().filter(|p| p.activated).map(|p| p.product.as_str()).collect();
            println!("products activated: {}\n", if on.is_empty() { "none".to_owned() } else { on.join(", ") });
            print!("{}", render(&["PERMISSION", "SOURCE", "GRANTED", "EXPIRES"], &grant_rows(&grants)));
            Ok(ExitCode::SUCCESS)
        }
        AppsCommand::Block(Blocking { id, reason }) | AppsCommand::Unblock(Blocking { id, reason }) => {
            let app = s.set_app_blocked(&actor, AppId(id), blocked, BlockReason { reason }).map_err(err)?;
            report(ctx.json, &app, || format!("app {id} is now {}", app.status))
        }
    }
}

fn grant_rows(grants: &[permgate_core::service::HeldPermission]) -> Vec<Vec<String>> {
    grants
        .iter()
        .map(|g| vec![g.permission.clone(), g.source.to_string(), time(g.granted_at), opt_time(g.expires_at)])
        .collect()
}

pub fn grants(ctx: &Ctx, command: GrantsCommand) -> anyhow::Result<ExitCode> {
    let (s, actor) = open(ctx)?;
    match command {
        GrantsCommand::List { app } => {
            let grants = s.permissions(&actor, AppId(app)).map_err(err)?;
            let rows = grant_rows(&grants);
            emit(ctx.json, &grants, &["PERMISSION", "SOURCE", "GRANTED", "EXPIRES"], rows)
        }
        GrantsCommand::Add { app, permission, reason, expires_at, params } => {
            let params = params
                .map(|p| serde_json::from_str(&p).with_context(|| format!("--params `{p}` is not JSON")))
                .transpose()?;
            let input = GrantPermission {
                permission,
                reason,
                expires_at: timestamp("--expires-at", expires_at.as_deref())?,
                params,
                key_id: None,
            };
            let held = s.grant_permission(&actor, AppId(app), input).map_err(err)?;
            report(ctx.json, &held, || {
                format!("app {app} now holds `{}` (until {})", held.permission, opt_time(held.expires_at))
            })
        }
        GrantsCommand::Import { file } => import_grants(ctx, &s, &actor, &file),
        GrantsCommand::Lifecycle { reap_unused_days, reap_warning_days } => {
            let reap = (reap_unused_days > 0)
                .then_some(ReapPolicy { unused_days: reap_unused_days, warning_days: reap_warning_days });
            let run = s.run_lifecycle_as(&actor, reap).map_err(err)?;
            let rows = run
                .notified
                .iter()
                .map(|(app, p, kind)| vec![app.to_string(), p.clone(), kind.clone()])
                .chain(run.reaped.iter().map(|(app, p)| vec![app.to_string(), p.clone(), "revoked (unused)".into()]))
                .chain(
                    run.lapsed
                        .iter()
                        .map(|(app, p)| vec![app.to_string(), p.clone(), "ended; what needed it went".into()]),
                )
                .collect();
            emit(ctx.json, &run, &["APP", "PERMISSION", "DONE"], rows)
        }
        GrantsCommand::Revoke { app, permission, reason, key, rule } => {
            let input = RevokePermission { reason, key_id: key.map(permgate_core::model::KeyId), rule };
            let held = s.revoke_permission(&actor, AppId(app), &permission, input).map_err(err)?;
            report(ctx.json, &held, || format!("revoked `{}` from app {app}", held.permission))
        }
    }
}

/// One row of a grants file.
struct GrantRow {
    line: usize,
    app: AppId,
    input: GrantPermission,
}

fn import_grants(ctx: &Ctx, s: &Services, actor: &Actor, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let header: Vec<String> = lines.next().map(|(_, l)| csv_fields(l)).unwrap_or_default();
    if header != ["app_id", "permission", "reason", "expires_at"] {
        bail!("{}: the first line must be `app_id,permission,reason,expires_at`", file.display());
    }
    let catalog = s.snapshot.read().catalog().clone();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let f = csv_fields(line);
        let [app, permission, reason, expires] = f.as_slice() else {
            problems.push(format!("line {n}: expected 4 fields, found {}", f.len()));
            continue;
        };
        let Ok(app) = app.trim().parse::<i64>() else {
            problems.push(format!("line {n}: app_id `{app}` is not a number"));
            continue;
        };
        if catalog.permission_index(permission.trim()).is_none() {
            problems.push(format!("line {n}: the catalog has no permission `{}`", permission.trim()));
            continue;
        }
        let expires_at = match expires.trim() {
            "" => None,
            t => match Timestamp::parse_rfc3339(t) {
                Some(t) => Some(t),
                None => {
                    problems.push(format!("line {n}: expires_at `{t}` is not an RFC 3339 time"));
                    continue;
                }
            },
        };
        let input = GrantPermission {
            permission: permission.trim().to_owned(),
            reason: reason.clone(),
            expires_at,
            params: None,
            key_id: None,
        };
        rows.push(GrantRow { line: n, app: AppId(app), input });
    }
    if !problems.is_empty() {
        bail!("{}: nothing imported; fix these rows:\n  {}", file.display(), problems.join("\n  "));
    }
    let mut progress = crate::table::Progress::new("importing grants", rows.len() as u64);
    let (mut granted, mut skipped) = (0u64, 0u64);
    for (done, row) in rows.into_iter().enumerate() {
        let held = s.permissions(actor, row.app).map_err(|e| anyhow::anyhow!("line {}: {}", row.line, err(e)))?;
        if held.iter().any(|h| h.permission == row.input.permission) {
            skipped += 1;
        } else {
            s.grant_permission(actor, row.app, row.input)
                .map_err(|e| anyhow::anyhow!("line {}: {}", row.line, err(e)))?;
            granted += 1;
        }
        progress.set(done as u64 + 1);
    }
    progress.finish();
    let summary = serde_json::json!({"granted": granted, "skipped": skipped});
    report(ctx.json, &summary, || format!("granted {granted}; skipped {skipped} the apps held already"))
}

/// The fields of one CSV line: commas separate, double quotes enclose fields with commas, `""`
/// inside quotes is a quote.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut();
        match (c, quoted, field) {
            ('"', true, Some(f)) if chars.peek() == Some(&'"') => {
                chars.next();
                f.push('"');
            }
            ('"', _, _) => quoted = !quoted,
            (',', false, _) => fields.push(String::new()),
            (c, _, Some(f)) => f.push(c),
            (_, _, None) => {}
        }
    }
    fields
}

pub fn requests(ctx: &Ctx, command: RequestsCommand) -> anyhow::Result<ExitCode> {
    let (s, actor) = open(ctx)?;
    match command {
        RequestsCommand::List { state, app } => {
            let state = state
                .map(|st| {
                    st.parse::<RequestState>().map_err(|_| anyhow::anyhow!("--state `{st}` is not a request state"))
                })
                .transpose()?;
            let query = ListRequests { state, app_id: app.map(AppId), ..ListRequests::default() };
            let list = s.permission_requests(&actor, query).map_err(err)?.requests;
            let rows = list
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.app_id.to_string(),
                        r.permission.clone(),
                        r.state.to_string(),
                        r.applicant.to_string(),
                        time(r.updated_at),
                    ]
                })
                .collect();
            emit(ctx.json, &list, &["ID", "APP", "PERMISSION", "STATE", "APPLICANT", "UPDATED"], rows)
        }
        RequestsCommand::Show { id } => {
            let r = s.permission_request(&actor, id).map_err(err)?;
            if ctx.json {
                return emit(true, &r, &[], Vec::new());
            }
            println!(
                "request {} by account {} for app {}: `{}`, {}",
                r.id, r.applicant, r.app_id, r.permission, r.state
            );
            println!("service:  {}\nreason:   {}", r.service_url, r.reason);
            if !r.usage_scenario.is_empty() {
                println!("scenario: {}", r.usage_scenario);
            }
            if let Some(e) = &r.evidence {
                println!("evidence: {} ({}, {} bytes)", e.file_name, e.content_type, e.size);
            }
            println!();
            let history: Vec<Vec<String>> = r
                .history
                .iter()
                .map(|h| {
                    vec![
                        time(h.at),
                        h.actor.map_or_else(|| "permgate".into(), |a| a.to_string()),
                        h.action.clone(),
                        h.to.to_string(),
                        h.reason_code.clone().unwrap_or_default(),
                        h.comment.clone(),
                    ]
                })
                .collect();
            print!("{}", render(&["AT", "BY", "ACTION", "STATE", "REASON", "COMMENT"], &history));
            Ok(ExitCode::SUCCESS)
        }
        RequestsCommand::Decide { id, action, reason_code, comment, expires_at, granted_limit } => {
            let input = ActOnRequest {
                action,
                reason_code,
                comment,
                expires_at: timestamp("--expires-at", expires_at.as_deref())?,
                granted_limit,
            };
            let r = s.act_on_request(&actor, id, input).map_err(err)?;
            report(ctx.json, &r, || format!("request {} is now {}", r.id, r.state))
        }
    }
}

/// `permgate explain APP METHOD PATH`.
pub fn explain(ctx: &Ctx, app: i64, method: &str, path: &str) -> anyhow::Result<ExitCode> {
    let (s, actor) = open(ctx)?;
    s.restore_counters().map_err(err)?;
    let e = s.explain(&actor, AppId(app), method, path).map_err(err)?;
    let rows = e
        .checks
        .iter()
        .map(|c| vec![c.check.to_owned(), c.result.to_owned(), c.detail.clone(), c.fix.clone().unwrap_or_default()])
        .collect();
    if !ctx.json {
        println!("app {app}: {} {} ({})\n", e.method, e.path, e.api.as_deref().unwrap_or("no API"));
    }
    let code = emit(ctx.json, &e, &["CHECK", "RESULT", "DETAIL", "TO DO"], rows)?;
    if let (false, Some(v)) = (ctx.json, &e.verdict) {
        let outcome = if v.allow { "allowed".to_owned() } else { format!("denied {} ({})", v.code, v.status) };
        println!(
            "\nverdict with the app's {} credential: {outcome}{}",
            v.credential,
            v.msg.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
        );
    }
    Ok(code)
}

/// `permgate shadow-report`.
pub fn shadow_report(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let (s, actor) = open(ctx)?;
    let report = s.shadow_report(&actor).map_err(err)?;
    let rows = report
        .subjects
        .iter()
        .map(|r| {
            let codes: Vec<String> = r.codes.iter().map(ToString::to_string).collect();
            let apps: Vec<String> = r.apps.iter().map(ToString::to_string).collect();
            vec![r.shadow.clone(), codes.join(", "), r.calls.to_string(), apps.join(", ")]
        })
        .collect();
    if !ctx.json && report.subjects.is_empty() {
        println!("no call in the decision log was allowed by shadow mode");
        return Ok(ExitCode::SUCCESS);
    }
    emit(ctx.json, &report, &["IN SHADOW MODE", "WOULD DENY", "CALLS", "APPS"], rows)
}

/// `permgate usage APP`.
pub fn usage(ctx: &Ctx, app: i64) -> anyhow::Result<ExitCode> {
    let (s, actor) = open(ctx)?;
    s.restore_counters().map_err(err)?;
    let usage = s.usage(&actor, AppId(app)).map_err(err)?;
    let rows = usage
        .rules
        .iter()
        .filter(|r| r.used > 0 || ctx.json)
        .map(|r| {
            vec![r.rule.clone(), r.used.to_string(), r.limit.to_string(), format!("{}%", r.percent), time(r.reset_at)]
        })
        .collect::<Vec<_>>();
    if !ctx.json {
        println!("app {app}, windows in {} (rules with no use are left out; --json lists all)\n", usage.time_zone);
    }
    emit(ctx.json, &usage, &["RULE", "USED", "LIMIT", "USE", "RESETS"], rows)
}

/// Reads a catalog file, or the built-in catalog for `builtin`.
fn catalog_arg(arg: &str) -> anyhow::Result<permgate_core::catalog::Catalog> {
    if arg == "builtin" { wiring::load_catalog(None) } else { wiring::load_catalog(Some(std::path::Path::new(arg))) }
}

/// `permgate catalog diff OLD NEW`: exits 0 when they declare the same, 1 when they differ.
pub fn catalog_diff(old: &str, new: &str, json: bool) -> anyhow::Result<ExitCode> {
    let d = permgate_core::catalog::diff(&catalog_arg(old)?, &catalog_arg(new)?);
    if json {
        println!("{}", serde_json::to_string_pretty(&d).context("printing JSON")?);
    } else if d.is_empty() {
        println!("no differences (catalog {} and {})", d.old_version, d.new_version);
    } else {
        for line in d.lines() {
            println!("{line}");
        }
    }
    Ok(if d.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `permgate catalog preview NEW`: replays the recent decision log against NEW and against the
/// catalog in force (PERMGATE_CATALOG, or the built-in one).
pub fn catalog_preview(ctx: &Ctx, new: &str) -> anyhow::Result<ExitCode> {
    let new = catalog_arg(new)?;
    let services = services(ctx)?;
    let mut progress: Option<crate::table::Progress> = None;
    let preview = services
        .preview_catalog(new, &mut |done, total| {
            let bar =
                progress.get_or_insert_with(|| crate::table::Progress::new("replaying the decision log", total as u64));
            bar.set(done as u64);
        })
        .map_err(err)?;
    if let Some(bar) = progress {
        bar.finish();
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&preview).context("printing JSON")?);
        return Ok(ExitCode::SUCCESS);
    }
    let lines = preview.diff.lines();
    println!("catalog changes ({}):", lines.len());
    for line in &lines {
        println!("  {line}");
    }
    println!(
        "\nreplayed {} logged calls: {} would be decided differently, for {} app(s) and {} API(s)",
        preview.replayed,
        preview.changed.len(),
        preview.apps.len(),
        preview.apis.len()
    );
    if !preview.changed.is_empty() {
        let rows: Vec<Vec<String>> = preview
            .changed
            .iter()
            .map(|c| {
                vec![
                    c.app_id.to_string(),
                    c.api.clone(),
                    format!("{} {}", c.method, c.path),
                    c.calls.to_string(),
                    c.before.code.to_string(),
                    c.after.code.to_string(),
                    c.after.msg.clone().unwrap_or_default(),
                ]
            })
            .collect();
        println!();
        print!("{}", render(&["APP", "API", "CALL", "CALLS", "NOW", "THEN", "WHY"], &rows));
    }
    if !preview.orphaned_grants.is_empty() {
        println!("\ngrants of permissions the new catalog drops (kept, but no longer enforced):");
        for (app, permission) in &preview.orphaned_grants {
            println!("  app {app}: {permission}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::csv_fields;

    #[test]
    fn csv_fields_split_on_commas_outside_quotes() {
        assert_eq!(csv_fields("1,kakao_moment,\"signed, sealed\",\r"), ["1", "kakao_moment", "signed, sealed", ""]);
        assert_eq!(
            csv_fields("2,p,\"a \"\"quoted\"\" word\",2027-01-01T00:00:00Z"),
            ["2", "p", "a \"quoted\" word", "2027-01-01T00:00:00Z"]
        );
    }
}
