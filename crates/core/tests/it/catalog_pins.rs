//! `tests/data/catalog_endpoints.toml` pins what the built-in catalog says for real Kakao
//! endpoints: a concrete call must route to the named API, which must need exactly the listed
//! permissions, consent items, key kinds and quota rules. A catalog edit that changes one of these
//! facts fails here and must be made on purpose, in both files.

use permgate_core::catalog::Catalog;
use permgate_core::route::Method;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pin {
    method: String,
    path: String,
    api: String,
    product: String,
    key_kinds: Vec<String>,
    permissions: Vec<String>,
    consent_items: Vec<String>,
    quota_rules: Vec<String>,
    status: String,
    without_permission: String,
}

#[derive(Debug, Deserialize)]
struct Pins {
    endpoint: Vec<Pin>,
}

fn enum_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

#[test]
fn the_builtin_catalog_says_what_kakao_documents_for_each_pinned_endpoint() {
    let catalog = match Catalog::builtin() {
        Ok(c) => c,
        Err(e) => unreachable!("{e}"),
    };
    let pins: Pins = match toml::from_str(include_str!("../data/catalog_endpoints.toml")) {
        Ok(p) => p,
        Err(e) => unreachable!("{e}"),
    };
    assert!(pins.endpoint.len() >= 40, "only {} endpoints pinned", pins.endpoint.len());

    let mut failures = Vec::new();
    for pin in &pins.endpoint {
        let call = format!("{} {}", pin.method, pin.path);
        let Some(method) = Method::parse(&pin.method) else {
            failures.push(format!("{call}: bad method"));
            continue;
        };
        let Some(api) = catalog.route(method, &pin.path) else {
            failures.push(format!("{call}: routes to no API (expected `{}`)", pin.api));
            continue;
        };
        let mut check = |field: &str, got: String, want: String| {
            if got != want {
                failures.push(format!("{call}: {field} is {got}, pinned {want}"));
            }
        };
        check("api", api.id.clone(), pin.api.clone());
        check("product", api.product.clone(), pin.product.clone());
        check(
            "key_kinds",
            format!("{:?}", api.key_kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>()),
            format!("{:?}", pin.key_kinds),
        );
        check("permissions", format!("{:?}", api.permissions), format!("{:?}", pin.permissions));
        check("consent_items", format!("{:?}", api.consent_items), format!("{:?}", pin.consent_items));
        check("quota_rules", format!("{:?}", api.quota_rules), format!("{:?}", pin.quota_rules));
        check("status", enum_text(&api.status), pin.status.clone());
        check("without_permission", enum_text(&api.without_permission), pin.without_permission.clone());
    }
    assert!(failures.is_empty(), "{} pinned facts differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_permission_of_spec_section_2_is_in_the_builtin_catalog() {
    let catalog = match Catalog::builtin() {
        Ok(c) => c,
        Err(e) => unreachable!("{e}"),
    };
    let expected = [
        ("talk_share_quota", "additional_feature", false),
        ("personal_info_consent_items", "additional_feature", false),
        ("talk_friends_message", "additional_feature", false),
        ("talk_calendar", "additional_feature", false),
        ("kakao_map_activation", "additional_feature", false),
        ("multi_app", "additional_feature", true),
        ("kakao_moment", "additional_feature", false),
        ("connect_talk_channel", "additional_feature", false),
        ("increased_quota", "general_request", false),
        ("biz_app", "app_type", false),
        ("test_app", "app_type", false),
    ];
    for (id, obtained_by, retired) in expected {
        let p = catalog.permission(id);
        assert!(p.is_some(), "permission `{id}` missing");
        let Some(p) = p else { continue };
        assert_eq!(enum_text(&p.obtained_by), obtained_by, "{id}");
        assert_eq!(p.retired, retired, "{id}");
    }
    assert!(catalog.permission("connect_talk_channel").is_some_and(|p| p.immediate));
    for product in [
        "kakao_login",
        "talk_social",
        "talk_message",
        "talk_calendar",
        "talk_channel",
        "kakao_moment",
        "kakao_map",
        "local",
    ] {
        assert!(catalog.product(product).is_some(), "product `{product}` missing");
    }
}

#[test]
fn the_documented_free_quotas_are_in_the_builtin_catalog() {
    let catalog = match Catalog::builtin() {
        Ok(c) => c,
        Err(e) => unreachable!("{e}"),
    };
    let limit_of = |api: &str, period: &str| -> Vec<u64> {
        catalog
            .api(api)
            .map(|a| catalog.quota_rules_for(a).filter(|r| enum_text(&r.period) == period).map(|r| r.limit).collect())
            .unwrap_or_default()
    };
    assert!(limit_of("local_search_keyword", "month").contains(&3_000_000));
    assert!(limit_of("local_search_keyword", "day").contains(&100_000));
    assert!(limit_of("talk_profile", "day").contains(&30_000));
    assert!(limit_of("calendar_list", "day").contains(&30_000));
    let message = limit_of("talk_friends_message_send", "day");
    for limit in [30_000, 100, 20] {
        assert!(message.contains(&limit), "message rules {message:?} lack {limit}");
    }
    let codes: Vec<i32> = catalog
        .api("talk_friends_message_send")
        .map(|a| catalog.quota_rules_for(a).map(|r| r.error.code).collect())
        .unwrap_or_default();
    for code in [-532, -533, -536] {
        assert!(codes.contains(&code), "message quota codes {codes:?} lack {code}");
    }
}
