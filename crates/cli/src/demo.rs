//! `permgate serve --demo`: seeds a living example into an empty database, through the same
//! services the API uses, so a newcomer's console has something to show: a developer and a
//! reviewer, a Biz app with consent items set, requests in several states, and some traffic.

use anyhow::Context;
use permgate_core::decision::decide_and_count;
use permgate_core::model::{ConsentLevel, Role};
use permgate_core::service::{
    ActOnRequest, Actor, Apply, CreateAccount, CreateApp, Services, SetBusiness, SetConsentItem, Upload,
};

/// A 1×1 PNG, the demo's evidence screenshot.
const SCREENSHOT: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\x00\x01\x00\x00\x05\x00\x01\r\n-\xb4\x00\x00\x00\x00IEND\xaeB`\x82";

/// The demo accounts' tokens, printed once.
#[derive(Debug)]
pub struct Seeded {
    pub developer: String,
    pub reviewer: String,
    pub app_id: i64,
}

/// Seeds the demo unless the database has apps already.
pub fn seed(services: &Services) -> anyhow::Result<Option<Seeded>> {
    if !services.store.app_ids()?.is_empty() {
        return Ok(None);
    }
    let admin = services
        .store
        .accounts()?
        .into_iter()
        .find(|a| a.role == Role::Admin)
        .map(|account| Actor { account })
        .context("the demo needs the admin account")?;
    let err = |e: permgate_core::error::ServiceError| anyhow::anyhow!("{e}");
    let account = |name: &str, role: Role, email: &str| {
        services
            .create_account(&admin, CreateAccount { name: name.into(), role, email: Some(email.into()) })
            .map_err(err)
    };
    let dev = account("demo-developer", Role::Developer, "developer@demo.example")?;
    let rev = account("demo-reviewer", Role::Reviewer, "reviewer@demo.example")?;
    let dev_actor = Actor { account: dev.account.clone() };
    let rev_actor = Actor { account: rev.account.clone() };

    let app = services
        .create_app(
            &dev_actor,
            CreateApp { name: "Demo Shop".into(), company_name: "Demo Co".into(), category: "shopping".into() },
        )
        .map_err(err)?;
    let id = app.id;
    services
        .set_business(
            &dev_actor,
            id,
            SetBusiness {
                business_registration_number: Some("120-81-47521".into()),
                company_name: Some("Demo Co".into()),
                individual: None,
            },
        )
        .map_err(err)?;
    for (scope, purpose) in [
        ("talk_calendar", "add the shop's events to the user's calendar"),
        ("friends", "let users share a product with friends"),
        ("talk_message", "send a product to a friend"),
    ] {
        let input = SetConsentItem { consent_type: ConsentLevel::Optional, purpose: purpose.into() };
        services.set_consent_item(&dev_actor, id, scope, input).map_err(err)?;
    }
    services.agree_eligibility(&dev_actor, id).map_err(err)?;

    let apply = |permission: &str, reason: &str| {
        let input = Apply {
            permission: permission.into(),
            service_url: "https://shop.demo.example".into(),
            reason: reason.into(),
            usage_scenario: Some("Log in, open a product, tap the feature".into()),
            evidence: Some(Upload { file_name: "screen.png".into(), bytes: SCREENSHOT.to_vec() }),
            ..Apply::default()
        };
        services.apply(&dev_actor, id, input).map_err(err)
    };
    let act = |request: i64, action: &str, reason: Option<&str>, comment: &str| {
        let input = ActOnRequest {
            action: action.into(),
            reason_code: reason.map(str::to_owned),
            comment: Some(comment.into()),
            expires_at: None,
            granted_limit: None,
        };
        services.act_on_request(&rev_actor, request, input).map_err(err)
    };
    // One approved, one on hold waiting for the developer, one waiting for a reviewer.
    let friends = apply("talk_friends_message", "Users share products with their friends")?;
    act(friends.id, "start_review", None, "")?;
    act(friends.id, "approve", None, "User-initiated sharing between users: approved")?;
    let moment = apply("kakao_moment", "We run our own ad campaigns")?;
    act(moment.id, "start_review", None, "")?;
    act(moment.id, "hold", Some("service_not_verifiable"), "Send proof of your agency certification")?;
    apply("talk_calendar", "Users add sales events to their Talk Calendar")?;

    // Some traffic with the REST API key, so that usage shows something.
    let key = app.keys.rest_api.first().and_then(|k| k.key.clone()).context("the demo app has no REST API key")?;
    let authorization = format!("KakaoAK {key}");
    for (path, n) in
        [("/v2/local/search/keyword.json?query=coffee", 42), ("/v2/local/search/address.json?query=Pangyo", 17)]
    {
        for _ in 0..n {
            let query = permgate_core::Query {
                method: "GET",
                path,
                authorization: Some(&authorization),
                origin: None,
                ka: None,
                recipients: &[],
                explain: false,
            };
            let now = services.clock.now();
            let snapshot = services.snapshot.read();
            let d =
                decide_and_count(&snapshot, &query, services.counter.as_ref(), now, true, services.on_counter_failure);
            services.decision_log.note(&d, "GET", path, now);
        }
    }
    services.save_counters().map_err(err)?;
    services.save_decisions().map_err(err)?;
    Ok(Some(Seeded { developer: dev.token, reviewer: rev.token, app_id: id.0 }))
}
