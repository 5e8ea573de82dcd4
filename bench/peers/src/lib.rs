//! permgate and three engines a platform team might pick instead (AWS Cedar, Rego through
//! regorus, casbin), loaded with the same model and asked the same questions.
//!
//! The model: the built-in Kakao catalog's APIs that take a REST API key, each needing a set of
//! permissions; apps holding permissions. A call is fully allowed when the app holds every
//! permission its API needs. permgate answers from the key and path strings (credential, route,
//! app state, permissions, products, consent items); the peers are handed the app and API ids
//! already resolved, so they do strictly less work than permgate does. Every query's answer is
//! checked against permgate's before anything is timed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use permgate_core::catalog::{ApiStatus, Catalog};
use permgate_core::credential::TokenVerifier;
use permgate_core::decision::{Query, decide};
use permgate_core::model::*;
use permgate_core::snapshot::Snapshot;
use permgate_core::time::Timestamp;

pub const NOW: Timestamp = Timestamp(1_795_824_000);
/// Permissions each app holds.
pub const GRANTS: usize = 10;

/// One API of the model: its id, a concrete path that routes to it, and what it needs.
#[derive(Debug, Clone)]
pub struct ApiCase {
    pub id: String,
    pub method: String,
    pub path: String,
    pub required: BTreeSet<String>,
}

/// One question: may app `app` (calling with `authorization`) call `api`?
#[derive(Debug, Clone)]
pub struct Case {
    pub app: usize,
    pub api: usize,
    pub authorization: String,
}

/// The shared model.
pub struct Model {
    pub catalog: Arc<Catalog>,
    pub apis: Vec<ApiCase>,
    /// Each app's permissions, by app index.
    pub grants: Vec<BTreeSet<String>>,
    pub records: Vec<AppRecord>,
}

/// A small deterministic generator (xorshift), so every run asks the same questions.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

pub fn key_of(app: usize) -> String {
    format!("{:032x}", app + 1)
}

impl Model {
    /// `apps` apps, each holding [`GRANTS`] of the catalog's permissions, with every product on
    /// and every consent item set.
    pub fn new(apps: usize) -> Model {
        let catalog = Arc::new(Catalog::builtin().unwrap_or_else(|e| unreachable!("{e}")));
        let apis: Vec<ApiCase> = catalog
            .apis
            .iter()
            .filter(|a| a.status == ApiStatus::Active && a.key_kinds.contains(&KeyKind::RestApi))
            .map(|a| ApiCase {
                id: a.id.clone(),
                method: a.method.clone(),
                path: concrete(&a.path),
                required: a.permissions.iter().cloned().collect(),
            })
            .collect();
        // Drawn from every permission of the catalog, as grants are.
        let needed: Vec<String> = catalog.permissions.iter().map(|p| p.id.clone()).collect();
        let mut rng = Rng::new(0x5eed);
        let grants: Vec<BTreeSet<String>> = (0..apps)
            .map(|_| {
                let mut held = BTreeSet::new();
                while held.len() < GRANTS.min(needed.len()) {
                    held.insert(needed[rng.below(needed.len())].clone());
                }
                held
            })
            .collect();
        let products: Vec<(String, bool)> = catalog.products.iter().map(|p| (p.id.clone(), true)).collect();
        let consent: Vec<ConsentSetting> =
            catalog.consent_items.iter().map(|c| ConsentSetting::optional(&c.id, "bench", NOW)).collect();
        let records = grants.iter().enumerate().map(|(i, held)| record(i, held, &products, &consent)).collect();
        Model { catalog, apis, grants, records }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot::build(self.catalog.clone(), Arc::new(TokenVerifier::new(None)), self.records.clone())
    }

    /// `n` questions over random apps: half to APIs that need no permission, half to APIs that
    /// need some (allowed or denied as the app's grants fall).
    pub fn cases(&self, n: usize, seed: u64) -> Vec<Case> {
        let mut rng = Rng::new(seed);
        let (open, guarded): (Vec<usize>, Vec<usize>) =
            (0..self.apis.len()).partition(|&i| self.apis[i].required.is_empty());
        (0..n)
            .map(|k| {
                let app = rng.below(self.grants.len());
                let pool = if k % 2 == 0 && !open.is_empty() { &open } else { &guarded };
                let api = pool[rng.below(pool.len())];
                Case { app, api, authorization: format!("KakaoAK {}", key_of(app)) }
            })
            .collect()
    }

    /// The ground truth: the app holds everything the API needs.
    pub fn truth(&self, case: &Case) -> bool {
        self.apis[case.api].required.is_subset(&self.grants[case.app])
    }
}

/// A path that the pattern matches (`{id}` becomes `1`).
fn concrete(pattern: &str) -> String {
    pattern.split('/').map(|s| if s.starts_with('{') { "1" } else { s }).collect::<Vec<_>>().join("/")
}

fn record(i: usize, held: &BTreeSet<String>, products: &[(String, bool)], consent: &[ConsentSetting]) -> AppRecord {
    let id = AppId(i as i64 + 1);
    let mut record = AppRecord::active(id, NOW);
    record.keys.push(Key::issued(KeyId(id.0), KeyKind::RestApi, &key_of(i), Platforms::default(), NOW));
    record.grants = held.iter().map(|p| Grant::operator(id, p, serde_json::Value::Null, NOW)).collect();
    record.products = products.to_vec();
    record.consent_items = consent.to_vec();
    record
}

/// permgate's answer, from the key and path strings: allowed without restriction.
pub fn permgate(snapshot: &Snapshot, model: &Model, case: &Case) -> bool {
    let api = &model.apis[case.api];
    let q =
        Query { method: &api.method, path: &api.path, authorization: Some(&case.authorization), ..Query::default() };
    let d = decide(snapshot, &q, NOW);
    d.allow && d.restriction.is_none()
}

/// AWS Cedar: apps and APIs as entities with `grants` and `required` sets, one policy.
pub struct Cedar {
    policies: cedar_policy::PolicySet,
    entities: cedar_policy::Entities,
    authorizer: cedar_policy::Authorizer,
    action: cedar_policy::EntityUid,
    apps: Vec<cedar_policy::EntityUid>,
    apis: Vec<cedar_policy::EntityUid>,
}

pub const CEDAR_POLICY: &str = r#"permit(principal, action == Action::"call", resource)
when { principal.grants.containsAll(resource.required) };"#;

fn uid(kind: &str, id: &str) -> cedar_policy::EntityUid {
    format!("{kind}::\"{id}\"").parse().unwrap_or_else(|e| unreachable!("{kind} {id}: {e}"))
}

impl Cedar {
    pub fn new(model: &Model) -> Cedar {
        let mut json = Vec::new();
        for (i, held) in model.grants.iter().enumerate() {
            json.push(serde_json::json!({
                "uid": {"type": "App", "id": i.to_string()}, "attrs": {"grants": held}, "parents": []
            }));
        }
        for api in &model.apis {
            json.push(serde_json::json!({
                "uid": {"type": "Api", "id": api.id}, "attrs": {"required": api.required}, "parents": []
            }));
        }
        let entities = cedar_policy::Entities::from_json_value(serde_json::Value::Array(json), None)
            .unwrap_or_else(|e| unreachable!("cedar entities: {e}"));
        Cedar {
            policies: CEDAR_POLICY.parse().unwrap_or_else(|e| unreachable!("cedar policy: {e}")),
            entities,
            authorizer: cedar_policy::Authorizer::new(),
            action: uid("Action", "call"),
            apps: (0..model.grants.len()).map(|i| uid("App", &i.to_string())).collect(),
            apis: model.apis.iter().map(|a| uid("Api", &a.id)).collect(),
        }
    }

    pub fn allowed(&self, case: &Case) -> bool {
        let request = cedar_policy::Request::new(
            self.apps[case.app].clone(),
            self.action.clone(),
            self.apis[case.api].clone(),
            cedar_policy::Context::empty(),
            None,
        )
        .unwrap_or_else(|e| unreachable!("cedar request: {e}"));
        self.authorizer.is_authorized(&request, &self.policies, &self.entities).decision()
            == cedar_policy::Decision::Allow
    }
}

/// Rego (OPA's language) through regorus: the grants and requirements as data, one rule.
pub struct Rego {
    engine: regorus::Engine,
}

pub const REGO_POLICY: &str = r#"package permgate

default allow := false

allow if {
    every p in data.apis[input.api] {
        p in data.apps[input.app]
    }
}
"#;

impl Rego {
    pub fn new(model: &Model) -> Rego {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("permgate.rego".into(), REGO_POLICY.into())
            .unwrap_or_else(|e| unreachable!("rego policy: {e}"));
        let apps: serde_json::Map<String, serde_json::Value> =
            model.grants.iter().enumerate().map(|(i, held)| (i.to_string(), serde_json::json!(held))).collect();
        let apis: serde_json::Map<String, serde_json::Value> =
            model.apis.iter().map(|a| (a.id.clone(), serde_json::json!(a.required))).collect();
        let data = serde_json::json!({"apps": apps, "apis": apis}).to_string();
        let data = regorus::Value::from_json_str(&data).unwrap_or_else(|e| unreachable!("rego data: {e}"));
        engine.add_data(data).unwrap_or_else(|e| unreachable!("rego data: {e}"));
        Rego { engine }
    }

    pub fn allowed(&mut self, model: &Model, case: &Case) -> bool {
        let mut input = std::collections::BTreeMap::new();
        input.insert(regorus::Value::from("app"), regorus::Value::from(case.app.to_string()));
        input.insert(regorus::Value::from("api"), regorus::Value::from(model.apis[case.api].id.as_str()));
        self.engine.set_input(regorus::Value::from(input));
        self.engine.eval_rule("data.permgate.allow".into()).unwrap_or_else(|e| unreachable!("rego eval: {e}"))
            == regorus::Value::from(true)
    }
}

/// casbin: RBAC, with a role per set of permissions an API needs (`need:a+b`), granted to the
/// apps that hold all of them; policies say which role may call which API.
pub struct Casbin {
    enforcer: casbin::Enforcer,
    apps: Vec<String>,
}

pub const CASBIN_MODEL: &str = r#"[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
"#;

impl Casbin {
    pub fn new(model: &Model) -> Casbin {
        use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
        let runtime =
            tokio::runtime::Builder::new_current_thread().build().unwrap_or_else(|e| unreachable!("runtime: {e}"));
        let role =
            |required: &BTreeSet<String>| format!("need:{}", required.iter().cloned().collect::<Vec<_>>().join("+"));
        let roles: HashMap<String, BTreeSet<String>> =
            model.apis.iter().map(|a| (role(&a.required), a.required.clone())).collect();
        let policies: Vec<Vec<String>> =
            model.apis.iter().map(|a| vec![role(&a.required), a.id.clone(), "call".into()]).collect();
        let apps: Vec<String> = (0..model.grants.len()).map(|i| format!("app:{i}")).collect();
        let mut links = Vec::new();
        for (i, held) in model.grants.iter().enumerate() {
            for (name, required) in &roles {
                if required.is_subset(held) {
                    links.push(vec![apps[i].clone(), name.clone()]);
                }
            }
        }
        let enforcer = runtime.block_on(async {
            let m = DefaultModel::from_str(CASBIN_MODEL).await.unwrap_or_else(|e| unreachable!("casbin model: {e}"));
            let mut e = Enforcer::new(m, MemoryAdapter::default())
                .await
                .unwrap_or_else(|e| unreachable!("casbin enforcer: {e}"));
            e.add_policies(policies).await.unwrap_or_else(|e| unreachable!("casbin policies: {e}"));
            e.add_grouping_policies(links).await.unwrap_or_else(|e| unreachable!("casbin roles: {e}"));
            e
        });
        Casbin { enforcer, apps }
    }

    pub fn allowed(&self, model: &Model, case: &Case) -> bool {
        use casbin::CoreApi;
        self.enforcer
            .enforce((self.apps[case.app].as_str(), model.apis[case.api].id.as_str(), "call"))
            .unwrap_or_else(|e| unreachable!("casbin enforce: {e}"))
    }
}

/// Asks every engine every question; returns how many answers differ from the ground truth, per
/// engine (permgate, Cedar, Rego, casbin), and how many were allowed.
pub fn disagreements(model: &Model, cases: &[Case]) -> ([usize; 4], usize) {
    let snapshot = model.snapshot();
    let cedar = Cedar::new(model);
    let mut rego = Rego::new(model);
    let casbin = Casbin::new(model);
    let mut wrong = [0; 4];
    let mut allowed = 0;
    for case in cases {
        let truth = model.truth(case);
        allowed += usize::from(truth);
        let answers = [
            permgate(&snapshot, model, case),
            cedar.allowed(case),
            rego.allowed(model, case),
            casbin.allowed(model, case),
        ];
        for (w, a) in wrong.iter_mut().zip(answers) {
            *w += usize::from(a != truth);
        }
    }
    (wrong, allowed)
}
