// permgate's console: a developer portal and a reviewer desk over the public HTTP API.
// No build step, no framework: DOM built with h(), text always set as text (never as HTML),
// a hash router, and the API's own error messages shown where the action was taken.
"use strict";

// ---- small helpers ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $main = () => document.getElementById("main");
const fmtTime = (t) => (t ? new Date(t).toLocaleString() : "");
const badge = (text, kind) => h("span", { class: `badge ${kind || ""}` }, text);
const STATE_KIND = { submitted: "info", in_review: "info", on_hold: "warn", approved: "ok", rejected: "bad", withdrawn: "" };
const stateBadge = (s) => badge(s.replace("_", " "), STATE_KIND[s]);

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  setTimeout(() => { if (t.textContent === text) t.textContent = ""; }, 3500);
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.msg) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { "X-Permgate-Console": "1" } };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { msg: text }; }
  // Signed in, and the token is refused now (the session's cookie expired, or the account was
  // blocked): back to the sign-in page, saying why, rather than an error under some form.
  if (res.status === 401 && me && path !== "/v1/session") {
    me = null;
    signInPage("Your session has ended: sign in again.");
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

// A form whose submit calls `action(form data)`; the API's error appears inside the form.
function form(cls, fields, submitText, action, extra) {
  const err = h("div", { class: "error", role: "alert", hidden: true });
  const btn = h("button", { type: "submit", class: "primary" }, submitText);
  const f = h("form", { class: cls }, fields, err, h("div", { class: "row" }, btn, extra));
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    btn.disabled = true;
    const page = location.hash;
    try {
      await action(new FormData(f), f);
      // Done, and on its way to another page: a second click would do it twice (a second app).
      if (location.hash !== page) return;
    } catch (e) {
      err.textContent = e.code ? `${e.message} (code ${e.code})` : e.message;
      err.hidden = false;
    }
    btn.disabled = false;
  });
  return f;
}

const field = (label, input) => h("label", {}, label, input);
const input = (name, attrs) => h("input", { name, ...(attrs || {}) });
const select = (name, options, attrs) =>
  h("select", { name, ...(attrs || {}) }, options.map(([v, t]) => h("option", { value: v }, t)));

// Sets a width through the CSSOM (allowed by the console's Content-Security-Policy, unlike a style attribute).
function widthOf(el, percent) {
  el.style.width = `${percent}%`;
  return el;
}

// A button that runs `run` (after `confirmText`, if given) and shows the API's error beside it.
function actionButton(text, cls, confirmText, run) {
  const err = h("span", { class: "error inline-error", role: "alert", hidden: true });
  const btn = h("button", { type: "button", class: cls || "", onclick: async () => {
    if (confirmText && !confirm(confirmText)) return;
    err.hidden = true;
    btn.disabled = true;
    const page = location.hash;
    try {
      await run();
      if (location.hash !== page) return; // leaving the page: see `form`
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    }
    btn.disabled = false;
  } }, text);
  return h("span", { class: "action" }, btn, err);
}

// Shows a secret once, with a copy button, in a dialog.
function showSecret(title, value) {
  const dialog = h("dialog", { "aria-label": title });
  const close = () => { dialog.close(); dialog.remove(); };
  dialog.append(h("h2", {}, title), h("p", {}, "It is shown only now: copy it somewhere safe."),
    h("p", { class: "mono" }, value), h("div", { class: "row" }, copyButton(value), h("button", { type: "button", onclick: close }, "Done")));
  document.body.append(dialog);
  dialog.showModal();
}

function copyButton(text) {
  return h("button", { type: "button", onclick: async () => {
    try { await navigator.clipboard.writeText(text); toast("Copied"); } catch { toast("Copy failed: select the text instead"); }
  } }, "Copy");
}

// ---- state ----

let me = null;
let catalog = null;

async function loadCatalog() {
  if (!catalog) catalog = await api("GET", "/v1/catalog");
  return catalog;
}

// ---- routing ----

const routes = [
  [/^#\/?$/, () => (me.role === "developer" ? appsPage() : queuePage())],
  [/^#\/apps$/, () => appsPage()],
  [/^#\/apps\/(\d+)$/, (m) => appPage(m[1])],
  [/^#\/apps\/(\d+)\/apply\/([a-z0-9_]+)$/, (m) => applyPage(m[1], m[2])],
  [/^#\/requests$/, () => queuePage()],
  [/^#\/requests\/(\d+)$/, (m) => requestPage(m[1])],
  [/^#\/audit$/, () => auditPage()],
  [/^#\/shadow$/, () => shadowPage()],
];

// Which navigation is the latest: a slow page that finishes after a later one is dropped.
let navigation = 0;

async function route() {
  if (!me) return;
  const current = ++navigation;
  const hash = location.hash || "#/";
  for (const a of document.querySelectorAll("#nav a")) {
    a.toggleAttribute("aria-current", false);
    if (hash.startsWith(a.getAttribute("href")) && a.getAttribute("href") !== "#/") a.setAttribute("aria-current", "page");
  }
  const main = $main();
  for (const [re, page] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    try {
      const content = await page(m);
      if (current !== navigation || !me) return;
      main.replaceChildren(...[content].flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
    } catch (e) {
      if (current !== navigation || !me) return;
      main.replaceChildren(h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, e.message));
    }
    main.focus();
    return;
  }
  main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the start")));
}

// ---- sign-in ----

function signInPage(notice) {
  document.getElementById("nav").replaceChildren();
  document.getElementById("who").replaceChildren();
  $main().replaceChildren(
    h("div", { class: "signin" },
      h("h1", {}, "Sign in"),
      notice ? h("p", { class: "error", role: "alert" }, notice) : null,
      h("p", {}, "Paste your account token. The admin token was printed once when permgate first started; an admin creates the other accounts (POST /v1/accounts)."),
      form("stack", [field("Account token", input("token", { type: "password", autocomplete: "off", required: true }))], "Sign in",
        async (data) => {
          me = await api("POST", "/v1/session", { token: data.get("token") });
          // Setting the hash would route once more (its change event) on top of `start`.
          if (!location.hash) history.replaceState(null, "", "#/");
          start();
        }),
      h("h2", {}, "This node"),
      h("ul", {},
        h("li", {}, h("code", {}, "POST /v1/check"), ": the decision API for gateways"),
        h("li", {}, h("code", {}, "/v1/authz"), ": forward-auth for nginx, Traefik and Envoy"),
        h("li", {}, h("a", { href: "/healthz" }, "/healthz"), " and ", h("a", { href: "/readyz" }, "/readyz")))));
}

async function signOut() {
  try {
    await api("DELETE", "/v1/session");
  } catch (e) {
    alert(`Signing out failed: ${e.message}. The session is still open in this browser.`);
    return;
  }
  me = null;
  location.hash = "#/";
  signInPage();
}

function start() {
  const links = [["#/apps", "Apps"], ["#/requests", me.role === "developer" ? "My requests" : "Review queue"]];
  if (me.role !== "developer") links.push(["#/audit", "Audit trail"], ["#/shadow", "Shadow mode"]);
  document.getElementById("nav").replaceChildren(...links.map(([href, text]) => h("a", { href }, text)));
  document.getElementById("who").replaceChildren(
    h("span", {}, `${me.name} · ${me.role}`), h("button", { type: "button", onclick: signOut }, "Sign out"));
  route();
}

// ---- apps ----

async function appsPage() {
  const { apps } = await api("GET", "/v1/apps");
  const rows = apps.map((a) => h("tr", {},
    h("td", {}, h("a", { href: `#/apps/${a.id}` }, a.name)),
    h("td", { class: "mono" }, a.id),
    h("td", {}, badge(a.classification, a.classification === "biz" ? "info" : "")),
    h("td", {}, badge(a.status, a.status === "active" ? "ok" : "bad")),
    h("td", {}, a.company_name)));
  const create = me.role === "reviewer" ? null : [h("h2", {}, "New app"),
    form("inline", [
      field("Name", input("name", { required: true })),
      field("Company", input("company_name", { required: true })),
      field("Category", input("category", { required: true, placeholder: "e.g. shopping" })),
    ], "Create app", async (data) => {
      const app = await api("POST", "/v1/apps", Object.fromEntries(data));
      toast(`App ${app.id} created`);
      location.hash = `#/apps/${app.id}`;
    })];
  return [h("h1", {}, "Apps"),
    apps.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Name", "App ID", "Type", "Status", "Company"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No apps yet."),
    create];
}

function myRole(app) {
  const m = app.members.find((x) => x.account_id === me.id);
  return m ? m.role : null;
}

async function appPage(id) {
  const [app, cat, held, reqs, usage] = await Promise.all([
    api("GET", `/v1/apps/${id}`), loadCatalog(), api("GET", `/v1/apps/${id}/permissions`),
    api("GET", `/v1/apps/${id}/permission-requests`), api("GET", `/v1/apps/${id}/usage`).catch(() => null),
  ]);
  const role = myRole(app);
  const canEdit = role === "owner" || role === "editor";
  const isOwner = role === "owner";
  const reload = () => route();
  return [
    h("h1", {}, app.name, " ", badge(app.classification, "info"), " ", badge(app.status, app.status === "active" ? "ok" : "bad")),
    h("dl", { class: "kv" },
      h("dt", {}, "App ID"), h("dd", { class: "mono" }, app.id),
      h("dt", {}, "Company"), h("dd", {}, app.company_name),
      h("dt", {}, "Your role"), h("dd", {}, role || (me.role + " (not a member)")),
      app.original_app_id ? [h("dt", {}, "Test app of"), h("dd", {}, h("a", { href: `#/apps/${app.original_app_id}` }, `app ${app.original_app_id}`))] : null,
      app.business ? [h("dt", {}, "Business"), h("dd", {}, `${app.business.company_name} ${app.business.registration_number || "(individual developer)"}`)] : null),
    keysSection(app, isOwner, canEdit, reload),
    permissionsSection(app, cat, held.permissions, reqs.requests, canEdit),
    consentSection(app, cat, held.permissions, canEdit, reload),
    productsSection(app, canEdit, reload),
    membersSection(app, isOwner, reload),
    usage ? usageSection(usage) : null,
    explainSection(app),
    bizSection(app, isOwner, reload),
    me.role !== "developer" ? h("p", {}, h("a", { href: `#/audit?app_id=${app.id}` }, "Audit trail of this app")) : null,
  ];
}

function keysSection(app, isOwner, canEdit, reload) {
  const kinds = [["rest_api", "REST API"], ["javascript", "JavaScript"], ["native_app", "Native app"], ["admin", "Admin"]];
  const rows = [];
  for (const [kind, label] of kinds) {
    for (const k of app.keys[kind]) {
      const platforms = [k.platforms.origins, k.platforms.android_packages, k.platforms.ios_bundle_ids, k.platforms.api_categories]
        .filter(Boolean).flat().join(", ");
      rows.push(h("tr", {},
        h("td", {}, label),
        h("td", { class: "mono" }, k.key || `…${k.hint} (secret, shown once when made)`),
        h("td", {}, platforms || h("span", { class: "muted" }, "none")),
        h("td", {}, h("div", { class: "row" },
          k.key ? copyButton(k.key) : null,
          canEdit ? h("button", { type: "button", onclick: () => editPlatforms(app, k, kind, reload) }, "Platforms") : null,
          isOwner ? actionButton("Rotate", "", `Rotate this ${label} key? Calls with the old key fail at once.`, async () => {
            const r = await api("POST", `/v1/apps/${app.id}/keys/${k.id}/rotate`);
            await reload();
            if (r.kind === "admin" && r.key) showSecret("The new admin key", r.key);
          }) : null,
          isOwner ? actionButton("Delete", "danger", `Delete this ${label} key? Calls with it fail at once; permissions bound to it are lost.`, async () => {
            await api("DELETE", `/v1/apps/${app.id}/keys/${k.id}`);
            reload();
          }) : null))));
    }
  }
  return [h("h2", {}, "Keys"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Kind", "Key", "Platforms", ""].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)),
    isOwner ? form("inline", [field("New key", select("kind", kinds))], "Add key", async (data) => {
      const k = await api("POST", `/v1/apps/${app.id}/keys`, { kind: data.get("kind") });
      await reload();
      if (k.kind === "admin" && k.key) showSecret("The new admin key", k.key);
    }) : null];
}

// A key's platform data: the fields its kind uses, as comma-separated lists.
function editPlatforms(app, key, kind, reload) {
  const fields = {
    javascript: [["origins", "Allowed web origins"]],
    native_app: [["android_packages", "Android package names"], ["ios_bundle_ids", "iOS bundle IDs"]],
    admin: [["api_categories", "Allowed API categories (empty: all)"]],
    rest_api: [],
  }[kind];
  if (!fields.length) { toast("REST API keys carry no platform data."); return; }
  const dialog = h("dialog", { "aria-label": "Key platforms" });
  const f = form("stack", fields.map(([name, label]) =>
    field(label, input(name, { value: (key.platforms[name] || []).join(", "), placeholder: "comma-separated" }))),
  "Save", async (data) => {
    const body = {};
    for (const [name] of fields) {
      const list = String(data.get(name) || "").split(",").map((x) => x.trim()).filter(Boolean);
      if (name !== "api_categories" || list.length) body[name] = list;
    }
    await api("PUT", `/v1/apps/${app.id}/keys/${key.id}/platforms`, body);
    dialog.close();
    dialog.remove();
    reload();
  }, h("button", { type: "button", onclick: () => { dialog.close(); dialog.remove(); } }, "Cancel"));
  dialog.append(h("h2", {}, "Platforms of this key"), f);
  document.body.append(dialog);
  dialog.showModal();
}

function permissionsSection(app, cat, held, requests, canEdit) {
  const heldRows = held.map((p) => h("tr", {},
    h("td", { class: "mono" }, p.permission), h("td", {}, badge(p.source, "ok")),
    h("td", {}, fmtTime(p.granted_at)), h("td", {}, p.expires_at ? fmtTime(p.expires_at) : h("span", { class: "muted" }, "never")),
    h("td", { class: "mono" }, Object.keys(p.params || {}).length ? JSON.stringify(p.params) : "")));
  const opened = requests.filter((r) => ["submitted", "in_review", "on_hold"].includes(r.state));
  const open = new Map(opened.map((r) => [r.permission, r]));
  const features = cat.permissions.filter((p) => p.obtained_by === "additional_feature" || p.obtained_by === "general_request");
  const cards = features.map((p) => {
    const grants = held.filter((g) => g.permission === p.id);
    // Held once per quota rule (increased_quota): each rule's grant and request, and room for another rule.
    if (p.grants_quota && p.raises_quota_rules.length !== 1) {
      const action = [
        ...grants.map((g) => [badge(`${g.params?.rule ?? "?"}: ${g.params?.limit ?? "?"}`, "ok"), " "]),
        ...opened.filter((r) => r.permission === p.id).map((r) => [h("a", { href: `#/requests/${r.id}` }, stateBadge(r.state), ` #${r.id} (${r.requested_rule})`), " "]),
        canEdit && !app.original_app_id && !p.retired ? h("a", { class: "button", href: `#/apps/${app.id}/apply/${p.id}` }, grants.length ? "Apply for another rule" : "Apply") : null,
      ];
      return h("div", { class: "card" },
        h("h3", {}, p.name, " ", h("span", { class: "muted mono" }, p.id)),
        h("p", {}, p.description),
        h("p", { class: "muted" }, "Held once per quota rule: one request and one grant for each rule raised."),
        action);
    }
    const holds = grants.length > 0;
    // Renewable from 30 days before the last grant ends (none of them permanent).
    const ends = grants.map((g) => (g.expires_at ? Date.parse(g.expires_at) : Infinity));
    const end = Math.max(...ends);
    const renewable = holds && end !== Infinity && end - Date.now() <= 30 * 86400 * 1000;
    const req = open.get(p.id);
    let action;
    if (req) action = h("a", { href: `#/requests/${req.id}` }, stateBadge(req.state), ` request #${req.id}`);
    else if (renewable && canEdit) action = [badge(`held until ${fmtTime(new Date(end).toISOString())}`, "warn"), " ", h("a", { class: "button", href: `#/apps/${app.id}/apply/${p.id}` }, "Renew")];
    else if (holds) action = badge("held", "ok");
    else if (p.retired) action = badge("retired: no new requests", "");
    else if (canEdit && !app.original_app_id) action = h("a", { class: "button", href: `#/apps/${app.id}/apply/${p.id}` }, "Apply");
    return h("div", { class: "card" },
      h("h3", {}, p.name, " ", h("span", { class: "muted mono" }, p.id)),
      h("p", {}, p.description),
      p.approval_criteria.length ? [h("strong", {}, "Approval criteria"), h("ul", {}, p.approval_criteria.map((c) => h("li", {}, c)))] : null,
      p.cautions.length ? [h("strong", {}, "Cautions"), h("ul", {}, p.cautions.map((c) => h("li", {}, c)))] : null,
      p.default_duration_days ? h("p", { class: "muted" }, `Granted for ${p.default_duration_days} days; renewable from 30 days before the end.`) : null,
      p.auto_approve ? h("p", { class: "muted" }, "Approved at once when the app meets the catalog's rule; otherwise a reviewer decides.") : null,
      action);
  });
  const reqRows = requests.map((r) => h("tr", {},
    h("td", {}, h("a", { href: `#/requests/${r.id}` }, `#${r.id}`)), h("td", { class: "mono" }, r.permission),
    h("td", {}, stateBadge(r.state)), h("td", {}, fmtTime(r.updated_at))));
  return [h("h2", {}, "Permissions held"),
    held.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Permission", "Source", "Granted", "Expires", "Parameters"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, heldRows))
      : h("p", { class: "muted" }, "None."),
    h("h2", {}, "Requests"),
    requests.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Request", "Permission", "State", "Updated"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, reqRows))
      : h("p", { class: "muted" }, "No requests yet."),
    h("h2", {}, "Additional features and general requests"),
    h("div", { class: "grid" }, cards)];
}

function consentSection(app, cat, held, canEdit, reload) {
  const set = new Map(app.consent_items.map((c) => [c.scope, c]));
  const holds = new Set(held.map((p) => p.permission));
  const rows = cat.consent_items.map((c) => {
    const s = set.get(c.id);
    const lacking = [
      c.requires_biz && !holds.has("biz_app") ? "Biz app" : null,
      c.requires_permission && !c.settable_before_permission && !holds.has(c.requires_permission) ? c.requires_permission : null,
    ].filter(Boolean);
    const needs = [c.requires_biz ? "Biz app" : null, c.requires_permission ? `permission ${c.requires_permission}` : null].filter(Boolean).join(" + ");
    let controls = null;
    if (canEdit && s) {
      const dependents = cat.permissions.filter((p) => p.prerequisites.consent_items.includes(c.id) && holds.has(p.id)).map((p) => p.id);
      const warning = dependents.length ? `Unset ${c.id}? These permissions of the app need it and are revoked with it: ${dependents.join(", ")}.` : null;
      controls = actionButton("Unset", "", warning, async () => {
        await api("DELETE", `/v1/apps/${app.id}/consent-items/${c.id}`);
        reload();
      });
    } else if (lacking.length) {
      controls = h("span", { class: "muted" }, `needs ${lacking.join(" and ")}`);
    } else if (canEdit) {
      controls = form("inline", [
        select("consent_type", [["optional", "optional"], ["required", "required"], ["on_use", "on use"]], { "aria-label": `Consent type for ${c.id}` }),
        input("purpose", { placeholder: "purpose", required: true, "aria-label": `Purpose of ${c.id}` }),
      ], "Set", async (data) => {
        await api("PUT", `/v1/apps/${app.id}/consent-items/${c.id}`, { consent_type: data.get("consent_type"), purpose: data.get("purpose") });
        reload();
      });
    }
    return h("tr", {},
      h("td", {}, c.name, h("div", { class: "muted mono" }, c.id)),
      h("td", {}, s ? badge(`set: ${s.consent_type}`, "ok") : lacking.length ? badge("no permission", "bad") : badge("not set", "")),
      h("td", {}, needs || h("span", { class: "muted" }, "nothing"), c.settable_before_permission ? h("div", { class: "muted" }, "settable before the permission") : null),
      h("td", {}, controls));
  });
  return [h("h2", {}, "Consent items"),
    h("p", { class: "muted" }, "An API whose consent item is not set answers -3. Setting an item that needs a permission or Biz status the app lacks is refused with the reason (no permission)."),
    h("table", {}, h("thead", {}, h("tr", {}, ["Item", "State", "Needs", ""].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows))];
}

function productsSection(app, canEdit, reload) {
  return [h("h2", {}, "Products"),
    h("table", {}, h("tbody", {}, app.products.map((p) => h("tr", {},
      h("td", { class: "mono" }, p.product),
      h("td", {}, badge(p.activated ? "on" : "off", p.activated ? "ok" : "")),
      h("td", {}, canEdit ? actionButton(p.activated ? "Switch off" : "Switch on", "", null, async () => {
        await api("PUT", `/v1/apps/${app.id}/products/${p.product}`, { activated: !p.activated });
        reload();
      }) : null)))))];
}

function membersSection(app, isOwner, reload) {
  return [h("h2", {}, "Members"),
    h("table", {}, h("tbody", {}, app.members.map((m) => h("tr", {}, h("td", {}, `account ${m.account_id}`), h("td", {}, m.role),
      h("td", {}, isOwner && m.role !== "owner" ? actionButton("Remove", "danger", `Remove account ${m.account_id} from the app?`, async () => {
        await api("DELETE", `/v1/apps/${app.id}/members/${m.account_id}`);
        reload();
      }) : null))))),
    isOwner ? form("inline", [
      field("Account ID", input("account_id", { type: "number", required: true, min: 1 })),
      field("Role", select("role", [["editor", "editor"], ["reader", "reader"]])),
    ], "Add member", async (data) => {
      await api("POST", `/v1/apps/${app.id}/members`, { account_id: Number(data.get("account_id")), role: data.get("role") });
      reload();
    }) : null];
}

// The 30-day chart, with a choice of series: every admitted call, or one quota rule.
function dailySection(usage) {
  const holder = h("div", {});
  const pick = (name) => holder.replaceChildren(...dailyChart(name ? usage.daily_by_rule[name] : usage.daily, name));
  const rules = Object.keys(usage.daily_by_rule || {});
  const chooser = rules.length ? field("Show", select("series", [["", "every admitted call"], ...rules.map((r) => [r, `rule ${r}`])],
    { onchange: (e) => pick(e.target.value) })) : null;
  pick("");
  return [h("h3", {}, "Calls per day, last 30 days"), chooser, holder];
}

// Calls per day over the last 30 days, as bars (CSSOM heights: allowed by the CSP).
function dailyChart(daily, rule) {
  const busiest = Math.max(0, ...daily.map((d) => d.calls));
  const max = Math.max(1, busiest);
  const total = daily.reduce((n, d) => n + d.calls, 0);
  const bars = daily.map((d) => {
    const day = new Date(d.day_start).toLocaleDateString();
    const bar = h("span", { class: "day", title: `${day}: ${d.calls} calls` });
    bar.style.height = `${Math.max(d.calls ? 2 : 0, Math.round((100 * d.calls) / max))}%`;
    return bar;
  });
  const what = rule ? `Calls counted against ${rule}` : "Calls";
  return [
    h("div", { class: "chart", role: "img", "aria-label": `${what} per day over the last 30 days: ${total} in all, at most ${busiest} in a day` }, bars),
    h("p", { class: "muted" }, total ? `${total} calls in 30 days; busiest day ${busiest}.` : "No calls in the last 30 days.")];
}

const RESULT_KIND = { pass: "ok", fail: "bad", restricted: "warn", shadow: "warn", info: "" };

// "Why is this call denied?": every check of one API call for this app, with what to do.
function explainSection(app) {
  const out = h("div", { "aria-live": "polite" });
  return [h("h2", {}, "Why is a call denied?"),
    h("p", { class: "muted" }, "Every check a call of this app goes through, which pass, which fail, and what to do about each."),
    form("inline explain", [
      field("Method", select("method", ["GET", "POST", "PUT", "DELETE"].map((m) => [m, m]))),
      field("Path", input("path", { required: true, placeholder: "/v2/user/me", size: 40 })),
    ], "Explain", async (data) => {
      const q = new URLSearchParams({ method: data.get("method"), path: data.get("path") });
      const e = await api("GET", `/v1/apps/${app.id}/explain?${q}`);
      const v = e.verdict;
      out.replaceChildren(
        h("p", {}, e.api ? ["API ", h("span", { class: "mono" }, e.api), ": "] : null,
          v ? badge(v.allow ? "allowed" : `denied ${v.code}`, v.allow ? "ok" : "bad") : badge("no such API", "bad"),
          v && v.msg ? ` ${v.msg}` : "", v ? h("span", { class: "muted" }, ` (for a ${v.credential.replace("_", " ")} credential)`) : null),
        h("table", {}, h("thead", {}, h("tr", {}, ["Check", "Result", "Detail", "What to do"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, e.checks.map((c) => h("tr", {},
            h("td", {}, c.check.replace("_", " ")), h("td", {}, badge(c.result, RESULT_KIND[c.result])),
            h("td", {}, c.detail), h("td", { class: "mono" }, c.fix || ""))))));
    }),
    out];
}

function usageSection(usage) {
  const rules = usage.rules || [];
  return [h("h2", {}, "Quota usage"),
    usage.daily ? dailySection(usage) : null,
    h("h3", {}, "Today and this month, per rule"),
    rules.length === 0 ? h("p", { class: "muted" }, "No call of this app has been counted against a quota rule today or this month.") :
    h("table", {}, h("thead", {}, h("tr", {}, ["Rule", "Period", "Used", "Limit", "", "Resets"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rules.map((r) => {
        const pct = r.limit ? Math.min(100, Math.round((100 * r.used) / r.limit)) : 0;
        return h("tr", {},
          h("td", { class: "mono" }, r.rule), h("td", {}, r.period), h("td", {}, r.used), h("td", {}, r.limit),
          h("td", {}, h("div", { class: `bar ${pct >= 80 ? "hot" : ""}`, role: "img", "aria-label": `${pct}% used` }, widthOf(h("span"), pct))),
          h("td", {}, fmtTime(r.reset_at)));
      })))];
}

function bizSection(app, isOwner, reload) {
  if (!isOwner || app.original_app_id) return null;
  return [h("h2", {}, "Biz app and test apps"),
    app.business ? h("p", {}, "This app is a Biz app.") : form("inline", [
      field("Business registration number", input("business_registration_number", { placeholder: "123-45-67890", required: true })),
      field("Company name", input("company_name", { required: true })),
    ], "Register business", async (data) => {
      await api("PUT", `/v1/apps/${app.id}/business`, Object.fromEntries(data));
      reload();
    }),
    actionButton("Create a test app", "", null, async () => {
      const t = await api("POST", `/v1/apps/${app.id}/test-apps`);
      location.hash = `#/apps/${t.id}`;
    })];
}

// ---- applying ----

async function applyPage(appId, permissionId) {
  const [app, cat, elig] = await Promise.all([api("GET", `/v1/apps/${appId}`), loadCatalog(), api("GET", `/v1/apps/${appId}/eligibility`)]);
  const p = cat.permissions.find((x) => x.id === permissionId);
  if (!p) throw new Error(`the catalog has no permission ${permissionId}`);
  const agree = elig.agreed ? null : [h("h2", {}, "Eligibility"), h("p", {}, elig.terms),
    form("inline", [], "I agree", async () => { await api("POST", `/v1/apps/${appId}/eligibility`); route(); })];
  const fields = [
    field("Service URL (web page or app download page)", input("service_url", { type: "url", required: true, placeholder: "https://" })),
    field("Reason", h("textarea", { name: "reason", required: true })),
    field("Usage scenario (from login to the feature)", h("textarea", { name: "usage_scenario" })),
    p.grants_quota ? field("Limit you need", input("requested_limit", { type: "number", min: 1, required: true })) : null,
    p.grants_quota && p.raises_quota_rules.length !== 1 ? field("Quota rule", select("requested_rule", cat.quota_rules.map((r) => [r.id, r.id]))) : null,
    field(`Screenshot of the feature (JPG, PNG or PDF, at most 20 MB${p.obtained_by === "additional_feature" ? "" : ", optional"})`,
      input("file", { type: "file", accept: "image/jpeg,image/png,application/pdf", required: p.obtained_by === "additional_feature" })),
    h("p", { class: "muted" }, "Mask all personal data in screenshots; otherwise the application is rejected so that the data can be destroyed."),
  ];
  return [h("h1", {}, `Apply for ${p.name}`), h("p", {}, h("a", { href: `#/apps/${appId}` }, `← ${app.name}`)),
    h("p", {}, p.description), agree,
    elig.agreed ? form("stack", fields, "Submit application", async (data) => {
      data.set("permission", p.id);
      for (const k of ["usage_scenario", "requested_limit", "requested_rule"]) if (data.has(k) && !data.get(k)) data.delete(k);
      const file = data.get("file");
      if (file && !file.size) data.delete("file");
      const r = await api("POST", `/v1/apps/${appId}/permission-requests`, data);
      toast(`Request #${r.id} submitted`);
      location.hash = `#/requests/${r.id}`;
    }) : null];
}

// ---- requests ----

async function queuePage() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const state = params.get("state") || (me.role === "developer" ? "" : "submitted");
  const { requests } = await api("GET", `/v1/permission-requests${state ? `?${new URLSearchParams({ state })}` : ""}`);
  const permission = params.get("permission") || "";
  const minAge = Number(params.get("min_age") || 0);
  const now = Date.now();
  const days = (t) => Math.floor((now - new Date(t)) / 86400000);
  const shown = requests.filter((r) => (!permission || r.permission === permission) && days(r.created_at) >= minAge);
  const age = (t) => (days(t) ? `${days(t)} d` : "today");
  const filter = h("form", { class: "inline", onsubmit: (e) => {
    e.preventDefault();
    const d = new FormData(e.target);
    const q = new URLSearchParams({ state: d.get("state"), permission: d.get("permission"), min_age: d.get("min_age") });
    location.hash = `#/requests?${q}`;
  } },
    field("State", select("state", [["", "any"], ["submitted", "submitted"], ["in_review", "in review"], ["on_hold", "on hold"], ["approved", "approved"], ["rejected", "rejected"], ["withdrawn", "withdrawn"]])),
    field("Permission", input("permission", { value: permission, placeholder: "any" })),
    field("Waiting at least (days)", input("min_age", { type: "number", min: 0, value: minAge })),
    h("button", { type: "submit" }, "Filter"));
  filter.elements.state.value = state;
  const rows = shown.map((r) => h("tr", {},
    h("td", {}, h("a", { href: `#/requests/${r.id}` }, `#${r.id}`)),
    h("td", {}, h("a", { href: `#/apps/${r.app_id}` }, `app ${r.app_id}`)),
    h("td", { class: "mono" }, r.permission), h("td", {}, stateBadge(r.state)),
    h("td", {}, age(r.created_at)), h("td", {}, fmtTime(r.updated_at))));
  return [h("h1", {}, me.role === "developer" ? "My apps' requests" : "Review queue"), filter,
    shown.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Request", "App", "Permission", "State", "Age", "Updated"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, "Nothing here.")];
}

async function requestPage(id) {
  const [r, cat] = await Promise.all([api("GET", `/v1/permission-requests/${id}`), loadCatalog()]);
  const [app, held, usage] = await Promise.all([
    api("GET", `/v1/apps/${r.app_id}`), api("GET", `/v1/apps/${r.app_id}/permissions`),
    api("GET", `/v1/apps/${r.app_id}/usage`).catch(() => null),
  ]);
  const role = myRole(app);
  const reviewer = me.role !== "developer" && !role;
  const applicant = role === "owner" || role === "editor";
  const act = async (body) => { await api("POST", `/v1/permission-requests/${id}/actions`, body); toast(`Request #${id}: ${body.action.replace("_", " ")}`); route(); };
  const reasons = (kind) => cat.review_reasons.filter((x) => x.applies_to.includes(kind)).map((x) => [x.id, x.text]);
  const actions = [];
  if (reviewer && r.state === "submitted") actions.push(form("inline", [], "Start review", () => act({ action: "start_review" })));
  if (reviewer && r.state === "in_review") {
    actions.push(h("h3", {}, "Approve"), form("inline", [
      field("Expires (optional)", input("expires_at", { type: "datetime-local" })),
      r.requested_limit ? field("Granted limit", input("granted_limit", { type: "number", min: 1, value: r.requested_limit })) : null,
      field("Comment", input("comment")),
    ], "Approve", (d) => act({ action: "approve", comment: d.get("comment") || undefined,
      expires_at: d.get("expires_at") ? new Date(d.get("expires_at")).toISOString().replace(/\.\d{3}Z$/, "Z") : undefined,
      granted_limit: d.get("granted_limit") ? Number(d.get("granted_limit")) : undefined })));
    for (const kind of ["hold", "reject"]) {
      actions.push(h("h3", {}, kind === "hold" ? "Put on hold" : "Reject"), form("inline", [
        field("Reason", select("reason_code", reasons(kind))),
        field("Note to the applicant", input("comment", { required: true, size: 40 })),
      ], kind === "hold" ? "Hold" : "Reject", (d) => act({ action: kind, reason_code: d.get("reason_code"), comment: d.get("comment") })));
    }
  }
  // A quota request's grant is the one raising its rule (increased_quota is held once per rule).
  const ofThisRequest = (p) => p.permission === r.permission && (!r.requested_rule || !p.params?.rule || p.params.rule === r.requested_rule);
  if (reviewer && r.state === "approved" && held.permissions.some(ofThisRequest)) {
    actions.push(h("h3", {}, "Revoke the grant"), form("inline", [field("Reason", input("reason", { required: true }))], "Revoke", async (d) => {
      await api("DELETE", `/v1/apps/${r.app_id}/permissions/${r.permission}`, { reason: d.get("reason"), rule: r.requested_rule || undefined });
      toast("Revoked"); route();
    }));
  }
  if (applicant && r.state === "on_hold") {
    actions.push(h("h3", {}, "Supplement"), form("inline", [field("What you changed", input("comment", { required: true, size: 50 }))], "Supplement",
      (d) => act({ action: "supplement", comment: d.get("comment") })));
  }
  if (applicant && ["submitted", "in_review", "on_hold"].includes(r.state)) {
    const withdraw = form("inline", [], "Withdraw", () => (confirm("Withdraw this request?") ? act({ action: "withdraw" }) : null));
    withdraw.querySelector("button[type=submit]").className = "danger";
    actions.push(withdraw);
  }
  const ev = r.evidence;
  const evidenceUrl = `/v1/permission-requests/${id}/evidence`;
  return [
    h("h1", {}, `Request #${r.id}: ${r.permission} `, stateBadge(r.state)),
    h("dl", { class: "kv" },
      h("dt", {}, "App"), h("dd", {}, h("a", { href: `#/apps/${app.id}` }, `${app.name} (${app.id})`), " ", badge(app.classification, "info"), " ", badge(app.status, "")),
      h("dt", {}, "Service URL"), h("dd", {}, h("a", { href: r.service_url, rel: "noopener noreferrer", target: "_blank" }, r.service_url)),
      h("dt", {}, "Reason"), h("dd", {}, r.reason),
      r.usage_scenario ? [h("dt", {}, "Usage scenario"), h("dd", {}, r.usage_scenario)] : null,
      r.requested_limit ? [h("dt", {}, "Limit asked"), h("dd", {}, `${r.requested_limit}${r.requested_rule ? ` (${r.requested_rule})` : ""}`)] : null,
      h("dt", {}, "App members"), h("dd", {}, app.members.map((m) => `${m.account_id} (${m.role})`).join(", ")),
      h("dt", {}, "Held now"), h("dd", {}, held.permissions.map((p) => p.permission).join(", ") || "nothing")),
    actions.length ? [h("h2", {}, "Actions"), actions] : null,
    h("h2", {}, "Evidence"),
    ev ? h("div", { class: "evidence" },
      h("p", {}, h("a", { href: evidenceUrl }, ev.file_name), ` · ${ev.content_type} · ${ev.size} bytes`),
      ev.content_type === "application/pdf" ? h("object", { data: evidenceUrl, type: "application/pdf", "aria-label": "Evidence PDF" }, "The PDF cannot be shown here; download it above.")
        : h("img", { src: evidenceUrl, alt: `Evidence: ${ev.file_name}` }))
      : h("p", { class: "muted" }, "No file."),
    usage ? usageSection({ rules: usage.rules.filter((u) => u.used > 0) }) : null,
    reviewer ? h("p", {}, h("a", { href: `#/audit?app_id=${app.id}` }, "Audit trail of this app")) : null,
    h("h2", {}, "History"),
    h("ol", { class: "timeline" }, r.history.map((e) => h("li", {},
      h("strong", {}, e.action.replace("_", " ")), " ", e.from ? `${e.from} → ` : "", stateBadge(e.to),
      h("div", { class: "muted" }, `${fmtTime(e.at)} · account ${e.actor ?? "permgate"}`),
      e.reason ? h("div", {}, `Reason: ${e.reason}`) : null,
      e.comment ? h("div", {}, `Note: ${e.comment}`) : null))),
  ];
}

// ---- shadow mode ----

async function shadowPage() {
  const report = await api("GET", "/v1/shadow-report");
  return [h("h1", {}, "Shadow mode"),
    h("p", { class: "muted" }, "Permissions, APIs and quota rules in shadow mode (shadow = true in the catalog) do not deny: ",
      "the calls they would deny are allowed and counted here, from the recent decision log. Enforce one by removing its shadow flag and reloading the catalog."),
    report.subjects.length === 0 ? h("p", {}, "No call in the decision log was allowed by shadow mode.") : [
      h("h2", {}, "What enforcing each would deny"),
      h("table", {}, h("thead", {}, h("tr", {}, ["In shadow mode", "Would deny", "Calls", "Apps"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, report.subjects.map((s) => h("tr", {},
          h("td", { class: "mono" }, s.shadow), h("td", {}, s.codes.join(", ")), h("td", {}, s.calls),
          h("td", {}, s.apps.map((a, i) => [i ? ", " : "", h("a", { href: `#/apps/${a}` }, a)])))))),
      h("h2", {}, "Calls"),
      h("table", {}, h("thead", {}, h("tr", {}, ["App", "Call", "Would deny", "Because of", "Calls", "Last seen"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, report.calls.map((c) => h("tr", {},
          h("td", {}, h("a", { href: `#/apps/${c.app_id}` }, c.app_id)), h("td", { class: "mono" }, `${c.method} ${c.path}`),
          h("td", {}, badge(String(c.would_code), "warn")), h("td", { class: "mono" }, c.shadow), h("td", {}, c.calls),
          h("td", {}, fmtTime(c.last_at * 1000))))))]];
}

// ---- audit ----

async function auditPage() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const app = params.get("app_id");
  const { events } = await api("GET", `/v1/audit${app ? `?${new URLSearchParams({ app_id: app })}` : ""}`);
  return [h("h1", {}, "Audit trail", app ? ` of app ${app}` : ""),
    h("table", {}, h("thead", {}, h("tr", {}, ["#", "When", "Actor", "Action", "Target"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, events.slice().reverse().map((e) => h("tr", {},
        h("td", { class: "mono" }, e.seq), h("td", {}, fmtTime(e.at)), h("td", {}, e.actor ?? "permgate"),
        h("td", { class: "mono" }, e.action), h("td", { class: "mono" }, e.target)))))];
}

// ---- boot ----

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", async () => {
  try {
    const session = await api("GET", "/v1/session");
    if (session.signed_in) {
      me = session;
      start();
      return;
    }
  } catch (e) {
    // Too many refused sign-ins from this address: say for how long, on the sign-in page.
    if (e.status === 429) {
      signInPage(e.message);
      return;
    }
  }
  signInPage();
});
