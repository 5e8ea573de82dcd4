//! Apps: create (the creator becomes owner, with one key of each kind), list, get.

use serde::{Deserialize, Serialize};

use super::{Access, Actor, Services, required_text};
use crate::audit::NewAuditEvent;
use crate::error::{ServiceError, ServiceResult};
use crate::model::{
    AccountId, AppId, AppRecord, AppStatus, Business, ConnectedChannel, ConsentSetting, Eligibility, GrantSource, Key,
    KeyId, KeyKind, Member, Platforms, Role,
};
use crate::ports::{NewApp, NewGrant, NewKey};
use crate::secret;
use crate::time::Timestamp;

/// `POST /v1/apps`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    pub name: String,
    pub company_name: String,
    pub category: String,
}

/// A key as the API shows it. `key` is the key itself: always for non-secret kinds, and for an
/// admin key only in the response that created or rotated it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct KeyView {
    pub id: KeyId,
    pub kind: KeyKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub hint: String,
    pub platforms: Platforms,
    pub created_at: Timestamp,
}

impl KeyView {
    pub fn of(key: &Key, revealed: Option<&str>) -> KeyView {
        KeyView {
            id: key.id,
            kind: key.kind,
            key: key.value.clone().or_else(|| revealed.map(str::to_owned)),
            hint: key.hint.clone(),
            platforms: key.platforms.clone(),
            created_at: key.created_at,
        }
    }
}

/// An app as the API shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AppView {
    pub id: AppId,
    pub name: String,
    pub company_name: String,
    pub category: String,
    pub classification: &'static str,
    /// For a test app: the app it tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_app_id: Option<AppId>,
    pub status: AppStatus,
    pub owner_id: AccountId,
    pub created_at: Timestamp,
    pub members: Vec<Member>,
    pub keys: KeysByKind,
    pub products: Vec<super::ProductState>,
    pub business: Option<Business>,
    pub consent_items: Vec<ConsentSetting>,
    pub eligibility: Option<Eligibility>,
    pub channels: Vec<ConnectedChannel>,
}

#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct KeysByKind {
    pub rest_api: Vec<KeyView>,
    pub javascript: Vec<KeyView>,
    pub native_app: Vec<KeyView>,
    pub admin: Vec<KeyView>,
}

impl Services {
    pub fn app_view(&self, record: &AppRecord, revealed: &[(KeyId, String)]) -> AppView {
        let mut keys = KeysByKind::default();
        for key in &record.keys {
            let shown = revealed.iter().find(|(id, _)| *id == key.id).map(|(_, v)| v.as_str());
            let view = KeyView::of(key, shown);
            match key.kind {
                KeyKind::RestApi => keys.rest_api.push(view),
                KeyKind::Javascript => keys.javascript.push(view),
                KeyKind::NativeApp => keys.native_app.push(view),
                KeyKind::Admin | KeyKind::UserToken => keys.admin.push(view),
            }
        }
        let a = &record.app;
        AppView {
            id: a.id,
            name: a.name.clone(),
            company_name: a.company_name.clone(),
            category: a.category.clone(),
            classification: if a.original.is_some() {
                "test"
            } else if self.holds_now(record, "biz_app") {
                "biz"
            } else {
                "basic"
            },
            original_app_id: a.original,
            status: a.status,
            owner_id: a.owner,
            created_at: a.created_at,
            members: record.members.clone(),
            keys,
            products: self.product_states(record),
            business: record.business.clone(),
            consent_items: record.consent_items.clone(),
            eligibility: record.eligibility,
            channels: record.channels.clone(),
        }
    }

    pub fn create_app(&self, actor: &Actor, input: CreateApp) -> ServiceResult<AppView> {
        if !matches!(actor.role(), Role::Developer | Role::Admin) {
            return Err(ServiceError::Forbidden("only developers create apps".into()));
        }
        let new = NewApp {
            name: required_text("name", &input.name, 100)?,
            company_name: required_text("company_name", &input.company_name, 100)?,
            category: required_text("category", &input.category, 50)?,
            owner: actor.account.id,
            original: None,
            members: Vec::new(),
            grants: Vec::new(),
        };
        self.insert_app(actor, new, "app.create")
    }

    /// Creates a test app of `original`: its own keys, the original's members, `test_app`; it
    /// holds what the original holds, and its calls are for members only.
    pub fn create_test_app(&self, actor: &Actor, original: AppId) -> ServiceResult<AppView> {
        let record = self.app_for(actor, original, Access::Own)?;
        if let Some(o) = record.app.original {
            return Err(ServiceError::Conflict(format!(
                "app {original} is itself a test app (of app {o}); create test apps of the original"
            )));
        }
        let new = NewApp {
            name: format!("{} (test)", record.app.name),
            company_name: record.app.company_name.clone(),
            category: record.app.category.clone(),
            owner: record.app.owner,
            original: Some(original),
            members: record.members.iter().filter(|m| m.account_id != record.app.owner).cloned().collect(),
            grants: vec![NewGrant {
                app_id: original,
                permission: "test_app".into(),
                key_id: None,
                source: GrantSource::AppType,
                granted_by: Some(actor.account.id),
                expires_at: None,
                params: serde_json::json!({}),
                reason: format!("test app of app {original}"),
            }],
        };
        self.insert_app(actor, new, "app.create_test")
    }

    fn insert_app(&self, actor: &Actor, new: NewApp, action: &str) -> ServiceResult<AppView> {
        let mut keys = Vec::new();
        let mut secrets = Vec::new();
        for kind in KeyKind::APP_KEYS {
            let value = secret::new_app_key()?;
            keys.push(new_key(kind, &value));
            secrets.push((kind, value));
        }
        let now = self.clock.now();
        let audit = NewAuditEvent::new(now, Some(actor.account.id), action, format!("app:{}", new.name)).after(
            serde_json::json!({"name": new.name, "company_name": new.company_name, "category": new.category, "original": new.original}),
        );
        // The app as its own transaction read it: nothing is read after the commit, which could
        // fail with the app made and its one-time keys never shown (and a retry make another).
        let record = self.store.create_app(&new, &keys, now, &audit)?;
        self.install_created(&record);
        let revealed: Vec<(KeyId, String)> = record
            .keys
            .iter()
            .filter(|k| k.kind.is_secret())
            .filter_map(|k| secrets.iter().find(|(kind, _)| *kind == k.kind).map(|(_, v)| (k.id, v.clone())))
            .collect();
        Ok(self.app_view(&record, &revealed))
    }

    pub fn apps(&self, actor: &Actor) -> ServiceResult<Vec<AppView>> {
        let ids =
            if actor.is_staff() { self.store.app_ids()? } else { self.store.app_ids_of_member(actor.account.id)? };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.store.app_record(id)? {
                out.push(self.app_view(&record, &[]));
            }
        }
        Ok(out)
    }

    pub fn app(&self, actor: &Actor, id: AppId) -> ServiceResult<AppView> {
        let record = self.app_for(actor, id, Access::Read)?;
        Ok(self.app_view(&record, &[]))
    }
}

/// A key ready to store: secret kinds keep only the hash.
pub(super) fn new_key(kind: KeyKind, value: &str) -> NewKey {
    NewKey {
        kind,
        value: (!kind.is_secret()).then(|| value.to_owned()),
        hash: secret::hash(value),
        hint: secret::hint(value),
    }
}
