//! The storage conformance suite: what every backend must do, run against each one
//! (`store-sqlite/tests`, and PostgreSQL when it lands). Each check takes a fresh, migrated store.

use permgate_core::audit::{NewAuditEvent, verify_chain};
use permgate_core::model::{AccountId, GrantSource, KeyKind, MemberRole, Platforms, Role};
use permgate_core::ports::{NewAccount, NewApp, NewGrant, NewKey, Store, StoreError};
use permgate_core::secret;
use permgate_core::time::Timestamp;

const AT: Timestamp = Timestamp(1_795_824_000);

fn audit(action: &str) -> NewAuditEvent {
    NewAuditEvent::new(AT, Some(AccountId(1)), action, "test".into())
}

fn key(kind: KeyKind, value: &str) -> NewKey {
    NewKey {
        kind,
        value: (!kind.is_secret()).then(|| value.to_owned()),
        hash: secret::hash(value),
        hint: secret::hint(value),
    }
}

fn account(store: &dyn Store, name: &str, role: Role) -> Result<AccountId, StoreError> {
    let new = NewAccount { name: name.into(), role, email: None, token_hash: secret::hash(name) };
    Ok(store.create_account(&new, AT, &audit("account.create"))?.id)
}

fn app(store: &dyn Store, owner: AccountId, keys: &[NewKey]) -> Result<permgate_core::model::AppId, StoreError> {
    let new = NewApp { name: "Shop".into(), company_name: "Example".into(), category: "shopping".into(), owner };
    store.create_app(&new, keys, AT, &audit("app.create"))
}

/// One conformance check over a fresh store.
pub type Check = fn(&dyn Store) -> Result<(), StoreError>;

/// Every check, by name, so a backend's test can run them one by one.
pub const CHECKS: &[(&str, Check)] = &[
    ("accounts_round_trip", accounts_round_trip),
    ("apps_round_trip_with_owner_and_keys", apps_round_trip_with_owner_and_keys),
    ("a_failed_write_leaves_nothing_behind", a_failed_write_leaves_nothing_behind),
    ("grants_are_inserted_and_revoked", grants_are_inserted_and_revoked),
    ("deleting_a_key_revokes_grants_bound_to_it", deleting_a_key_revokes_grants_bound_to_it),
    ("keys_rotate_and_carry_platforms", keys_rotate_and_carry_platforms),
    ("members_and_products_are_kept", members_and_products_are_kept),
    ("every_write_extends_one_verifiable_audit_chain", every_write_extends_one_verifiable_audit_chain),
    ("the_change_feed_lists_changed_apps_in_commit_order", the_change_feed_lists_changed_apps_in_commit_order),
    ("migrations_are_complete_and_idempotent", migrations_are_complete_and_idempotent),
    ("paid_usage_is_kept_and_removed", paid_usage_is_kept_and_removed),
    ("blocking_marks_the_owners_apps_changed", blocking_marks_the_owners_apps_changed),
    (
        "quota_counters_are_saved_as_the_larger_count_and_expire",
        quota_counters_are_saved_as_the_larger_count_and_expire,
    ),
];

fn accounts_round_trip(store: &dyn Store) -> Result<(), StoreError> {
    let id = account(store, "dana", Role::Developer)?;
    let found = store.account_by_token_hash(&secret::hash("dana"))?;
    assert_eq!(
        found.as_ref().map(|(a, h)| (a.id, a.role, h.clone())),
        Some((id, Role::Developer, secret::hash("dana")))
    );
    assert_eq!(store.account(id)?.map(|a| a.name), Some("dana".to_owned()));
    assert!(store.account_by_token_hash(&secret::hash("nobody"))?.is_none());
    assert!(matches!(
        store.create_account(
            &NewAccount { name: "dana".into(), role: Role::Admin, email: None, token_hash: "x".into() },
            AT,
            &audit("a")
        ),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.count_admins()?, 0);
    let admin = store.upsert_admin("admin", "h1", AT, &audit("bootstrap"))?;
    let again = store.upsert_admin("admin", "h2", AT, &audit("bootstrap"))?;
    assert_eq!(admin.id, again.id);
    assert_eq!(store.count_admins()?, 1);
    assert!(store.account_by_token_hash("h1")?.is_none(), "a reset token replaces the old one");
    assert_eq!(store.account_by_token_hash("h2")?.map(|(a, _)| a.id), Some(admin.id));
    assert_eq!(store.accounts()?.len(), 2);
    Ok(())
}

fn apps_round_trip_with_owner_and_keys(store: &dyn Store) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let id = app(store, owner, &[key(KeyKind::RestApi, "rest-1"), key(KeyKind::Admin, "admin-1")])?;
    let record = store.app_record(id)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    assert_eq!(record.app.owner, owner);
    assert_eq!(record.member_role(owner), Some(MemberRole::Owner));
    assert_eq!(record.keys.len(), 2);
    let admin = record.keys.iter().find(|k| k.kind == KeyKind::Admin);
    assert_eq!(
        admin.map(|k| (k.value.clone(), k.hash.clone())),
        Some((None, secret::hash("admin-1"))),
        "admin keys are kept only as hashes"
    );
    assert_eq!(store.app_ids_of_member(owner)?, vec![id]);
    assert_eq!(store.app_records()?.len(), 1);
    assert!(store.app_record(permgate_core::model::AppId(id.0 + 100))?.is_none());
    Ok(())
}

fn a_failed_write_leaves_nothing_behind(store: &dyn Store) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    app(store, owner, &[key(KeyKind::RestApi, "same")])?;
    let events = store.audit_events(None, usize::MAX)?.len();
    // The second app's key collides: the app, its membership and its audit event must all vanish.
    assert!(app(store, owner, &[key(KeyKind::Javascript, "fresh"), key(KeyKind::RestApi, "same")]).is_err());
    assert_eq!(store.app_ids()?.len(), 1);
    assert_eq!(store.app_ids_of_member(owner)?.len(), 1);
    assert_eq!(store.audit_events(None, usize::MAX)?.len(), events);
    Ok(())
}

fn grants_are_inserted_and_revoked(store: &dyn Store) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let id = app(store, owner, &[])?;
    let grant = NewGrant {
        app_id: id,
        permission: "kakao_moment".into(),
        key_id: None,
        source: GrantSource::Operator,
        granted_by: Some(owner),
        expires_at: Some(Timestamp(AT.0 + 100)),
        params: serde_json::json!({"limit": 5}),
        reason: "ok".into(),
    };
    let stored = store.insert_grant(&grant, AT, &audit("grant.create"))?;
    let record = store.app_record(id)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    assert_eq!(record.grants, vec![stored.clone()]);
    assert_eq!(stored.params, serde_json::json!({"limit": 5}));
    let revoked = store.revoke_grant(id, "kakao_moment", owner, "done", AT, &audit("grant.revoke"))?;
    assert_eq!(revoked.map(|g| g.id), Some(stored.id));
    assert!(store.app_record(id)?.is_some_and(|r| r.grants.is_empty()));
    assert!(store.revoke_grant(id, "kakao_moment", owner, "again", AT, &audit("grant.revoke"))?.is_none());
    Ok(())
}

fn deleting_a_key_revokes_grants_bound_to_it(store: &dyn Store) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let id = app(store, owner, &[key(KeyKind::NativeApp, "native-1")])?;
    let key_id = store
        .app_record(id)?
        .and_then(|r| r.keys.first().map(|k| k.id))
        .ok_or_else(|| StoreError::NotFound("key".into()))?;
    let grant = NewGrant {
        app_id: id,
        permission: "multi_app".into(),
        key_id: Some(key_id),
        source: GrantSource::Operator,
        granted_by: None,
        expires_at: None,
        params: serde_json::json!({}),
        reason: "legacy".into(),
    };
    store.insert_grant(&grant, AT, &audit("grant.create"))?;
    assert!(store.delete_key(id, key_id, &audit("key.delete"))?);
    let record = store.app_record(id)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    assert!(record.keys.is_empty() && record.grants.is_empty(), "{record:?}");
    assert!(!store.delete_key(id, key_id, &audit("key.delete"))?);
    Ok(())
}

fn keys_rotate_and_carry_platforms(store: &dyn Store) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let id = app(store, owner, &[key(KeyKind::Javascript, "js-1")])?;
    let key_id = store
        .app_record(id)?
        .and_then(|r| r.keys.first().map(|k| k.id))
        .ok_or_else(|| StoreError::NotFound("key".into()))?;
    let platforms = Platforms { origins: vec!["https://shop.example".into()], ..Platforms::default() };
    assert!(store.set_key_platforms(id, key_id, &platforms, &audit("key.platforms"))?);
    assert!(store.replace_key_secret(id, key_id, &key(KeyKind::Javascript, "js-2"), &audit("key.rotate"))?);
    let k = store
        .app_record(id)?
        .and_then(|r| r.keys.into_iter().next())
        .ok_or_else(|| StoreError::NotFound("key".into()))?;
    assert_eq!((k.id, k.value.as_deref(), k.platforms), (key_id, Some("js-2"), platforms));
    let added = store.add_key(id, &key(KeyKind::Javascript, "js-3"), AT, &audit("key.create"))?;
    assert_ne!(added, key_id);
    assert!(
        !store.set_key_platforms(permgate_core::model::AppId(id.0 + 1), key_id, &Platforms::default(), &audit("x"))?,
        "a key of another app is not touched"
    );
    Ok(())
}

fn members_and_products_are_kept(store: &dyn Store) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let editor = account(store, "editor", Role::Developer)?;
    let id = app(store, owner, &[])?;
    store.set_member(id, editor, MemberRole::Reader, &audit("member.set"))?;
    store.set_member(id, editor, MemberRole::Editor, &audit("member.set"))?;
    store.set_product(id, "kakao_login", true, &audit("product.set"))?;
    store.set_product(id, "local", false, &audit("product.set"))?;
    store.set_product(id, "kakao_login", false, &audit("product.set"))?;
    let record = store.app_record(id)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    assert_eq!(record.member_role(editor), Some(MemberRole::Editor));
    assert_eq!(record.products, vec![("kakao_login".to_owned(), false), ("local".to_owned(), false)]);
    assert!(store.remove_member(id, editor, &audit("member.remove"))?);
    assert!(!store.remove_member(id, owner, &audit("member.remove"))?, "the owner is never removed");
    assert_eq!(store.app_record(id)?.map(|r| r.members.len()), Some(1));
    Ok(())
}

fn every_write_extends_one_verifiable_audit_chain(store: &dyn Store) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let id = app(store, owner, &[key(KeyKind::RestApi, "r")])?;
    store.set_product(id, "local", true, &audit("product.set").app(id))?;
    let events = store.audit_events(None, usize::MAX)?;
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(verify_chain(&events), Ok(()));
    let of_app = store.audit_events(Some(id), usize::MAX)?;
    assert_eq!(of_app.iter().map(|e| e.event.action.as_str()).collect::<Vec<_>>(), vec!["app.create", "product.set"]);
    assert_eq!(store.audit_events(None, 1)?.len(), 1);
    Ok(())
}

fn the_change_feed_lists_changed_apps_in_commit_order(store: &dyn Store) -> Result<(), StoreError> {
    let start = store.latest_change()?;
    assert_eq!(store.changes_since(start)?, (start, vec![]));
    let owner = account(store, "owner", Role::Developer)?;
    assert_eq!(store.latest_change()?, start, "a change that touches no app is not in the feed");
    let a = app(store, owner, &[])?;
    let b = app(store, owner, &[])?;
    store.set_product(a, "local", true, &audit("product.set").app(a))?;
    let (newest, apps) = store.changes_since(start)?;
    assert_eq!(apps, vec![a, b], "each app once, in order of first change");
    assert_eq!(newest, store.latest_change()?);
    assert!(newest > start);
    let (after, none) = store.changes_since(newest)?;
    assert_eq!((after, none), (newest, vec![]));
    // A failed write adds no change.
    assert!(app(store, owner, &[key(KeyKind::RestApi, "dup"), key(KeyKind::RestApi, "dup")]).is_err());
    assert_eq!(store.latest_change()?, newest);
    Ok(())
}

fn migrations_are_complete_and_idempotent(store: &dyn Store) -> Result<(), StoreError> {
    let status = store.migration_status()?;
    assert!(!status.pending() && !status.too_new(), "{status:?}");
    assert_eq!(store.migrate()?, Vec::<i64>::new());
    store.ping()
}

fn paid_usage_is_kept_and_removed(store: &dyn Store) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let id = app(store, owner, &[])?;
    let paid =
        permgate_core::model::PaidUsage { rules: vec!["talk_share_daily".into()], daily_cap: 500, monthly_cap: 9000 };
    store.set_paid_usage(id, Some(&paid), &audit("paid.set").app(id))?;
    assert_eq!(store.app_record(id)?.and_then(|r| r.paid), Some(paid.clone()));
    let changed = permgate_core::model::PaidUsage { daily_cap: 10, ..paid };
    store.set_paid_usage(id, Some(&changed), &audit("paid.set").app(id))?;
    assert_eq!(store.app_records()?.into_iter().find(|r| r.app.id == id).and_then(|r| r.paid), Some(changed));
    store.set_paid_usage(id, None, &audit("paid.set").app(id))?;
    assert_eq!(store.app_record(id)?.and_then(|r| r.paid), None);
    Ok(())
}

fn quota_counters_are_saved_as_the_larger_count_and_expire(store: &dyn Store) -> Result<(), StoreError> {
    use permgate_core::ports::SavedCounter;
    let counter = |scope: u64, end: i64, count: u64| SavedCounter {
        rule_id: "talk_message_daily".into(),
        scope,
        window_start: end - 86_400,
        window_end: end,
        count,
    };
    let huge_scope = u64::MAX - 7;
    store.save_counters(&[counter(1, 1000, 5), counter(huge_scope, 1000, 2), counter(3, 10, 1)])?;
    store.save_counters(&[counter(1, 1000, 4), counter(huge_scope, 1000, 9)])?;
    let mut loaded = store.load_counters(Timestamp(500))?;
    loaded.sort_by_key(|c| c.scope);
    assert_eq!(
        loaded,
        vec![counter(1, 1000, 5), counter(huge_scope, 1000, 9)],
        "larger counts win; ended windows are gone"
    );
    assert_eq!(store.load_counters(Timestamp(1000))?, vec![]);
    store.save_counters(&[])?;
    Ok(())
}

fn blocking_marks_the_owners_apps_changed(store: &dyn Store) -> Result<(), StoreError> {
    use permgate_core::model::AppStatus;
    let owner = account(store, "owner", Role::Developer)?;
    let a = app(store, owner, &[])?;
    let b = app(store, owner, &[])?;
    let before = store.latest_change()?;
    assert_eq!(store.set_account_blocked(owner, true, &audit("account.block"))?, Some(vec![a, b]));
    assert_eq!(store.changes_since(before)?.1, vec![a, b], "other nodes re-read the owner's apps");
    assert!(store.app_record(a)?.is_some_and(|r| r.owner_blocked));
    assert_eq!(store.set_account_blocked(AccountId(owner.0 + 999), true, &audit("account.block"))?, None);
    assert!(store.set_app_status(b, AppStatus::Blocked, &audit("app.block").app(b))?);
    store.set_account_blocked(owner, false, &audit("account.unblock"))?;
    let b_now = store.app_record(b)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    assert_eq!((b_now.owner_blocked, b_now.app.status), (false, AppStatus::Blocked));
    assert!(!store.set_app_status(permgate_core::model::AppId(b.0 + 999), AppStatus::Active, &audit("x"))?);
    Ok(())
}
