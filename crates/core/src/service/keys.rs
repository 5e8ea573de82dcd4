//! App keys: add (up to five of a kind), rotate, delete, and set each key's platform data.

use serde::Deserialize;

use super::apps::{KeyView, new_key};
use super::{Access, Actor, Services};
use crate::audit::NewAuditEvent;
use crate::error::{ServiceError, ServiceResult};
use crate::model::{AppId, AppRecord, Key, KeyId, KeyKind, MAX_KEYS_PER_KIND, Platforms};
use crate::secret;

/// `POST /v1/apps/{id}/keys`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddKey {
    pub kind: KeyKind,
}

/// `PUT /v1/apps/{id}/keys/{key_id}/platforms`: each field replaces the stored list when present.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPlatforms {
    pub origins: Option<Vec<String>>,
    pub android_packages: Option<Vec<String>>,
    pub ios_bundle_ids: Option<Vec<String>>,
    /// `null` or absent leaves the list as it is; to allow every category again send `["*"]`.
    pub api_categories: Option<Vec<String>>,
}

impl Services {
    pub fn add_key(&self, actor: &Actor, app: AppId, input: AddKey) -> ServiceResult<KeyView> {
        let record = self.app_for(actor, app, Access::Own)?;
        if input.kind == KeyKind::UserToken {
            return Err(ServiceError::Invalid(
                "`kind` must be rest_api, javascript, native_app or admin; user tokens are issued by the identity provider".into(),
            ));
        }
        let held = record.keys.iter().filter(|k| k.kind == input.kind).count();
        if held >= MAX_KEYS_PER_KIND {
            return Err(ServiceError::Conflict(format!(
                "app {app} already has {MAX_KEYS_PER_KIND} {} keys; delete one first",
                input.kind
            )));
        }
        let value = secret::new_app_key()?;
        let key = new_key(input.kind, &value);
        let now = self.clock.now();
        let audit = NewAuditEvent::new(now, Some(actor.account.id), "key.create", format!("app:{app}"))
            .app(app)
            .after(serde_json::json!({"kind": input.kind, "hint": key.hint}));
        // The key as its transaction stored it: a read after the commit could fail with the key
        // made and its value, shown only now, lost.
        let stored = self.store.add_key(app, &key, now, &audit)?;
        self.settle(app);
        Ok(KeyView::of(&stored, Some(&value)))
    }

    pub fn rotate_key(&self, actor: &Actor, app: AppId, key: KeyId) -> ServiceResult<KeyView> {
        let record = self.app_for(actor, app, Access::Own)?;
        let old = key_of(&record, app, key)?;
        let value = secret::new_app_key()?;
        let new = new_key(old.kind, &value);
        let audit = NewAuditEvent::new(self.clock.now(), Some(actor.account.id), "key.rotate", format!("key:{key}"))
            .app(app)
            .before(serde_json::json!({"kind": old.kind, "hint": old.hint}))
            .after(serde_json::json!({"kind": old.kind, "hint": new.hint}));
        // The key as its transaction left it: the old value no longer works, so the answer must
        // not depend on a read after the commit (nor miss a change made meanwhile).
        let stored = self
            .store
            .replace_key_secret(app, key, &new, &audit)?
            .ok_or_else(|| ServiceError::NotFound(format!("app {app} has no key {key}")))?;
        self.settle(app);
        Ok(KeyView::of(&stored, Some(&value)))
    }

    pub fn delete_key(&self, actor: &Actor, app: AppId, key: KeyId) -> ServiceResult<()> {
        let record = self.app_for(actor, app, Access::Own)?;
        let old = key_of(&record, app, key)?;
        let audit = NewAuditEvent::new(self.clock.now(), Some(actor.account.id), "key.delete", format!("key:{key}"))
            .app(app)
            .before(serde_json::json!({"kind": old.kind, "hint": old.hint, "platforms": old.platforms}));
        if !self.store.delete_key(app, key, &audit)? {
            return Err(ServiceError::NotFound(format!("app {app} has no key {key}")));
        }
        self.settle(app);
        Ok(())
    }

    pub fn set_platforms(&self, actor: &Actor, app: AppId, key: KeyId, input: SetPlatforms) -> ServiceResult<KeyView> {
        let record = self.app_for(actor, app, Access::Edit)?;
        let old = key_of(&record, app, key)?;
        let platforms = merge_platforms(old.kind, &old.platforms, input)?;
        if platforms.android_packages.len() > 1 || platforms.ios_bundle_ids.len() > 1 {
            let now = self.clock.now();
            let snapshot = self.snapshot.read();
            let held = snapshot
                .catalog()
                .permission_index("multi_app")
                .is_some_and(|p| snapshot.app(app).is_some_and(|a| a.holds(p, Some(key), now)));
            if !held {
                return Err(ServiceError::Forbidden(
                    "a second Android package or iOS bundle ID on one native key needs `multi_app` bound to this key; \
                     Multi-app is retired, so add another native key (up to 5) for the other app instead"
                        .into(),
                ));
            }
        }
        let audit = NewAuditEvent::new(self.clock.now(), Some(actor.account.id), "key.platforms", format!("key:{key}"))
            .app(app)
            .before(&old.platforms)
            .after(&platforms);
        let stored = self
            .store
            .set_key_platforms(app, key, &platforms, &audit)?
            .ok_or_else(|| ServiceError::NotFound(format!("app {app} has no key {key}")))?;
        self.settle(app);
        Ok(KeyView::of(&stored, None))
    }
}

/// The key `key` of `app`, or 404.
fn key_of(record: &AppRecord, app: AppId, key: KeyId) -> ServiceResult<&Key> {
    record
        .keys
        .iter()
        .find(|k| k.id == key)
        .ok_or_else(|| ServiceError::NotFound(format!("app {app} has no key {key}")))
}

/// Applies a platform update to a key of `kind`, refusing fields that do not belong to the kind
/// and malformed values.
fn merge_platforms(kind: KeyKind, old: &Platforms, input: SetPlatforms) -> ServiceResult<Platforms> {
    let mut out = old.clone();
    let wrong = |field: &str, owner: &str| {
        Err(ServiceError::Invalid(format!("`{field}` applies to {owner} keys, and this is a {kind} key")))
    };
    if let Some(origins) = input.origins {
        if kind != KeyKind::Javascript {
            return wrong("origins", "javascript");
        }
        out.origins = checked_list(
            "origins",
            origins,
            valid_origin,
            "an origin such as https://example.com (scheme, host, optional port; no path)",
        )?;
    }
    if let Some(packages) = input.android_packages {
        if kind != KeyKind::NativeApp {
            return wrong("android_packages", "native_app");
        }
        out.android_packages =
            checked_list("android_packages", packages, valid_package, "a package name such as com.example.app")?;
    }
    if let Some(bundles) = input.ios_bundle_ids {
        if kind != KeyKind::NativeApp {
            return wrong("ios_bundle_ids", "native_app");
        }
        out.ios_bundle_ids =
            checked_list("ios_bundle_ids", bundles, valid_bundle, "a bundle ID such as com.example.ios")?;
    }
    if let Some(categories) = input.api_categories {
        if kind != KeyKind::Admin {
            return wrong("api_categories", "admin");
        }
        out.api_categories = if categories.iter().any(|c| c == "*") {
            None
        } else {
            Some(checked_list(
                "api_categories",
                categories,
                valid_category,
                "a snake_case API category such as user_management",
            )?)
        };
    }
    Ok(out)
}

fn checked_list(field: &str, values: Vec<String>, ok: fn(&str) -> bool, expected: &str) -> ServiceResult<Vec<String>> {
    if values.len() > 50 {
        return Err(ServiceError::Invalid(format!("`{field}` may list at most 50 entries")));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        let v = v.trim().trim_end_matches('/').to_owned();
        if !ok(&v) {
            return Err(ServiceError::Invalid(format!("`{field}`: `{v}` is not {expected}")));
        }
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

fn valid_origin(v: &str) -> bool {
    let rest = v.strip_prefix("https://").or_else(|| v.strip_prefix("http://"));
    rest.is_some_and(|host| {
        !host.is_empty()
            && host.len() <= 253
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    })
}

fn valid_package(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() >= 2
        && v.len() <= 255
        && parts.iter().all(|p| {
            p.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

fn valid_bundle(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 255
        && v.contains('.')
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        && !v.starts_with('.')
        && !v.ends_with('.')
}

fn valid_category(v: &str) -> bool {
    v.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_accepted_only_on_javascript_keys() {
        let input = SetPlatforms { origins: Some(vec!["https://example.com/".into()]), ..Default::default() };
        let js = merge_platforms(KeyKind::Javascript, &Platforms::default(), input.clone());
        assert_eq!(js.ok().map(|p| p.origins), Some(vec!["https://example.com".to_owned()]));
        assert!(merge_platforms(KeyKind::RestApi, &Platforms::default(), input).is_err());
    }

    #[test]
    fn malformed_values_are_named_in_the_error() {
        let input = SetPlatforms { android_packages: Some(vec!["not a package".into()]), ..Default::default() };
        let err = merge_platforms(KeyKind::NativeApp, &Platforms::default(), input).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("not a package")));
        let input = SetPlatforms { origins: Some(vec!["example.com".into()]), ..Default::default() };
        assert!(merge_platforms(KeyKind::Javascript, &Platforms::default(), input).is_err());
    }

    #[test]
    fn a_star_allows_every_category_again() {
        let narrowed = Platforms { api_categories: Some(vec!["user_management".into()]), ..Default::default() };
        let input = SetPlatforms { api_categories: Some(vec!["*".into()]), ..Default::default() };
        assert_eq!(merge_platforms(KeyKind::Admin, &narrowed, input).ok().map(|p| p.api_categories), Some(None));
    }

    #[test]
    fn absent_fields_keep_their_values_and_duplicates_collapse() {
        let old = Platforms { ios_bundle_ids: vec!["com.example.ios".into()], ..Default::default() };
        let input = SetPlatforms {
            android_packages: Some(vec!["com.example.app".into(), "com.example.app".into()]),
            ..Default::default()
        };
        let p = merge_platforms(KeyKind::NativeApp, &old, input).ok();
        assert_eq!(p.as_ref().map(|p| p.android_packages.len()), Some(1));
        assert_eq!(p.map(|p| p.ios_bundle_ids), Some(vec!["com.example.ios".to_owned()]));
    }
}
