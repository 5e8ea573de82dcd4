//! `GET /openapi.json`: the OpenAPI 3.1 document of every route [`crate::router`] serves.
//!
//! The bodies' schemas are derived (with schemars) from the same serde types the handlers read and
//! write, so a field added to a type shows up here without an edit; what is written by hand is
//! which type each operation takes and answers. Tests keep the rest honest: the operations must be
//! exactly the router's routes, `docs/openapi.json` must equal this document (regenerate it with
//! `permgate openapi` after a change), and CI runs schemathesis against a live server, which fails
//! on any response that does not match its schema.

use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use permgate_core::audit::AuditEvent;
use permgate_core::catalog::{Catalog, CatalogDiff};
use permgate_core::decision::Decision;
use permgate_core::model::{Account, ConsentSetting, Member, PaidUsage, TalkChannel};
use permgate_core::notify::OutboxMessage;
use permgate_core::service::{
    AccountBlock, ActOnRequest, AddKey, AddMember, AppView, Apply, BlockReason, CatalogPreview, ConnectChannel,
    CreateAccount, CreateApp, CreatedAccount, EligibilityView, Explanation, GrantPermission, HeldPermission, KeyView,
    LifecycleRun, ProductState, RemoveBusiness, RequestPage, RevokePermission, SetBusiness, SetConsentItem,
    SetPaidUsage, SetPlatforms, SetProduct, ShadowReport, Usage,
};
use permgate_core::workflow::PermissionRequest;

use crate::console::SignIn;
use crate::handlers::catalog::LifecycleInput;
use crate::handlers::check::CheckRequest;

/// How a caller proves who it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// Anyone.
    None,
    /// An account token (`Authorization: Bearer …`) or the console's session cookie.
    Account,
    /// The app's credential, as the platform's API would receive it (forward auth), and the
    /// decision secret when the node has one.
    AppKey,
    /// A gateway: anyone, or only holders of the decision secret when the node has one.
    Gateway,
}

/// One operation, as the document lists it.
struct Op {
    method: &'static str,
    path: &'static str,
    id: String,
    tag: &'static str,
    summary: &'static str,
    auth: Auth,
    query: Vec<Value>,
    body: Option<Value>,
    responses: Vec<(u16, Value)>,
}

impl Op {
    fn new(
        method: &'static str,
        path: &'static str,
        id: impl Into<String>,
        tag: &'static str,
        summary: &'static str,
    ) -> Op {
        Op {
            method,
            path,
            id: id.into(),
            tag,
            summary,
            auth: Auth::Account,
            query: Vec::new(),
            body: None,
            responses: Vec::new(),
        }
    }

    fn auth(mut self, auth: Auth) -> Op {
        self.auth = auth;
        self
    }

    fn query(mut self, name: &str, description: &str, schema: Value) -> Op {
        self.query.push(json!({"name": name, "in": "query", "description": description, "schema": schema}));
        self
    }

    /// A JSON request body of the given schema.
    fn json_body(mut self, schema: Value) -> Op {
        self.body = Some(json!({"required": true, "content": {"application/json": {"schema": schema}}}));
        self
    }

    fn body(mut self, body: Value) -> Op {
        self.body = Some(body);
        self
    }

    /// A JSON response of the given schema.
    fn answers(mut self, status: u16, description: &str, schema: Value) -> Op {
        self.responses
            .push((status, json!({"description": description, "content": {"application/json": {"schema": schema}}})));
        self
    }

    fn answers_with(mut self, status: u16, response: Value) -> Op {
        self.responses.push((status, response));
        self
    }

    fn no_content(self, description: &str) -> Op {
        self.answers_with(204, json!({ "description": description }))
    }
}

/// The schemas of the bodies: responses by reference to `components/schemas`, request bodies
/// inline (a type read and written may differ in which fields are required).
struct Schemas {
    responses: SchemaGenerator,
    requests: SchemaGenerator,
}

impl Schemas {
    fn new() -> Schemas {
        let responses = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.contract = Contract::Serialize;
            s.meta_schema = None;
        });
        let requests = SchemaSettings::draft2020_12().with(|s| {
            s.inline_subschemas = true;
            s.contract = Contract::Deserialize;
            s.meta_schema = None;
        });
        Schemas { responses: responses.into_generator(), requests: requests.into_generator() }
    }

    fn out<T: JsonSchema>(&mut self) -> Value {
        self.responses.subschema_for::<T>().to_value()
    }

    fn inp<T: JsonSchema>(&mut self) -> Value {
        self.requests.subschema_for::<T>().to_value()
    }

    /// `{"<field>": [T]}`, the shape of every list.
    fn list<T: JsonSchema>(&mut self, field: &str) -> Value {
        json!({
            "type": "object",
            "required": [field],
            "properties": { field: { "type": "array", "items": self.out::<T>() } },
        })
    }
}

fn text(content_type: &str, description: &str) -> Value {
    json!({"description": description, "content": {content_type: {"schema": {"type": "string"}}}})
}

fn integer() -> Value {
    json!({"type": "integer", "format": "int64"})
}

fn string() -> Value {
    json!({"type": "string"})
}

/// Every operation the router serves, in the router's order.
fn operations(s: &mut Schemas) -> Vec<Op> {
    use Auth::{AppKey, Gateway, None};
    let app = s.out::<AppView>();
    let key = s.out::<KeyView>();
    let account = s.out::<Account>();
    let request = s.out::<PermissionRequest>();
    let block = s.inp::<BlockReason>();
    let mut ops = vec![
        Op::new("get", "/", "console", "console", "The web console (developer portal and reviewer desk).")
            .auth(None)
            .answers_with(200, text("text/html", "The console's page.")),
        Op::new("get", "/console/app.js", "consoleScript", "console", "The console's script.")
            .auth(None)
            .answers_with(200, text("text/javascript", "JavaScript.")),
        Op::new("get", "/console/app.css", "consoleStyle", "console", "The console's style sheet.")
            .auth(None)
            .answers_with(200, text("text/css", "CSS.")),
        Op::new("get", "/v1/session", "session", "console", "Who is signed in (200 also when nobody is).")
            .auth(None)
            .answers(
                200,
                "The signed-in account with `signed_in: true`, or `signed_in: false` and why.",
                json!({
                    "type": "object",
                    "required": ["signed_in"],
                    "properties": {"signed_in": {"type": "boolean"}, "msg": string()},
                }),
            ),
        Op::new("post", "/v1/session", "signIn", "console", "Exchanges an account token for the console's session cookie.")
            .auth(None)
            .json_body(s.inp::<SignIn>())
            .answers(200, "Signed in; the cookie is set.", account.clone()),
        Op::new("delete", "/v1/session", "signOut", "console", "Clears the session cookie.")
            .auth(None)
            .no_content("Signed out."),
        Op::new("get", "/healthz", "healthz", "health", "The process is up.").auth(None).answers(
            200,
            "Up; `ready` says whether it answers decisions.",
            json!({
                "type": "object",
                "required": ["status", "ready", "version"],
                "properties": {
                    "status": string(), "ready": {"type": "boolean"}, "version": string(), "store": string(),
                    "catalog_version": string(), "snapshot_version": integer(), "apps": integer(),
                },
            }),
        ),
        Op::new("get", "/readyz", "readyz", "health", "This node can answer: store, snapshot and Redis are there.")
            .auth(None)
            .answers(
                200,
                "Ready.",
                json!({"type": "object", "required": ["status"], "properties": {"status": string(), "store": string()}}),
            )
            .answers(
                503,
                "Not ready, and why.",
                json!({"type": "object", "required": ["status", "reason"], "properties": {"status": string(), "reason": string()}}),
            ),
        Op::new("get", "/metrics", "metrics", "health", "Prometheus metrics.")
            .auth(None)
            .answers_with(200, text("text/plain", "The Prometheus text format.")),
        Op::new("get", "/openapi.json", "openapi", "health", "This document.")
            .auth(None)
            .answers(200, "The OpenAPI 3.1 document.", json!({"type": "object", "required": ["openapi", "paths"]})),
        Op::new("post", "/v1/check", "check", "decisions", "Decides a call: permissions, restrictions and quota.")
            .auth(Gateway)
            .json_body(s.inp::<CheckRequest>())
            .answers_with(
                200,
                json!({
                    "description": "The decision (a deny is a 200 too; its `status` and `code` are what the caller should get).",
                    "headers": {"Retry-After": {"description": "On quota denies: seconds until the window resets.", "schema": integer()}},
                    "content": {"application/json": {"schema": s.out::<Decision>()}},
                }),
            ),
    ];
    // `/v1/authz` answers any method: the proxy forwards the original one.
    for (path, id) in [("/v1/authz", "authz"), ("/v1/authz/{original}", "authzPath")] {
        for (method, name) in
            [("get", "Get"), ("post", "Post"), ("put", "Put"), ("patch", "Patch"), ("delete", "Delete")]
        {
            ops.push(
                Op::new(
                    method,
                    path,
                    format!("{id}{name}"),
                    "decisions",
                    "Forward auth for nginx `auth_request`, Traefik `ForwardAuth` and Envoy `ext_authz`.",
                )
                .auth(AppKey)
                .answers_with(
                    200,
                    json!({
                        "description": "Allowed; `X-Permgate-App-Id` and restriction headers say more.",
                        "headers": {"X-Permgate-App-Id": {"schema": string()}},
                    }),
                ),
            );
        }
    }
    ops.extend([
        Op::new("get", "/v1/catalog", "catalog", "catalog", "The catalog in force.").answers(200, "The catalog.", s.out::<Catalog>()),
        Op::new("post", "/v1/catalog/reload", "reloadCatalog", "catalog", "Reads the catalog file again and puts it in force (admin).")
            .answers(
                200,
                "What changed.",
                json!({
                    "type": "object",
                    "required": ["version", "changed", "changes", "diff"],
                    "properties": {
                        "version": string(), "changed": {"type": "boolean"},
                        "changes": {"type": "array", "items": string()}, "diff": s.out::<CatalogDiff>(),
                    },
                }),
            ),
        Op::new("post", "/v1/catalog/preview", "previewCatalog", "catalog", "What a catalog (the TOML body, or the file when empty) would change (admin).")
            .body(json!({"required": false, "description": "Catalog TOML; empty reads the catalog file.", "content": {"text/plain": {"schema": string()}}}))
            .answers(
                200,
                "The changes, and the decisions that would change.",
                json!({
                    "type": "object",
                    "required": ["changes", "preview"],
                    "properties": {"changes": {"type": "array", "items": string()}, "preview": s.out::<CatalogPreview>()},
                }),
            ),
        Op::new("get", "/v1/shadow-report", "shadowReport", "catalog", "What enforcing the checks in shadow mode would deny (staff).")
            .answers(200, "The report.", s.out::<ShadowReport>()),
        Op::new("post", "/v1/grants/lifecycle", "grantLifecycle", "permissions", "Sends due expiry reminders and reaps unused grants now (admin).")
            .json_body(s.inp::<LifecycleInput>())
            .answers(200, "What was done.", s.out::<LifecycleRun>()),
        Op::new("post", "/v1/accounts", "createAccount", "accounts", "Creates an account and prints its token once (admin).")
            .json_body(s.inp::<CreateAccount>())
            .answers(201, "Created; `token` is shown only now.", s.out::<CreatedAccount>()),
        Op::new("get", "/v1/accounts", "listAccounts", "accounts", "Every account (staff).").answers(200, "The accounts.", s.list::<Account>("accounts")),
        Op::new("get", "/v1/accounts/me", "me", "accounts", "The caller's account.").answers(200, "The account.", account.clone()),
        Op::new("post", "/v1/accounts/{id}/block", "blockAccount", "accounts", "Blocks a developer account and its apps (admin).")
            .json_body(block.clone())
            .answers(200, "Blocked.", s.out::<AccountBlock>()),
        Op::new("post", "/v1/accounts/{id}/unblock", "unblockAccount", "accounts", "Lifts an account's block (admin).")
            .json_body(block.clone())
            .answers(200, "Unblocked.", s.out::<AccountBlock>()),
        Op::new("post", "/v1/apps", "createApp", "apps", "Registers an app; the caller becomes its owner.")
            .json_body(s.inp::<CreateApp>())
            .answers(201, "Created, with its keys.", app.clone()),
        Op::new("get", "/v1/apps", "listApps", "apps", "The apps the caller may see.").answers(200, "The apps.", s.list::<AppView>("apps")),
        Op::new("get", "/v1/apps/{id}", "getApp", "apps", "One app.").answers(200, "The app.", app.clone()),
        Op::new("post", "/v1/apps/{id}/keys", "addKey", "keys", "Adds a key.")
            .json_body(s.inp::<AddKey>())
            .answers(201, "The key, with its secret.", key.clone()),
        Op::new("delete", "/v1/apps/{id}/keys/{key_id}", "deleteKey", "keys", "Deletes a key; calls with it fail from the next decision.")
            .no_content("Deleted."),
        Op::new("post", "/v1/apps/{id}/keys/{key_id}/rotate", "rotateKey", "keys", "Gives a key a new secret; the old one stops working.")
            .answers(200, "The key, with its new secret.", key.clone()),
        Op::new("put", "/v1/apps/{id}/keys/{key_id}/platforms", "setPlatforms", "keys", "Sets the web domains, Android and iOS apps a key may be used from.")
            .json_body(s.inp::<SetPlatforms>())
            .answers(200, "The key.", key.clone()),
        Op::new("post", "/v1/apps/{id}/members", "setMember", "apps", "Adds a member or changes a member's role.")
            .json_body(s.inp::<AddMember>())
            .answers(200, "The member's role changed.", s.out::<Member>())
            .answers(201, "The member was added.", s.out::<Member>()),
        Op::new("delete", "/v1/apps/{id}/members/{account_id}", "removeMember", "apps", "Removes a member.").no_content("Removed."),
        Op::new("put", "/v1/apps/{id}/products/{product}", "setProduct", "apps", "Turns a product (Kakao Login, Kakao Talk Message, ...) on or off.")
            .json_body(s.inp::<SetProduct>())
            .answers(200, "The product's state.", s.out::<ProductState>()),
        Op::new("get", "/v1/apps/{id}/permissions", "listPermissions", "permissions", "The permissions the app holds.")
            .answers(200, "The permissions.", s.list::<HeldPermission>("permissions")),
        Op::new("post", "/v1/apps/{id}/permissions", "grantPermission", "permissions", "Grants a permission directly (reviewers and admins).")
            .json_body(s.inp::<GrantPermission>())
            .answers(201, "The grant.", s.out::<HeldPermission>()),
        Op::new("delete", "/v1/apps/{id}/permissions/{permission}", "revokePermission", "permissions", "Revokes a permission from the next decision.")
            .json_body(s.inp::<RevokePermission>())
            .answers(
                200,
                "The revoked grant.",
                json!({"type": "object", "required": ["revoked"], "properties": {"revoked": s.out::<HeldPermission>()}}),
            ),
        Op::new("get", "/v1/apps/{id}/usage", "usage", "quotas", "The app's quota use per rule, with limits and resets.")
            .answers(200, "The usage.", s.out::<Usage>()),
        Op::new("get", "/v1/apps/{id}/explain", "explain", "permissions", "Why a call by this app would be allowed or denied, check by check.")
            .query("method", "The call's method (default GET).", string())
            .query("path", "The call's path, e.g. /v2/user/me (required).", string())
            .answers(200, "Each check and the verdict.", s.out::<Explanation>()),
        Op::new("post", "/v1/apps/{id}/block", "blockApp", "apps", "Blocks an app: every call is denied (-4) (admin).")
            .json_body(block.clone())
            .answers(200, "The app.", app.clone()),
        Op::new("post", "/v1/apps/{id}/unblock", "unblockApp", "apps", "Lifts an app's block (admin).")
            .json_body(block)
            .answers(200, "The app.", app.clone()),
    ]);
    let paid = json!({
        "type": "object",
        "required": ["paid_usage"],
        "properties": {"paid_usage": s.out::<Option<PaidUsage>>()},
    });
    let eligibility = s.out::<EligibilityView>();
    ops.extend([
        Op::new(
            "put",
            "/v1/apps/{id}/paid-usage",
            "setPaidUsage",
            "quotas",
            "Turns on paid usage past the free quota, with daily and monthly caps.",
        )
        .json_body(s.inp::<SetPaidUsage>())
        .answers(200, "The paid usage setting.", paid.clone()),
        Op::new("delete", "/v1/apps/{id}/paid-usage", "deletePaidUsage", "quotas", "Turns paid usage off.").answers(
            200,
            "No paid usage.",
            paid,
        ),
        Op::new(
            "get",
            "/v1/apps/{id}/eligibility",
            "eligibility",
            "apps",
            "Whether the app may apply for permissions, and what it lacks.",
        )
        .answers(200, "The eligibility.", eligibility.clone()),
        Op::new(
            "post",
            "/v1/apps/{id}/eligibility",
            "agreeEligibility",
            "apps",
            "Agrees to the terms that applying requires.",
        )
        .answers(200, "The eligibility.", eligibility),
        Op::new("put", "/v1/apps/{id}/business", "setBusiness", "apps", "Registers the app as a verified business.")
            .json_body(s.inp::<SetBusiness>())
            .answers(200, "The app.", app.clone()),
        Op::new(
            "delete",
            "/v1/apps/{id}/business",
            "removeBusiness",
            "apps",
            "Removes the business; business-only permissions are revoked.",
        )
        .json_body(s.inp::<RemoveBusiness>())
        .answers(
            200,
            "The revoked permissions and the app.",
            json!({
                "type": "object",
                "required": ["revoked", "app"],
                "properties": {"revoked": {"type": "array", "items": string()}, "app": app.clone()},
            }),
        ),
        Op::new("post", "/v1/apps/{id}/test-apps", "createTestApp", "apps", "Creates a test app of this app.").answers(
            201,
            "The test app.",
            app.clone(),
        ),
        Op::new(
            "post",
            "/v1/apps/{id}/reactivate",
            "reactivate",
            "apps",
            "Reactivates an app suspended for inactivity.",
        )
        .answers(200, "The app.", app.clone()),
        Op::new(
            "post",
            "/v1/apps/{id}/channels",
            "connectChannel",
            "apps",
            "Connects a Kakao Talk Channel to the app.",
        )
        .json_body(s.inp::<ConnectChannel>())
        .answers(200, "The app.", app.clone()),
        Op::new("delete", "/v1/apps/{id}/channels/{channel_id}", "disconnectChannel", "apps", "Disconnects a channel.")
            .answers(200, "The app.", app.clone()),
        Op::new("get", "/v1/channels", "listChannels", "apps", "The Kakao Talk Channels known.").answers(
            200,
            "The channels.",
            s.list::<TalkChannel>("channels"),
        ),
        Op::new("post", "/v1/channels", "upsertChannel", "apps", "Registers or updates a channel (staff).")
            .json_body(s.inp::<TalkChannel>())
            .answers(201, "The channel.", s.out::<TalkChannel>()),
        Op::new(
            "put",
            "/v1/apps/{id}/consent-items/{scope}",
            "setConsentItem",
            "consent",
            "Sets a consent item (required, optional, ...) and its purpose.",
        )
        .json_body(s.inp::<SetConsentItem>())
        .answers(200, "The consent item's setting.", s.out::<ConsentSetting>()),
        Op::new(
            "delete",
            "/v1/apps/{id}/consent-items/{scope}",
            "unsetConsentItem",
            "consent",
            "Unsets a consent item.",
        )
        .no_content("Unset."),
        Op::new(
            "post",
            "/v1/apps/{id}/permission-requests",
            "apply",
            "requests",
            "Applies for a permission: JSON, or multipart/form-data with the evidence in part `file`.",
        )
        .body(json!({
            "required": true,
            "content": {
                "application/json": {"schema": s.inp::<Apply>()},
                "multipart/form-data": {"schema": {
                    "type": "object",
                    "required": ["permission", "service_url", "reason"],
                    "properties": {
                        "permission": string(), "service_url": string(), "reason": string(),
                        "usage_scenario": string(), "requested_limit": string(), "requested_rule": string(),
                        "file": {"type": "string", "contentMediaType": "application/octet-stream"},
                    },
                }},
            },
        }))
        .answers(201, "The request, in review.", request.clone()),
        Op::new(
            "get",
            "/v1/apps/{id}/permission-requests",
            "listAppRequests",
            "requests",
            "The app's permission requests.",
        )
        .answers(200, "The requests, newest first; `next_before` when more follow.", s.out::<RequestPage>()),
        Op::new(
            "get",
            "/v1/permission-requests",
            "listRequests",
            "requests",
            "Permission requests the caller may see (the reviewer's queue).",
        )
        .query("state", "Only requests in this state (in_review, approved, rejected, on_hold, withdrawn).", string())
        .query("app_id", "Only this app's requests.", integer())
        .query("before", "Only requests older than this one: the `next_before` of the page before.", integer())
        .query("limit", "At most this many, 1 to 1000 (1000 when not given).", integer())
        .answers(200, "The requests, newest first; `next_before` when more follow.", s.out::<RequestPage>()),
        Op::new("get", "/v1/permission-requests/{id}", "getRequest", "requests", "One request, with its history.")
            .answers(200, "The request.", request.clone()),
        Op::new(
            "post",
            "/v1/permission-requests/{id}/actions",
            "actOnRequest",
            "requests",
            "Approves, rejects, holds, withdraws or resubmits a request.",
        )
        .json_body(s.inp::<ActOnRequest>())
        .answers(200, "The request.", request),
        Op::new("get", "/v1/permission-requests/{id}/evidence", "evidence", "requests", "The request's evidence file.")
            .answers_with(
                200,
                json!({"description": "The file, with its content type.", "content": {"*/*": {"schema": string()}}}),
            ),
        Op::new(
            "get",
            "/v1/notifications",
            "notifications",
            "audit",
            "The notification outbox with each message's delivery state (staff).",
        )
        .query("app_id", "Only this app's messages.", integer())
        .answers(200, "The messages.", s.list::<OutboxMessage>("notifications")),
        Op::new("get", "/v1/audit", "audit", "audit", "The audit trail (staff).")
            .query("app_id", "Only this app's events.", integer())
            .query("limit", "At most this many events (default 1000, at most 10000).", integer())
            .answers(200, "The events, newest first.", s.list::<AuditEvent>("events")),
    ]);
    ops
}

/// Path parameters, from the template: ids are integers, the rest strings.
fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let (schema, example) = match name {
                "id" | "key_id" | "account_id" => (integer(), json!(1)),
                "permission" => (string(), json!("talk_message")),
                "product" => (string(), json!("kakao_login")),
                "scope" => (string(), json!("profile_nickname")),
                _ => (string(), json!("example")),
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema, "example": example})
        })
        .collect()
}

/// The OpenAPI document.
pub fn document() -> Value {
    let mut schemas = Schemas::new();
    let ops = operations(&mut schemas);
    let mut paths = Map::new();
    for op in ops {
        let mut responses = Map::new();
        for (status, response) in op.responses {
            responses.insert(status.to_string(), response);
        }
        responses.insert("default".into(), json!({"$ref": "#/components/responses/Error"}));
        let mut operation = json!({
            "operationId": op.id,
            "tags": [op.tag],
            "summary": op.summary,
            "responses": responses,
        });
        let mut parameters = path_parameters(op.path);
        parameters.extend(op.query);
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = op.body {
            operation["requestBody"] = body;
        }
        operation["security"] = match op.auth {
            Auth::None => json!([]),
            Auth::Account => json!([{"accountToken": []}, {"consoleSession": []}]),
            Auth::AppKey => json!([{"appKey": []}, {"appKey": [], "decisionSecret": []}]),
            Auth::Gateway => json!([{}, {"decisionSecret": []}]),
        };
        let entry = paths.entry(op.path).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    let mut components = schemas.responses.take_definitions(true);
    components.insert(
        "Error".into(),
        json!({
            "type": "object",
            "description": "Every error: Kakao's `{msg, code}`, with the trace id that finds it in the logs.",
            "required": ["msg", "code"],
            "properties": {
                "msg": {"type": "string", "description": "What went wrong, for a person."},
                "code": {"type": "integer", "description": "Kakao's error code: -1 internal, -2 bad input, -5 permission denied, -10 quota, -401 credential, ..."},
                "trace_id": {"type": "string", "description": "Also in `X-Permgate-Trace-Id`."},
                "permission": {"type": "string"},
                "request_url": {"type": "string"},
                "required_scopes": {"type": "array", "items": {"type": "string"}},
            },
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "permgate",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The permission system of an API platform: decisions, the review workflow and the audit trail.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {
                "Error": {
                    "description": "An error.",
                    "headers": {"X-Permgate-Trace-Id": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
            "securitySchemes": {
                "accountToken": {"type": "http", "scheme": "bearer", "description": "An account token, as `permgate accounts create` or POST /v1/accounts printed it."},
                "consoleSession": {"type": "apiKey", "in": "cookie", "name": crate::console::COOKIE},
                "appKey": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "`KakaoAK <admin key>`, `Bearer <user token>`, or the KA header with a JavaScript key and Origin."},
                "decisionSecret": {"type": "apiKey", "in": "header", "name": "X-Permgate-Secret", "description": "Needed by `/v1/check` and `/v1/authz` only when the node sets PERMGATE_DECISION_SECRET (then 401, -401 without it)."},
            },
        },
    })
}

/// `GET /openapi.json`: the document is the same for the life of the process, so it is built and
/// serialized once.
pub async fn serve() -> impl axum::response::IntoResponse {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = TEXT.get_or_init(|| document().to_string());
    ([(axum::http::header::CONTENT_TYPE, "application/json")], text.as_str())
}
