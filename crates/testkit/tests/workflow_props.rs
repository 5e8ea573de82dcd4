//! Property tests of the review workflow: random sequences of applications, reviewer and
//! applicant actions, revocations and clock moves, run against the real services over SQLite,
//! compared step by step with a model of SPEC section 4. After every step:
//! - at most one request per app and permission is open;
//! - every request is in the state the model says, and an action succeeds exactly when the state
//!   machine allows it (else 409);
//! - the app holds a permission (in the decision snapshot and in its permission list) exactly when
//!   the last decision was an approval that was not revoked and has not expired.

use std::sync::Arc;

use permgate_core::catalog::Catalog;
use permgate_core::credential::TokenVerifier;
use permgate_core::error::ServiceError;
use permgate_core::model::AppId;
use permgate_core::service::{
    ActOnRequest, Actor, Apply, BootstrapOutcome, CreateAccount, CreateApp, RevokePermission, Services, SetBusiness,
    SetConsentItem, Upload,
};
use permgate_core::snapshot::{SharedSnapshot, Snapshot};
use permgate_core::time::{Clock, ManualClock, Timestamp};
use permgate_core::workflow::{RequestAction, RequestFilter, RequestState};
use permgate_store_sqlite::SqliteStore;
use permgate_testkit::{EPOCH, TINY_PNG};
use proptest::prelude::*;

const PERMISSIONS: [&str; 2] = ["talk_calendar", "kakao_moment"];

#[derive(Debug, Clone)]
enum Op {
    Apply(usize),
    Act(usize, RequestAction, Option<i64>),
    Revoke(usize),
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let action = prop::sample::select(RequestAction::ALL.to_vec());
    prop_oneof![
        2 => (0..2usize).prop_map(Op::Apply),
        6 => (0..2usize, action, prop::option::of(1..300i64)).prop_map(|(p, a, e)| Op::Act(p, a, e)),
        1 => (0..2usize).prop_map(Op::Revoke),
        1 => (1..400i64).prop_map(Op::Advance),
    ]
}

/// What SPEC section 4 says the world looks like, per permission.
#[derive(Debug, Default, Clone)]
struct Model {
    /// The newest request's id and state.
    latest: Option<(i64, RequestState)>,
    /// Grants not revoked: their expiry (`None`: never).
    grants: Vec<Option<Timestamp>>,
}

impl Model {
    fn holds(&self, now: Timestamp) -> bool {
        self.grants.iter().any(|e| e.is_none_or(|at| now < at))
    }

    /// Held in a way that refuses a new application: forever, or ending more than the renewal
    /// window away.
    fn holds_beyond_renewal(&self, now: Timestamp) -> bool {
        let window = permgate_core::service::RENEW_WITHIN_DAYS * 86_400;
        self.grants.iter().any(|e| e.is_none_or(|at| at.0 - now.0 > window))
    }
}

struct World {
    services: Services,
    clock: Arc<ManualClock>,
    dev: Actor,
    rev: Actor,
    app: AppId,
}

fn ok<T>(r: Result<T, ServiceError>) -> T {
    r.unwrap_or_else(|e| unreachable!("set-up failed: {e}"))
}

fn world() -> World {
    let store = Arc::new(ok(SqliteStore::in_memory().map_err(ServiceError::from)));
    let catalog = Arc::new(Catalog::builtin().unwrap_or_else(|e| unreachable!("{e}")));
    let snapshot = Snapshot::build(catalog, Arc::new(TokenVerifier::new(None)), Vec::new());
    let clock = Arc::new(ManualClock::new(EPOCH));
    let services = Services::new(store, Arc::new(SharedSnapshot::new(snapshot)), clock.clone());
    assert!(matches!(
        ok(services.bootstrap_admin(Some(permgate_testkit::ADMIN_TOKEN))),
        BootstrapOutcome::FromConfiguration(_)
    ));
    let admin = ok(services.authenticate(Some(permgate_testkit::ADMIN_TOKEN)));
    let actor = |name: &str, role: &str| {
        let input = CreateAccount {
            name: name.into(),
            role: ok(role.parse().map_err(|_| ServiceError::Invalid(role.into()))),
            email: None,
        };
        let created = ok(services.create_account(&admin, input));
        ok(services.authenticate(Some(&created.token)))
    };
    let (dev, rev) = (actor("dev", "developer"), actor("rev", "reviewer"));
    let input = CreateApp { name: "Props".into(), company_name: "Props Co".into(), category: "games".into() };
    let app = ok(services.create_app(&dev, input)).id;
    let consent =
        SetConsentItem { consent_type: permgate_core::model::ConsentLevel::Optional, purpose: "calendar".into() };
    ok(services.set_consent_item(&dev, app, "talk_calendar", consent));
    let business = SetBusiness {
        business_registration_number: Some("120-81-47521".into()),
        company_name: Some("Props Co".into()),
        individual: None,
    };
    ok(services.set_business(&dev, app, business));
    ok(services.agree_eligibility(&dev, app));
    World { services, clock, dev, rev, app }
}

fn apply_input(permission: &str) -> Apply {
    Apply {
        permission: permission.into(),
        service_url: "https://props.example.com".into(),
        reason: "property test".into(),
        evidence: Some(Upload { file_name: "s.png".into(), bytes: TINY_PNG.to_vec() }),
        ..Apply::default()
    }
}

fn act_input(action: RequestAction, expires_at: Option<Timestamp>) -> ActOnRequest {
    let decides = matches!(action, RequestAction::Reject | RequestAction::Hold);
    ActOnRequest {
        action: action.as_str().into(),
        reason_code: decides.then(|| "signup_policy_not_found".into()),
        comment: Some("noted".into()),
        expires_at,
        granted_limit: None,
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let w = world();
    let mut models = [Model::default(), Model::default()];
    for op in ops {
        let now = w.clock.now();
        match op {
            Op::Apply(p) => {
                let m = &mut models[*p];
                let allowed = !m.latest.is_some_and(|(_, s)| s.is_open()) && !m.holds_beyond_renewal(now);
                match w.services.apply(&w.dev, w.app, apply_input(PERMISSIONS[*p])) {
                    Ok(r) => {
                        prop_assert!(allowed, "{op:?} succeeded but the model forbids it: {m:?}");
                        prop_assert_eq!(r.state, RequestState::Submitted);
                        m.latest = Some((r.id, r.state));
                    }
                    Err(ServiceError::Conflict(msg)) => prop_assert!(!allowed, "{op:?} refused: {msg}"),
                    Err(e) => prop_assert!(false, "{op:?}: unexpected {e}"),
                }
            }
            Op::Act(p, action, expiry) => {
                let m = &mut models[*p];
                let Some((id, state)) = m.latest else { continue };
                let expires_at = expiry.filter(|_| *action == RequestAction::Approve).map(|s| Timestamp(now.0 + s));
                let actor = if action.by_reviewer() { &w.rev } else { &w.dev };
                let expected = state.apply(*action);
                match (w.services.act_on_request(actor, id, act_input(*action, expires_at)), expected) {
                    (Ok(r), Ok(to)) => {
                        prop_assert_eq!(r.state, to);
                        m.latest = Some((id, to));
                        if *action == RequestAction::Approve {
                            m.grants.push(expires_at);
                        }
                    }
                    (Err(ServiceError::Conflict(_)), Err(_)) => {}
                    (got, want) => prop_assert!(false, "{op:?} from {state}: got {got:?}, model says {want:?}"),
                }
            }
            Op::Revoke(p) => {
                let m = &mut models[*p];
                let input = RevokePermission { reason: "property test".into(), key_id: None, rule: None };
                // Only a grant in force is revoked (one that ended is held no more); revoking
                // it revokes every grant of the permission.
                let now = w.clock.now();
                match w.services.revoke_permission(&w.rev, w.app, PERMISSIONS[*p], input) {
                    Ok(_) => {
                        prop_assert!(m.holds(now), "revoked a grant the model does not have in force");
                        m.grants.clear();
                    }
                    Err(ServiceError::NotFound(_)) => prop_assert!(!m.holds(now), "no grant to revoke: {m:?}"),
                    Err(e) => prop_assert!(false, "revoke: unexpected {e}"),
                }
            }
            Op::Advance(s) => w.clock.advance(*s),
        }
        check(&w, &models)?;
    }
    Ok(())
}

fn check(w: &World, models: &[Model; 2]) -> Result<(), TestCaseError> {
    let now = w.clock.now();
    let requests = ok(w
        .services
        .store
        .requests(&RequestFilter { app_id: Some(w.app), limit: 10_000, ..RequestFilter::default() })
        .map_err(ServiceError::from));
    let listed = ok(w.services.permissions(&w.dev, w.app));
    let snapshot = w.services.snapshot.read();
    for (p, m) in PERMISSIONS.iter().zip(models) {
        let open = requests.iter().filter(|r| r.permission == *p && r.state.is_open()).count();
        prop_assert!(open <= 1, "{open} open requests for {p}");
        let newest = requests.iter().find(|r| r.permission == *p).map(|r| (r.id, r.state));
        prop_assert_eq!(newest, m.latest, "newest request of {}", p);
        let index = snapshot.catalog().permission_index(p).unwrap_or(usize::MAX);
        let held = snapshot.app(w.app).is_some_and(|a| a.holds(index, None, now));
        prop_assert_eq!(held, m.holds(now), "snapshot holds {}", p);
        prop_assert_eq!(listed.iter().any(|h| h.permission == *p), m.holds(now), "permission list has {}", p);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_workflow_keeps_its_invariants(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}

#[test]
fn a_known_tricky_sequence_holds_too() {
    // Approve with an expiry, let it expire, apply again, approve, revoke: both grants go.
    let ops = [
        Op::Apply(0),
        Op::Act(0, RequestAction::StartReview, None),
        Op::Act(0, RequestAction::Approve, Some(10)),
        Op::Advance(10),
        Op::Apply(0),
        Op::Act(0, RequestAction::StartReview, None),
        Op::Act(0, RequestAction::Approve, None),
        Op::Revoke(0),
        Op::Apply(0),
        Op::Act(0, RequestAction::Withdraw, None),
    ];
    run(&ops).unwrap_or_else(|e| unreachable!("{e}"));
}
