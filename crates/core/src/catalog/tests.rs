//! Catalog validation: every kind of mistake is reported with its line and a message that says
//! what is wrong.

use super::*;

const GOOD: &str = r#"
version = "test-1"

[[products]]
id = "talk_social"
name = "Kakao Talk Social"

[[products]]
id = "kakao_login"
name = "Kakao Login"
activation = "manual"

[[permissions]]
id = "talk_friends_message"
name = "Friends and messages"
obtained_by = "additional_feature"
prerequisites = { consent_items = ["friends"] }

[[consent_items]]
id = "friends"
name = "Friends list"
type = "privacy"
requires_permission = "talk_friends_message"
settable_before_permission = true

[[quota_rules]]
id = "monthly_total"
name = "All APIs per month"
period = "month"
scope = "app"
limit = 3000000
all_apis = true
exclude_categories = ["moment"]

[[quota_rules]]
id = "talk_daily"
name = "Talk per day"
period = "day"
scope = "app"
limit = 30000

[[review_reasons]]
id = "signup_policy_not_found"
text = "sign-up policy not found"
applies_to = ["hold", "reject"]

[[apis]]
id = "talk_friends"
name = "Friends list"
product = "talk_social"
category = "talk_social"
method = "GET"
path = "/v1/api/talk/friends"
key_kinds = ["user_token"]
permissions = ["talk_friends_message"]
consent_items = ["friends"]
quota_rules = ["talk_daily"]
without_permission = "members_only"

[[apis]]
id = "ad_account"
name = "Ad account"
product = "talk_social"
category = "moment"
method = "GET"
path = "/openapi/v4/adAccounts/{id}"
key_kinds = ["user_token"]

[[apis]]
id = "ad_account_pages"
name = "Ad account pages"
product = "talk_social"
category = "moment"
method = "GET"
path = "/openapi/v4/adAccounts/pages"
key_kinds = ["user_token"]
"#;

fn errors(text: &str) -> Vec<String> {
    match Catalog::parse("cat.toml", text) {
        Ok(_) => Vec::new(),
        Err(e) => e.issues.iter().map(ToString::to_string).collect(),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map_or(0, |i| i + 1)
}

#[test]
fn a_well_formed_catalog_loads_and_routes() {
    let catalog = Catalog::parse("cat.toml", GOOD);
    let Ok(catalog) = catalog else { unreachable!("{:?}", catalog.err()) };
    assert_eq!(catalog.version, "test-1");
    assert_eq!(catalog.time_zone, "Asia/Seoul");
    assert_eq!(catalog.route(Method::Get, "/v1/api/talk/friends").map(|a| a.id.as_str()), Some("talk_friends"));
    assert_eq!(
        catalog.route(Method::Get, "/openapi/v4/adAccounts/pages").map(|a| a.id.as_str()),
        Some("ad_account_pages")
    );
    assert_eq!(catalog.route(Method::Get, "/openapi/v4/adAccounts/77").map(|a| a.id.as_str()), Some("ad_account"));
    assert_eq!(catalog.route(Method::Post, "/v1/api/talk/friends").map(|a| a.id.as_str()), None);
}

#[test]
fn all_apis_rules_count_every_api_outside_their_exclusions() {
    let Ok(catalog) = Catalog::parse("cat.toml", GOOD) else { unreachable!() };
    let rules = |api: &str| -> Vec<String> {
        catalog.api(api).map(|a| catalog.quota_rules_for(a).map(|r| r.id.clone()).collect()).unwrap_or_default()
    };
    assert_eq!(rules("talk_friends"), vec!["monthly_total", "talk_daily"]);
    assert_eq!(rules("ad_account"), Vec::<String>::new());
}

#[test]
fn unknown_references_are_reported_with_their_line() {
    let text = GOOD.replace(r#"permissions = ["talk_friends_message"]"#, r#"permissions = ["talk_friend_message"]"#);
    let line = line_of(&text, "talk_friend_message\"]");
    assert_eq!(
        errors(&text),
        vec![format!("cat.toml:{line}:16: api `talk_friends` refers to unknown permission `talk_friend_message`")]
    );
}

#[test]
fn every_kind_of_reference_is_checked() {
    let text = GOOD
        .replace(
            r#"product = "talk_social"
category = "talk_social""#,
            r#"product = "talk_socal"
category = "talk_social""#,
        )
        .replace(
            r#"consent_items = ["friends"]
quota_rules"#,
            r#"consent_items = ["friend"]
quota_rules"#,
        )
        .replace(r#"quota_rules = ["talk_daily"]"#, r#"quota_rules = ["talk_day"]"#)
        .replace(r#"requires_permission = "talk_friends_message""#, r#"requires_permission = "nope""#)
        .replace(
            r#"prerequisites = { consent_items = ["friends"] }"#,
            r#"prerequisites = { consent_items = ["nobody"] }"#,
        );
    let errs = errors(&text);
    assert_eq!(errs.len(), 5, "{errs:#?}");
    for needle in [
        "unknown product `talk_socal`",
        "unknown consent item `friend`",
        "unknown quota rule `talk_day`",
        "unknown permission `nope`",
        "unknown consent item `nobody`",
    ] {
        assert!(errs.iter().any(|e| e.contains(needle)), "{needle} missing in {errs:#?}");
    }
}

#[test]
fn duplicate_ids_are_reported_at_the_second_one() {
    let text = format!(
        "{GOOD}\n[[quota_rules]]\nid = \"talk_daily\"\nname = \"again\"\nperiod = \"day\"\nscope = \"app\"\nlimit = 1\n"
    );
    let line = text.lines().count() - 4;
    assert_eq!(errors(&text), vec![format!("cat.toml:{line}:6: duplicate quota rule id `talk_daily`")]);
}

#[test]
fn overlapping_routes_name_both_apis() {
    let text =
        GOOD.replace(r#"path = "/openapi/v4/adAccounts/pages""#, r#"path = "/openapi/v4/adAccounts/{accountId}""#);
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains(
            "api `ad_account_pages`'s route GET /openapi/v4/adAccounts/{accountId} overlaps api `ad_account`"
        ),
        "{}",
        errs[0]
    );
}

#[test]
fn bad_patterns_and_methods_are_reported() {
    let text = GOOD.replace(r#"path = "/v1/api/talk/friends""#, r#"path = "v1/api/talk/friends""#).replace(
        "method = \"GET\"\npath = \"/openapi/v4/adAccounts/pages\"",
        "method = \"get\"\npath = \"/openapi/v4/adAccounts/pages\"",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs.iter().any(|e| e.contains("bad path pattern `v1/api/talk/friends`: a path pattern must start with `/`"))
    );
    assert!(errs.iter().any(|e| e.contains("method `get`")));
}

#[test]
fn syntax_errors_and_unknown_keys_carry_a_location() {
    let errs = errors("version = \"x\"\n[[apis]\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("cat.toml:2:"), "{}", errs[0]);

    let text = GOOD.replace("name = \"Kakao Login\"", "name = \"Kakao Login\"\nactivaton = \"manual\"");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    let line = line_of(&text, "activaton");
    assert!(errs[0].starts_with(&format!("cat.toml:{line}:")), "{}", errs[0]);
    assert!(errs[0].contains("activaton"), "{}", errs[0]);
}

#[test]
fn wrong_enum_values_are_reported() {
    let text = GOOD.replace(
        r#"key_kinds = ["user_token"]
permissions"#,
        r#"key_kinds = ["usertoken"]
permissions"#,
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("usertoken"), "{}", errs[0]);
}

#[test]
fn limits_ids_and_consistency_rules_are_checked() {
    let text = GOOD
        .replace("limit = 30000\n", "limit = 0\n")
        .replace(r#"id = "signup_policy_not_found""#, r#"id = "Signup-Policy""#)
        .replace("applies_to = [\"hold\", \"reject\"]", "applies_to = []");
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("needs a limit above 0")));
    assert!(errs.iter().any(|e| e.contains("must be snake_case")));
    assert!(errs.iter().any(|e| e.contains("must apply to hold, reject or both")));
}

#[test]
fn members_only_without_a_permission_is_an_error() {
    let text = GOOD.replace(
        r#"path = "/openapi/v4/adAccounts/pages"
key_kinds = ["user_token"]"#,
        r#"path = "/openapi/v4/adAccounts/pages"
key_kinds = ["user_token"]
without_permission = "members_only""#,
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].contains("members_only"));
}

#[test]
fn time_zones_are_limited_to_those_permgate_can_compute() {
    assert_eq!(tz_offset_seconds("Asia/Seoul"), Some(32_400));
    assert_eq!(tz_offset_seconds("-03:30"), Some(-12_600));
    assert_eq!(tz_offset_seconds("Mars/Olympus"), None);
    let text = GOOD.replace("version = \"test-1\"", "version = \"test-1\"\ntime_zone = \"Mars/Olympus\"");
    assert!(errors(&text).iter().any(|e| e.contains("unsupported time_zone")));
}

#[test]
fn errors_display_as_a_numbered_list() {
    let err = CatalogError {
        issues: vec![CatalogIssue { file: "f.toml".into(), line: 3, column: 1, message: "bad".into() }],
    };
    assert_eq!(err.to_string(), "the catalog has 1 error:\n  f.toml:3:1: bad");
}

#[test]
fn the_builtin_catalog_is_valid() {
    if let Err(e) = Catalog::builtin() {
        unreachable!("{e}");
    }
}

/// SPEC 4: what an app loses with a permission or a consent item, over the built-in catalog, as
/// far as the app has it, however far removed.
#[test]
fn what_goes_with_a_lost_prerequisite_follows_the_chain_as_far_as_the_app_has_it() {
    let catalog = Catalog::builtin().unwrap_or_else(|e| unreachable!("{e}"));
    let everything = |_: &str| true;
    // Kakao Moment's ad partnership needs Kakao Moment.
    let (revoked, unset) = catalog.lost_with(&["kakao_moment"], &[], everything, everything);
    assert_eq!((revoked, unset), (vec!["moment_message_ad_partner".to_owned()], vec![]));
    // Friends' messages need the `friends` consent item.
    let (revoked, _) = catalog.lost_with(&[], &["friends"], everything, everything);
    assert_eq!(revoked, ["talk_friends_message"]);
    // `friends` requires that permission but may be set before it is granted: it stays.
    let (_, unset) = catalog.lost_with(&["talk_friends_message"], &[], everything, everything);
    assert!(unset.is_empty(), "{unset:?}");
    // The name and phone number consent items need `personal_info_consent_items`.
    let (revoked, unset) = catalog.lost_with(&["personal_info_consent_items"], &[], everything, everything);
    assert!(revoked.is_empty(), "{revoked:?}");
    assert!(unset.contains(&"name".to_owned()) && unset.contains(&"phone_number".to_owned()), "{unset:?}");
    // Biz takes Kakao Moment and with it the ad partnership (two steps), and its consent items.
    let (revoked, unset) = catalog.lost_with(&["biz_app"], &[], everything, everything);
    assert!(revoked.contains(&"kakao_moment".to_owned()) && revoked.contains(&"moment_message_ad_partner".to_owned()));
    assert!(unset.contains(&"account_email".to_owned()), "{unset:?}");
    // Only what the app has: an app without the partnership loses nothing more with Moment, and
    // one without the consent items has none to unset.
    let (revoked, _) =
        catalog.lost_with(&["kakao_moment"], &[], |p: &str| p != "moment_message_ad_partner", everything);
    assert!(revoked.is_empty(), "{revoked:?}");
    let (_, unset) = catalog.lost_with(&["biz_app"], &[], everything, |_: &str| false);
    assert!(unset.is_empty(), "{unset:?}");
}
