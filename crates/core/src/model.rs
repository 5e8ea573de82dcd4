//! The domain's nouns: accounts, apps, members, keys, grants. Plain data, parsed at the edge into
//! types that cannot hold an invalid value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

id_type!(
    /// A developer, reviewer or admin account.
    AccountId
);
id_type!(
    /// A registered app (Kakao's numeric App ID).
    AppId
);
id_type!(
    /// One app key (the key's id, never its secret).
    KeyId
);

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::model::UnknownValue;
            fn from_str(s: &str) -> Result<Self, $crate::model::UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::model::UnknownValue {
                        what: stringify!($name),
                        value: s.to_owned(),
                        allowed: &[$($text),+],
                    }),
                }
            }
        }
    };
}

pub(crate) use string_enum;

/// A string that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {what}; expected one of: {}", allowed.join(", "))]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub allowed: &'static [&'static str],
}

string_enum!(
    /// An account's global role.
    Role { Developer => "developer", Reviewer => "reviewer", Admin => "admin" }
);

string_enum!(
    /// A member's role in one app.
    MemberRole { Owner => "owner", Editor => "editor", Reader => "reader" }
);

string_enum!(
    /// The credential kinds an API may accept. The first four are app keys (`KakaoAK`), the last a
    /// user's `Bearer` token.
    KeyKind {
        RestApi => "rest_api",
        Javascript => "javascript",
        NativeApp => "native_app",
        Admin => "admin",
        UserToken => "user_token",
    }
);

impl KeyKind {
    /// The kinds an app holds as keys (a user token is not a key).
    pub const APP_KEYS: [KeyKind; 4] = [KeyKind::RestApi, KeyKind::Javascript, KeyKind::NativeApp, KeyKind::Admin];

    /// Admin keys are secrets: stored only as hashes and shown once.
    pub fn is_secret(self) -> bool {
        matches!(self, KeyKind::Admin)
    }
}

string_enum!(
    /// What an app's calls are subject to, besides its permissions.
    AppStatus { Active => "active", Blocked => "blocked", Suspended => "suspended" }
);

string_enum!(
    /// Where a grant came from.
    GrantSource {
        Operator => "operator",
        Review => "review",
        AppType => "app_type",
        Default => "default",
    }
);

/// The most keys of one kind an app may hold (Kakao, since 2025-12-03).
pub const MAX_KEYS_PER_KIND: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub role: Role,
    /// Where notifications go (review results of the apps the account is a member of).
    pub email: Option<String>,
    pub blocked: bool,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Member {
    pub account_id: AccountId,
    pub role: MemberRole,
}

/// The platform data a key carries; which fields apply depends on the key's kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Platforms {
    /// JavaScript keys: allowed web origins (`https://example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
    /// Native keys: Android package names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub android_packages: Vec<String>,
    /// Native keys: iOS bundle IDs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ios_bundle_ids: Vec<String>,
    /// Admin keys: the API categories allowed; `None` allows every category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_categories: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Key {
    pub id: KeyId,
    pub kind: KeyKind,
    /// The key itself for non-secret kinds; `None` for admin keys, which are kept only as hashes.
    pub value: Option<String>,
    /// SHA-256 of the key, hex.
    #[serde(skip)]
    pub hash: String,
    /// The last four characters, to recognise a secret key without revealing it.
    pub hint: String,
    pub platforms: Platforms,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct App {
    pub id: AppId,
    pub name: String,
    pub company_name: String,
    pub category: String,
    pub owner: AccountId,
    pub status: AppStatus,
    pub created_at: Timestamp,
    /// For a test app: the app it tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original: Option<AppId>,
    /// For a blocked app: its status before, which unblocking restores.
    #[serde(skip)]
    pub status_before_block: Option<AppStatus>,
}

/// A permission held by an app (or by one of its keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Grant {
    pub id: i64,
    pub app_id: AppId,
    pub permission: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<KeyId>,
    pub source: GrantSource,
    pub granted_by: Option<AccountId>,
    pub granted_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub params: serde_json::Value,
    pub reason: String,
}

impl Key {
    /// A key with this value, hashed and hinted as when issued (the value is kept unless the
    /// kind is secret).
    pub fn issued(id: KeyId, kind: KeyKind, value: &str, platforms: Platforms, created_at: Timestamp) -> Key {
        Key {
            id,
            kind,
            hash: crate::secret::hash(value),
            hint: crate::secret::hint(value),
            value: (!kind.is_secret()).then(|| value.to_owned()),
            platforms,
            created_at,
        }
    }
}

impl Grant {
    /// The quota rule a grant of a permission that raises the rule named by each grant (such as
    /// `increased_quota`) raises: its `params.rule`. `None` for other grants.
    pub fn raised_rule(&self) -> Option<&str> {
        self.params.get("rule").and_then(serde_json::Value::as_str)
    }

    /// Whether this grant and a grant or request raising `rule` hold the same thing: the same
    /// permission is one holding, unless both name the quota rule they raise and the rules differ
    /// (`increased_quota` may raise several of an app's rules, one grant each).
    pub fn same_holding(&self, permission: &str, rule: Option<&str>) -> bool {
        self.permission == permission && same_rule(self.raised_rule(), rule)
    }
    /// A grant made by an operator, app-wide and without expiry.
    pub fn operator(app_id: AppId, permission: &str, params: serde_json::Value, granted_at: Timestamp) -> Grant {
        Grant {
            id: 0,
            app_id,
            permission: permission.to_owned(),
            key_id: None,
            source: GrantSource::Operator,
            granted_by: None,
            granted_at,
            expires_at: None,
            params,
            reason: String::new(),
        }
    }

    pub fn is_active(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// Paid usage of an app: past the free limit of the listed quota rules, calls continue and are
/// counted as paid, until the app's daily or monthly cap of paid calls (-11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaidUsage {
    pub rules: Vec<String>,
    pub daily_cap: u64,
    pub monthly_cap: u64,
}

string_enum!(
    /// How an app asks users for a consent item (Kakao's consent stages).
    ConsentLevel { Required => "required", Optional => "optional", OnUse => "on_use" }
);

/// A consent item set on an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ConsentSetting {
    pub scope: String,
    pub consent_type: ConsentLevel,
    pub purpose: String,
    pub set_at: Timestamp,
}

impl ConsentSetting {
    /// Consent item `scope` set as optional, for `purpose`.
    pub fn optional(scope: &str, purpose: &str, set_at: Timestamp) -> ConsentSetting {
        ConsentSetting {
            scope: scope.to_owned(),
            consent_type: ConsentLevel::Optional,
            purpose: purpose.to_owned(),
            set_at,
        }
    }
}

string_enum!(
    /// How an app became a Biz app: registered business information, or the individual-developer
    /// path (the owner's identity verified, the terms agreed, an app icon set).
    BizKind { Corporate => "corporate", Individual => "individual" }
);

/// The business information that makes an app a Biz app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Business {
    pub kind: BizKind,
    /// `123-45-67890`; empty for an individual developer.
    pub registration_number: String,
    pub company_name: String,
    pub verified_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
}

/// A Kakao Talk Channel in the operator's registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TalkChannel {
    /// The channel's public id, e.g. `_xcLqmC`.
    pub id: String,
    pub name: String,
    /// The business that owns the channel, `123-45-67890`.
    pub business_registration_number: String,
    /// Whether the channel passed Kakao's business-channel review.
    pub business_channel: bool,
}

/// A channel connected to an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ConnectedChannel {
    pub channel_id: String,
    pub connected_at: Timestamp,
}

/// The once-per-app agreement to the eligibility terms that gates a first application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Eligibility {
    pub agreed_by: AccountId,
    pub agreed_at: Timestamp,
}

/// Everything the decision snapshot needs about one app, read in one go from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    pub app: App,
    pub owner_blocked: bool,
    pub members: Vec<Member>,
    pub keys: Vec<Key>,
    /// Products switched on or off explicitly; others follow the catalog's default.
    pub products: Vec<(String, bool)>,
    /// Grants not revoked (possibly expired: expiry is decided at call time).
    pub grants: Vec<Grant>,
    /// Paid usage, when switched on.
    pub paid: Option<PaidUsage>,
    /// Set when the app is a Biz app with registered business information.
    pub business: Option<Business>,
    pub consent_items: Vec<ConsentSetting>,
    pub eligibility: Option<Eligibility>,
    pub channels: Vec<ConnectedChannel>,
}

impl AppRecord {
    /// An app with nothing attached yet (members, keys, grants and settings are added after).
    pub fn bare(app: App, owner_blocked: bool) -> AppRecord {
        AppRecord {
            app,
            owner_blocked,
            members: Vec::new(),
            keys: Vec::new(),
            products: Vec::new(),
            grants: Vec::new(),
            paid: None,
            business: None,
            consent_items: Vec::new(),
            eligibility: None,
            channels: Vec::new(),
        }
    }

    /// An active app owned by the account of the same number, with nothing else yet: for
    /// snapshots built in memory (benchmarks, fuzzing).
    pub fn active(id: AppId, created_at: Timestamp) -> AppRecord {
        let app = App {
            id,
            name: format!("app {id}"),
            company_name: "c".into(),
            category: "x".into(),
            owner: AccountId(id.0),
            status: AppStatus::Active,
            created_at,
            original: None,
            status_before_block: None,
        };
        AppRecord::bare(app, false)
    }

    pub fn member_role(&self, account: AccountId) -> Option<MemberRole> {
        self.members.iter().find(|m| m.account_id == account).map(|m| m.role)
    }
}

/// Whether two raised quota rules (of one permission) are the same holding: either names none
/// (the permission raises one rule, or none), or both name the same.
pub fn same_rule(a: Option<&str>, b: Option<&str>) -> bool {
    a.is_none() || b.is_none() || a == b
}

/// A holding as messages name it: the permission, and the quota rule it raises where it is held
/// once per rule (`increased_quota` for `local_keyword_search_daily`).
pub fn holding_name(permission: &str, rule: Option<&str>) -> String {
    match rule {
        Some(rule) => format!("`{permission}` for `{rule}`"),
        None => format!("`{permission}`"),
    }
}
