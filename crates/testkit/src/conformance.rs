//! The storage conformance suite: what every backend must do, run against each one
//! (`store-sqlite/tests` and `store-postgres/tests`). Each check takes a fresh, migrated store
//! and speaks the ports only, so a backend is held to behaviour, not to its schema.

use permgate_core::audit::{NewAuditEvent, verify_chain};
use permgate_core::decision_log::LoggedCall;
use permgate_core::model::{
    AccountId, AppId, AppRecord, AppStatus, Business, ConsentLevel, ConsentSetting, Eligibility, GrantSource, KeyKind,
    MemberRole, Platforms, Role, TalkChannel,
};
use permgate_core::notify::{Channel, DeliveryState, NewMessage};
use permgate_core::ports::{
    Cascade, GrantOf, Lost, NewAccount, NewApp, NewGrant, NewKey, Requirements, Store, StoreError,
};
use permgate_core::secret;
use permgate_core::time::Timestamp;
use permgate_core::workflow::{NewEvidence, NewRequest, RequestEvent, RequestFilter, RequestState, Transition};

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

fn app(store: &dyn Store, owner: AccountId, keys: &[NewKey]) -> Result<AppId, StoreError> {
    Ok(created(store, owner, keys)?.app.id)
}

/// A new app of `owner` with `keys`, as `create_app` answers it.
fn created(store: &dyn Store, owner: AccountId, keys: &[NewKey]) -> Result<AppRecord, StoreError> {
    let new = NewApp {
        name: "Shop".into(),
        company_name: "Example".into(),
        category: "shopping".into(),
        owner,
        original: None,
        members: Vec::new(),
        grants: Vec::new(),
    };
    store.create_app(&new, keys, AT, &audit("app.create"))
}

/// One conformance check over a fresh store.
pub type Check = fn(&dyn Store) -> Result<(), StoreError>;

/// Every check, by name, so a backend's test can run them one by one.
pub const CHECKS: &[(&str, Check)] = &[
    ("accounts_round_trip", accounts_round_trip),
    ("apps_round_trip_with_owner_and_keys", apps_round_trip_with_owner_and_keys),
    ("a_failed_write_leaves_nothing_behind", a_failed_write_leaves_nothing_behind),
    ("reactivating_answers_the_app_or_nothing", reactivating_answers_the_app_or_nothing),
    ("grants_are_inserted_and_revoked", grants_are_inserted_and_revoked),
    ("deleting_a_key_revokes_grants_bound_to_it", deleting_a_key_revokes_grants_bound_to_it),
    (
        "a_revocation_naming_a_quota_rule_revokes_that_rules_grant_only",
        a_revocation_naming_a_quota_rule_revokes_that_rules_grant_only,
    ),
    (
        "what_depended_on_a_revoked_grant_goes_once_it_is_held_no_more",
        what_depended_on_a_revoked_grant_goes_once_it_is_held_no_more,
    ),
    ("unsetting_a_consent_item_revokes_what_needed_it", unsetting_a_consent_item_revokes_what_needed_it),
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
    ("accounts_keep_their_email_address", accounts_keep_their_email_address),
    ("workflow_settings_are_kept_in_the_app_record", workflow_settings_are_kept_in_the_app_record),
    (
        "a_request_is_stored_with_its_evidence_messages_and_grant",
        a_request_is_stored_with_its_evidence_messages_and_grant,
    ),
    ("one_open_request_per_app_and_permission", one_open_request_per_app_and_permission),
    ("a_transition_applies_only_from_the_state_seen", a_transition_applies_only_from_the_state_seen),
    ("requests_are_listed_newest_first_and_filtered", requests_are_listed_newest_first_and_filtered),
    ("outbox_messages_are_leased_retried_and_finished", outbox_messages_are_leased_retried_and_finished),
    ("the_audit_head_is_the_newest_event", the_audit_head_is_the_newest_event),
    ("the_decision_log_sums_calls_and_keeps_the_newest", the_decision_log_sums_calls_and_keeps_the_newest),
    ("grant_notices_are_sent_once_and_may_revoke", grant_notices_are_sent_once_and_may_revoke),
    ("a_notice_takes_nothing_from_a_holding_granted_again", a_notice_takes_nothing_from_a_holding_granted_again),
    (
        "disconnecting_the_last_channel_revokes_and_a_missing_one_writes_nothing",
        disconnecting_the_last_channel_revokes_and_a_missing_one_writes_nothing,
    ),
    ("an_unblocked_app_is_not_idle_from_its_blocked_time", an_unblocked_app_is_not_idle_from_its_blocked_time),
];

/// A blocked app cannot be called: once unblocked, its idle time starts again, or the next idle
/// check would suspend it at once for the days it spent blocked.
fn an_unblocked_app_is_not_idle_from_its_blocked_time(store: &dyn Store) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let id = app(store, owner, &[])?;
    let later = Timestamp(AT.0 + 40 * 86_400);
    let cutoff = Timestamp(later.0 - 30 * 86_400);
    assert_eq!(store.idle_apps(cutoff)?, vec![id], "created and never called");
    let blocked = store.set_app_status(id, AppStatus::Blocked, &audit("app.block").app(id))?;
    // The answer is the app as its transaction left it.
    assert_eq!(blocked.as_ref().map(|r| r.app.status), Some(AppStatus::Blocked));
    assert_eq!(blocked, store.app_record(id)?);
    assert_eq!(store.idle_apps(cutoff)?, Vec::<AppId>::new(), "blocked, not idle");
    let unblock = NewAuditEvent::new(later, Some(AccountId(1)), "app.unblock", "test".into()).app(id);
    assert!(store.set_app_status(id, AppStatus::Active, &unblock)?.is_some());
    assert_eq!(store.idle_apps(cutoff)?, Vec::<AppId>::new(), "its idle time starts at the unblock");
    assert_eq!(store.idle_apps(Timestamp(later.0 + 1))?, vec![id], "and runs from there");
    Ok(())
}

/// Reactivating a suspended app answers the app as its transaction left it; an app that is not
/// suspended (reactivated meanwhile by another caller) gets nothing, and no audit event.
fn reactivating_answers_the_app_or_nothing(store: &dyn Store) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let id = app(store, owner, &[])?;
    let head = last_event(store)?;
    assert!(store.reactivate(id, AT, &audit("app.reactivate").app(id))?.is_none(), "active, not suspended");
    assert_eq!(last_event(store)?, head, "no audit event for a change that changed nothing");
    store.set_app_status(id, AppStatus::Suspended, &audit("app.suspend").app(id))?;
    let later = Timestamp(AT.0 + 100);
    let record = store.reactivate(id, later, &audit("app.reactivate").app(id))?;
    assert_eq!(record.as_ref().map(|r| r.app.status), Some(AppStatus::Active));
    assert_eq!(record, store.app_record(id)?);
    Ok(())
}

/// The store, not its caller, decides whether a disconnected channel was the app's last (two
/// disconnected at once each saw the other left), and its audit event names what it revoked.
fn disconnecting_the_last_channel_revokes_and_a_missing_one_writes_nothing(
    store: &dyn Store,
) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let id = app(store, owner, &[key(KeyKind::RestApi, "rest-1")])?;
    let grant = NewGrant {
        app_id: id,
        permission: "connect_talk_channel".into(),
        key_id: None,
        source: GrantSource::Operator,
        granted_by: Some(owner),
        expires_at: None,
        params: serde_json::json!({}),
        reason: "channel connected".into(),
    };
    for channel in ["_a", "_b"] {
        let talk = TalkChannel {
            id: channel.into(),
            name: "Shop".into(),
            business_registration_number: "123-45-67890".into(),
            business_channel: true,
        };
        store.upsert_channel(&talk, AT, &audit("channel.register"))?;
    }
    // Connecting needs what `requires` names, asked in the transaction: not a Biz app yet, the
    // connection is refused and nothing is written.
    let biz = Requirements { permissions: vec!["biz_app".into()], ..Requirements::default() };
    let head = store.audit_head()?;
    let refused = store.connect_channel(id, "_a", AT, &grant, &biz, &audit("channel.connect").app(id));
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    assert_eq!(store.audit_head()?, head, "nothing written");
    let biz_app = NewGrant { permission: "biz_app".into(), ..grant.clone() };
    store.insert_grant(&biz_app, AT, &audit("grant.create"))?;
    // The grant comes with the first channel; a second channel connects without a second grant.
    let (granted, record) = store.connect_channel(id, "_a", AT, &grant, &biz, &audit("channel.connect").app(id))?;
    assert!(granted);
    assert_eq!(Some(&record), store.app_record(id)?.as_ref(), "the app as its transaction left it");
    assert!(record.channels.iter().any(|c| c.channel_id == "_a"));
    assert!(!store.connect_channel(id, "_b", AT, &grant, &biz, &audit("channel.connect").app(id))?.0);
    let after = store.audit_events(None, usize::MAX)?.pop().map(|e| e.event.after).unwrap_or_default();
    assert_eq!(after["granted"], false, "{after}");
    let grants = store.app_record(id)?.map(|r| r.grants.len()).unwrap_or_default();
    assert_eq!(grants, 2, "biz_app and one connect_talk_channel");
    let revoke = ["connect_talk_channel".to_owned(), "talk_message".to_owned()];
    let revoke = Cascade { revoke: &revoke, ..Cascade::default() };
    let held = |store: &dyn Store| -> Result<bool, StoreError> {
        Ok(store.app_record(id)?.is_some_and(|r| r.grants.iter().any(|g| g.permission == "connect_talk_channel")))
    };
    let revoked_in_last_event = |store: &dyn Store| -> Result<serde_json::Value, StoreError> {
        Ok(store.audit_events(None, usize::MAX)?.last().map(|e| e.event.after["revoked"].clone()).unwrap_or_default())
    };

    let record = store.disconnect_channel(id, "_a", revoke, owner, "gone", &audit("channel.disconnect").app(id))?;
    assert_eq!(record, store.app_record(id)?, "the app as its transaction left it");
    assert!(held(store)?, "channel `_b` is still connected");
    assert_eq!(revoked_in_last_event(store)?, serde_json::json!([]));

    let head = store.audit_head()?;
    assert!(
        store.disconnect_channel(id, "_a", revoke, owner, "again", &audit("channel.disconnect").app(id))?.is_none()
    );
    assert_eq!(store.audit_head()?, head, "a channel not connected: no audit event");

    assert!(store.disconnect_channel(id, "_b", revoke, owner, "gone", &audit("channel.disconnect").app(id))?.is_some());
    assert!(!held(store)?, "the last channel went: its grant with it");
    assert_eq!(revoked_in_last_event(store)?, serde_json::json!(["connect_talk_channel"]), "only what was held");
    Ok(())
}

fn grant_notices_are_sent_once_and_may_revoke(store: &dyn Store) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let id = app(store, owner, &[key(KeyKind::RestApi, "rest-1")])?;
    let grant = NewGrant {
        app_id: id,
        permission: "talk_calendar".into(),
        key_id: None,
        source: GrantSource::Operator,
        granted_by: Some(owner),
        expires_at: None,
        params: serde_json::json!({}),
        reason: "pilot".into(),
    };
    let stored = store.insert_grant(&grant, AT, &audit("grant.create"))?;
    store.save_grant_usage(&[(id, "talk_calendar".into(), AT.0 + 50)])?;
    store.save_grant_usage(&[(id, "talk_calendar".into(), AT.0 + 10)])?;
    let live = store.live_grants()?;
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].grant.id, live[0].last_used_at), (stored.id, Some(AT.0 + 50)), "the newest use stays");
    let message = NewMessage {
        channel: Channel::Email,
        recipient: "dev@example.com".into(),
        subject: "unused".into(),
        body: "b".into(),
        app_id: Some(id),
    };
    let head = store.audit_head()?;
    assert!(store.grant_notice(
        &stored,
        "unused@1",
        None,
        std::slice::from_ref(&message),
        &audit("grant.unused_warning")
    )?);
    assert!(
        !store.grant_notice(
            &stored,
            "unused@1",
            None,
            std::slice::from_ref(&message),
            &audit("grant.unused_warning")
        )?,
        "once"
    );
    assert_eq!(store.audit_head()?.map(|h| h.0), head.map(|h| h.0 + 1), "one audit event, not two");
    assert_eq!(store.messages(Some(id), 10)?.len(), 1, "one message, not two");
    assert_eq!(store.live_grants()?[0].notices.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), vec!["unused@1"]);
    // A grant of another permission that needs this one, and two of a permission held once per
    // quota rule: reaping talk_calendar takes the first along, and reaping one rule's holding
    // leaves the other rule's.
    let other = |permission: &str, rule: Option<&str>| NewGrant {
        permission: permission.into(),
        params: rule.map_or_else(|| serde_json::json!({}), |r| serde_json::json!({"rule": r, "limit": 9})),
        ..grant.clone()
    };
    store.insert_grant(&other("talk_calendar_plus", None), AT, &audit("grant.create"))?;
    let daily = store.insert_grant(&other("increased_quota", Some("daily")), AT, &audit("grant.create"))?;
    store.insert_grant(&other("increased_quota", Some("monthly")), AT, &audit("grant.create"))?;
    let cascade = Cascade { revoke: &["talk_calendar_plus".to_owned()], unset: &[], messages: &[] };
    let reap = |permission, rule, cascade| permgate_core::ports::Revocation {
        lost: permgate_core::ports::Lost::Reaped(GrantOf { permission, key: None, rule }),
        cascade,
        reason: "unused",
    };
    assert!(store.grant_notice(
        &stored,
        "reaped",
        Some(reap("talk_calendar", None, cascade)),
        &[],
        &audit("grant.reap")
    )?);
    let after = store.audit_events(None, usize::MAX)?.pop().map(|e| e.event.after).unwrap_or_default();
    assert_eq!(after["also_revoked"], serde_json::json!(["talk_calendar_plus"]), "{after}");
    let left = |store: &dyn Store| -> Result<Vec<String>, StoreError> {
        Ok(store
            .app_record(id)?
            .map(|r| r.grants.iter().map(|g| format!("{} {}", g.permission, g.params["rule"])).collect())
            .unwrap_or_default())
    };
    assert_eq!(
        left(store)?,
        vec!["increased_quota \"daily\"", "increased_quota \"monthly\""],
        "revoked, with what needed it"
    );
    let none = Cascade::default();
    assert!(store.grant_notice(
        &daily,
        "reaped",
        Some(reap("increased_quota", Some("daily"), none)),
        &[],
        &audit("grant.reap")
    )?);
    assert_eq!(left(store)?, vec!["increased_quota \"monthly\""], "one rule's holding went, the other's stays");
    Ok(())
}

fn logged(app: i64, api: &str, key: Option<i64>, scopes: &str, code: i32, calls: u64, at: i64) -> LoggedCall {
    LoggedCall {
        app_id: AppId(app),
        key_kind: if key.is_some() { KeyKind::RestApi } else { KeyKind::UserToken },
        key_id: key.map(permgate_core::model::KeyId),
        scopes: scopes.to_owned(),
        method: "GET".into(),
        path: format!("/{api}"),
        api: api.to_owned(),
        code,
        would_code: 0,
        shadow: String::new(),
        calls,
        last_at: at,
    }
}

fn the_decision_log_sums_calls_and_keeps_the_newest(store: &dyn Store) -> Result<(), StoreError> {
    assert!(store.recent_decisions(10)?.is_empty());
    store
        .save_decisions(&[logged(1, "a", Some(1), "", 0, 3, 100), logged(1, "a", None, "friends", -402, 1, 101)], 10)?;
    // The same call again: calls add up, the newest code, path and time win.
    let mut again = logged(1, "a", Some(1), "", 0, 2, 105);
    again.path = "/a?query=x".into();
    again.would_code = -5;
    again.shadow = "permission:kakao_moment".into();
    store.save_decisions(&[again.clone()], 10)?;
    let rows = store.recent_decisions(10)?;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0], LoggedCall { calls: 5, ..again });
    assert_eq!(rows[1], logged(1, "a", None, "friends", -402, 1, 101));
    // Only the `keep` most recently seen rows stay.
    store.save_decisions(&[logged(2, "b", Some(7), "", 0, 1, 200), logged(3, "c", Some(8), "", 0, 1, 300)], 2)?;
    let kept: Vec<i64> = store.recent_decisions(10)?.iter().map(|r| r.app_id.0).collect();
    assert_eq!(kept, vec![3, 2]);
    assert_eq!(store.recent_decisions(1)?.len(), 1);
    assert_eq!(store.state_counts()?, permgate_core::ports::StateCounts::default(), "nothing requested or queued yet");
    Ok(())
}

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
    let made = created(store, owner, &[key(KeyKind::RestApi, "rest-1"), key(KeyKind::Admin, "admin-1")])?;
    let id = made.app.id;
    let record = store.app_record(id)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    // The creating transaction's own read: what the service shows (keys and their ids) and puts
    // in the snapshot without reading again after the commit.
    assert_eq!(made, record, "create_app answers the app as stored");
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
    // Held already (an approval may have committed since the operator's read): refused in the
    // transaction, nothing written.
    let head = last_event(store)?;
    match store.insert_grant(&grant, AT, &audit("grant.create")) {
        Err(StoreError::Conflict(m)) => assert!(m.contains("already holds `kakao_moment`"), "{m}"),
        other => unreachable!("{other:?}"),
    }
    assert_eq!(last_event(store)?, head);
    let record = store.app_record(id)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    assert_eq!(record.grants, vec![stored.clone()]);
    assert_eq!(stored.params, serde_json::json!({"limit": 5}));
    let revoked = store.revoke_grant(
        id,
        GrantOf { permission: "kakao_moment", key: None, rule: None },
        Cascade::default(),
        owner,
        "done",
        AT,
        &audit("grant.revoke"),
    )?;
    assert_eq!(revoked.map(|g| g.id), Some(stored.id));
    assert!(store.app_record(id)?.is_some_and(|r| r.grants.is_empty()));
    assert!(
        store
            .revoke_grant(
                id,
                GrantOf { permission: "kakao_moment", key: None, rule: None },
                Cascade::default(),
                owner,
                "again",
                AT,
                &audit("grant.revoke")
            )?
            .is_none()
    );
    Ok(())
}

fn a_revocation_naming_a_quota_rule_revokes_that_rules_grant_only(store: &dyn Store) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let id = app(store, owner, &[])?;
    let boost = |rule: &str| NewGrant {
        app_id: id,
        permission: "increased_quota".into(),
        key_id: None,
        source: GrantSource::Operator,
        granted_by: Some(owner),
        expires_at: None,
        params: serde_json::json!({"limit": 9, "rule": rule}),
        reason: "partner".into(),
    };
    let keyword = store.insert_grant(&boost("local_keyword_search_daily"), AT, &audit("grant.create"))?;
    let category = store.insert_grant(&boost("local_category_search_daily"), AT, &audit("grant.create"))?;
    let of = |rule| GrantOf { permission: "increased_quota", key: None, rule };
    let head = last_event(store)?;
    let none = store.revoke_grant(
        id,
        of(Some("local_transcoord_daily")),
        Cascade::default(),
        owner,
        "no",
        AT,
        &audit("grant.revoke"),
    )?;
    assert!(none.is_none(), "no grant raises that rule");
    assert_eq!(last_event(store)?, head, "and nothing was written");
    let revoked = store.revoke_grant(
        id,
        of(Some("local_keyword_search_daily")),
        Cascade::default(),
        owner,
        "done",
        AT,
        &audit("grant.revoke"),
    )?;
    assert_eq!(revoked.map(|g| g.id), Some(keyword.id));
    let left: Vec<i64> = store.app_record(id)?.map(|r| r.grants.iter().map(|g| g.id).collect()).unwrap_or_default();
    assert_eq!(left, vec![category.id], "the other rule's grant stays");
    let revoked = store.revoke_grant(id, of(None), Cascade::default(), owner, "all", AT, &audit("grant.revoke"))?;
    assert_eq!(revoked.map(|g| g.id), Some(category.id));
    assert!(store.app_record(id)?.is_some_and(|r| r.grants.is_empty()));
    Ok(())
}

/// A reap or a lapse decided on grants read before the transaction: a grant made since, which
/// holds the permission on, makes it write nothing (no notice, no revocation, no event), so that
/// a later round decides again.
fn a_notice_takes_nothing_from_a_holding_granted_again(store: &dyn Store) -> Result<(), StoreError> {
    let id = holding(store, &[("moment_message_ad_partner", None)], &[])?;
    let grant = |reason: &str, expires_at: Option<Timestamp>| NewGrant {
        app_id: id,
        permission: "kakao_moment".into(),
        key_id: None,
        source: GrantSource::Review,
        granted_by: None,
        expires_at,
        params: serde_json::json!({}),
        reason: reason.into(),
    };
    // A grant that ended, and its renewal, as an approval since the round's read would make it.
    let first = store.insert_grant(
        &grant("trial", Some(Timestamp(AT.0 - 10))),
        Timestamp(AT.0 - 20),
        &audit("grant.create"),
    )?;
    store.insert_grant(&grant("renewed", None), AT, &audit("grant.create"))?;
    let revoke = ["moment_message_ad_partner".to_owned()];
    let cascade = Cascade { revoke: &revoke, unset: &[], messages: &[] };
    let of = GrantOf { permission: "kakao_moment", key: None, rule: None };
    let head = store.audit_head()?;
    let reap = permgate_core::ports::Revocation { lost: Lost::Reaped(of), cascade, reason: "unused" };
    assert!(!store.grant_notice(&first, "reaped", Some(reap), &[], &audit("grant.reap"))?, "the renewal stands");
    let lapse = permgate_core::ports::Revocation { lost: Lost::Ended("kakao_moment"), cascade, reason: "ended" };
    assert!(!store.grant_notice(&first, "lapsed", Some(lapse), &[], &audit("grant.lapse"))?, "held app-wide");
    assert_eq!(store.audit_head()?, head, "nothing written");
    let held: Vec<String> =
        store.app_record(id)?.map(|r| r.grants.iter().map(|g| g.reason.clone()).collect()).unwrap_or_default();
    assert_eq!(held, vec!["partner", "trial", "renewed"], "nothing revoked");
    assert!(
        store.live_grants()?.iter().all(|g| g.notices.is_empty()),
        "no notice recorded: a later round decides again"
    );
    Ok(())
}

/// An app with operator grants of `permissions` (app-wide; `increased_quota` raising `rule`) and
/// the consent items `scopes` set.
fn holding(store: &dyn Store, permissions: &[(&str, Option<&str>)], scopes: &[&str]) -> Result<AppId, StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let id = app(store, owner, &[])?;
    for &(permission, rule) in permissions {
        let grant = NewGrant {
            app_id: id,
            permission: permission.into(),
            key_id: None,
            source: GrantSource::Operator,
            granted_by: Some(owner),
            expires_at: None,
            params: rule.map_or(serde_json::json!({}), |r| serde_json::json!({"limit": 9, "rule": r})),
            reason: "partner".into(),
        };
        store.insert_grant(&grant, AT, &audit("grant.create"))?;
    }
    for scope in scopes {
        let setting = ConsentSetting {
            scope: (*scope).into(),
            consent_type: ConsentLevel::Optional,
            purpose: "p".into(),
            set_at: AT,
        };
        store.set_consent_item(id, scope, Some(&setting), &audit("app.consent"))?;
    }
    Ok(id)
}

fn what_depended_on_a_revoked_grant_goes_once_it_is_held_no_more(store: &dyn Store) -> Result<(), StoreError> {
    let id = holding(
        store,
        &[
            ("increased_quota", Some("local_keyword_search_daily")),
            ("increased_quota", Some("local_category_search_daily")),
            ("kakao_moment", None),
        ],
        &["name"],
    )?;
    let (revoke, unset) = (["kakao_moment".to_owned()], ["name".to_owned()]);
    let messages = [message(id, "dev@example.com")];
    let cascade = Cascade { revoke: &revoke, unset: &unset, messages: &messages };
    let of = |rule| GrantOf { permission: "increased_quota", key: None, rule };
    let sent = store.messages(Some(id), 100)?.len();
    // One rule's grant goes; the app still holds the permission for the other: nothing follows.
    store.revoke_grant(
        id,
        of(Some("local_keyword_search_daily")),
        cascade,
        AccountId(1),
        "one",
        AT,
        &audit("grant.revoke"),
    )?;
    let record = store.app_record(id)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    assert_eq!(record.grants.len(), 2, "the other rule's grant and kakao_moment stay");
    assert_eq!(record.consent_items.len(), 1);
    assert_eq!(store.messages(Some(id), 100)?.len(), sent, "nothing went, nothing is said");
    // The last grant goes: what depended on it goes in the same transaction, said so and audited.
    store.revoke_grant(id, of(None), cascade, AccountId(1), "all", AT, &audit("grant.revoke"))?;
    let record = store.app_record(id)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    assert!(record.grants.is_empty() && record.consent_items.is_empty(), "{record:?}");
    assert_eq!(store.messages(Some(id), 100)?.len(), sent + 1);
    let event = store.audit_events(None, usize::MAX)?.pop().ok_or_else(|| StoreError::NotFound("event".into()))?;
    assert_eq!(event.event.after["also_revoked"], serde_json::json!(["kakao_moment"]));
    assert_eq!(event.event.after["consent_items_unset"], serde_json::json!(["name"]));
    Ok(())
}

fn unsetting_a_consent_item_revokes_what_needed_it(store: &dyn Store) -> Result<(), StoreError> {
    let id = holding(store, &[("talk_friends_message", None), ("kakao_moment", None)], &["friends", "talk_message"])?;
    let revoke = ["talk_friends_message".to_owned()];
    let cascade = Cascade { revoke: &revoke, unset: &[], messages: &[] };
    let revoked = store.unset_consent_item(id, "friends", cascade, AccountId(1), &audit("consent_item.unset"))?;
    assert_eq!(revoked, Some(vec!["talk_friends_message".to_owned()]));
    let record = store.app_record(id)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    assert_eq!(record.grants.iter().map(|g| g.permission.as_str()).collect::<Vec<_>>(), ["kakao_moment"]);
    assert_eq!(record.consent_items.iter().map(|c| c.scope.as_str()).collect::<Vec<_>>(), ["talk_message"]);
    // Unset already: nothing is written, not even an event.
    let head = last_event(store)?;
    assert_eq!(store.unset_consent_item(id, "friends", cascade, AccountId(1), &audit("consent_item.unset"))?, None);
    assert_eq!(last_event(store)?, head);
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
    let bound = store.insert_grant(&grant, AT, &audit("grant.create"))?;
    // Revoking it: not as the app-wide grant (nothing is written then, not even an event), but
    // as the grant of its key.
    let head = last_event(store)?;
    assert!(
        store
            .revoke_grant(
                id,
                GrantOf { permission: "multi_app", key: None, rule: None },
                Cascade::default(),
                owner,
                "no",
                AT,
                &audit("grant.revoke")
            )?
            .is_none()
    );
    assert_eq!(last_event(store)?, head, "no audit event for a revocation that revoked nothing");
    let revoked = store.revoke_grant(
        id,
        GrantOf { permission: "multi_app", key: Some(key_id), rule: None },
        Cascade::default(),
        owner,
        "ended",
        AT,
        &audit("grant.revoke"),
    )?;
    assert_eq!(revoked.map(|g| g.id), Some(bound.id));
    assert!(store.app_record(id)?.is_some_and(|r| r.grants.is_empty()));
    store.insert_grant(&grant, AT, &audit("grant.create"))?;
    assert!(store.delete_key(id, key_id, &audit("key.delete"))?);
    let record = store.app_record(id)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    assert!(record.keys.is_empty() && record.grants.is_empty(), "{record:?}");
    let head = last_event(store)?;
    assert!(!store.delete_key(id, key_id, &audit("key.delete"))?);
    assert!(
        store.replace_key_secret(id, key_id, &key(KeyKind::NativeApp, "native-2"), &audit("key.rotate"))?.is_none()
    );
    assert!(store.set_key_platforms(id, key_id, &Platforms::default(), &audit("key.platforms"))?.is_none());
    assert!(!store.remove_member(id, owner, &audit("member.remove"))?, "an owner is not removed");
    assert_eq!(last_event(store)?, head, "no audit event for a change that changed nothing");
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
    let set = store.set_key_platforms(id, key_id, &platforms, &audit("key.platforms"))?;
    let rotated = store.replace_key_secret(id, key_id, &key(KeyKind::Javascript, "js-2"), &audit("key.rotate"))?;
    let k = store
        .app_record(id)?
        .and_then(|r| r.keys.into_iter().next())
        .ok_or_else(|| StoreError::NotFound("key".into()))?;
    assert_eq!((k.id, k.value.as_deref(), &k.platforms), (key_id, Some("js-2"), &platforms));
    // Each answers the key as its transaction left it: the platforms set, then both changes.
    assert_eq!(set.map(|s| (s.value, s.platforms)), Some((Some("js-1".into()), platforms)));
    assert_eq!(rotated.as_ref(), Some(&k), "the rotated key as stored");
    let added = store.add_key(id, &key(KeyKind::Javascript, "js-3"), AT, &audit("key.create"))?;
    assert_ne!(added.id, key_id);
    let stored = store.app_record(id)?.and_then(|r| r.keys.into_iter().find(|k| k.id == added.id));
    assert_eq!(stored.as_ref(), Some(&added), "the added key as stored");
    assert!(
        store
            .set_key_platforms(permgate_core::model::AppId(id.0 + 1), key_id, &Platforms::default(), &audit("x"))?
            .is_none(),
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
    // An alert saves its counter as at least the count that passed the threshold, in its
    // transaction: a larger count saved before stays.
    let before = store.audit_events(None, 10_000)?.len();
    store.record_alert(&audit("quota.alert"), &[], Some(&counter(1, 1000, 3)))?;
    store.record_alert(&audit("quota.alert"), &[], Some(&counter(2, 1000, 8)))?;
    // Counted elsewhere (Redis): the event alone.
    store.record_alert(&audit("quota.alert"), &[], None)?;
    assert_eq!(store.audit_events(None, 10_000)?.len(), before + 3);
    store.save_counters(&[counter(2, 1000, 6)])?;
    let mut loaded = store.load_counters(Timestamp(500))?;
    loaded.sort_by_key(|c| c.scope);
    assert_eq!(
        loaded,
        vec![counter(1, 1000, 5), counter(2, 1000, 8), counter(huge_scope, 1000, 9)],
        "larger counts win; ended windows are gone"
    );
    assert_eq!(store.load_counters(Timestamp(1000))?, vec![]);
    store.save_counters(&[])?;
    Ok(())
}

fn blocking_marks_the_owners_apps_changed(store: &dyn Store) -> Result<(), StoreError> {
    let owner = account(store, "owner", Role::Developer)?;
    let a = app(store, owner, &[])?;
    let b = app(store, owner, &[])?;
    let before = store.latest_change()?;
    assert_eq!(store.set_account_blocked(owner, true, &audit("account.block"))?, Some(vec![a, b]));
    assert_eq!(store.changes_since(before)?.1, vec![a, b], "other nodes re-read the owner's apps");
    assert!(store.app_record(a)?.is_some_and(|r| r.owner_blocked));
    assert_eq!(store.set_account_blocked(AccountId(owner.0 + 999), true, &audit("account.block"))?, None);
    assert!(store.set_app_status(b, AppStatus::Blocked, &audit("app.block").app(b))?.is_some());
    store.set_account_blocked(owner, false, &audit("account.unblock"))?;
    let b_now = store.app_record(b)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    assert_eq!((b_now.owner_blocked, b_now.app.status), (false, AppStatus::Blocked));
    let head = last_event(store)?;
    assert!(store.set_app_status(permgate_core::model::AppId(b.0 + 999), AppStatus::Active, &audit("x"))?.is_none());
    assert_eq!(last_event(store)?, head, "no audit event for an app that does not exist");
    // Blocked twice (two admins at once): the status before the first block is kept, so that
    // unblocking restores it rather than `blocked`.
    store.set_app_status(a, AppStatus::Suspended, &audit("app.suspend").app(a))?;
    store.set_app_status(a, AppStatus::Blocked, &audit("app.block").app(a))?;
    store.set_app_status(a, AppStatus::Blocked, &audit("app.block").app(a))?;
    let a_now = store.app_record(a)?.ok_or_else(|| StoreError::NotFound("app".into()))?;
    assert_eq!((a_now.app.status, a_now.app.status_before_block), (AppStatus::Blocked, Some(AppStatus::Suspended)));
    Ok(())
}

// The review workflow, the notification outbox and the audit head.

fn event(action: &str, from: Option<RequestState>, to: RequestState, at: Timestamp) -> RequestEvent {
    RequestEvent {
        at,
        actor: Some(AccountId(1)),
        action: action.into(),
        from,
        to,
        reason_code: None,
        reason: None,
        comment: String::new(),
    }
}

fn new_request(app: AppId, applicant: AccountId, permission: &str) -> NewRequest {
    NewRequest {
        app_id: app,
        permission: permission.into(),
        service_url: "https://shop.example.com".into(),
        reason: "we send order updates".into(),
        usage_scenario: "after checkout".into(),
        requested_limit: Some(5000),
        requested_rule: None,
        applicant,
        event: event("submit", None, RequestState::Submitted, AT),
    }
}

/// A request's audit event: its target names the request once the store knows its id.
fn request_audit(app: AppId, action: &str) -> NewAuditEvent {
    NewAuditEvent::new(AT, Some(AccountId(1)), action, "request:{request_id}".into()).app(app)
}

fn message(app: AppId, recipient: &str) -> NewMessage {
    NewMessage {
        channel: Channel::Email,
        recipient: recipient.into(),
        subject: "Request {request_id} received".into(),
        body: "See /requests/{request_id}".into(),
        app_id: Some(app),
    }
}

fn review_grant(app: AppId, permission: &str) -> NewGrant {
    NewGrant {
        app_id: app,
        permission: permission.into(),
        key_id: None,
        source: GrantSource::Review,
        granted_by: Some(AccountId(1)),
        expires_at: None,
        params: serde_json::json!({}),
        reason: "approved with request {request_id}".into(),
    }
}

/// An evidence file whose bytes hold every byte value, zeros included.
fn evidence_file() -> NewEvidence {
    NewEvidence {
        file_name: "screens.pdf".into(),
        content_type: "application/pdf".into(),
        sha256: "ab".repeat(32),
        bytes: (0..=255).chain([0, 0, 255]).collect(),
    }
}

fn not_found(what: &str) -> StoreError {
    StoreError::NotFound(what.into())
}

/// The newest audit event's seq and hash, read from the chain itself.
fn last_event(store: &dyn Store) -> Result<Option<(i64, String)>, StoreError> {
    Ok(store.audit_events(None, usize::MAX)?.last().map(|e| (e.seq, e.hash.clone())))
}

/// The newest audit event's action and target.
fn last_action(store: &dyn Store) -> Result<Option<(String, String, Option<AppId>)>, StoreError> {
    Ok(store
        .audit_events(None, usize::MAX)?
        .last()
        .map(|e| (e.event.action.clone(), e.event.target.clone(), e.event.app_id)))
}

fn everything() -> RequestFilter {
    RequestFilter { limit: usize::MAX, ..RequestFilter::default() }
}

/// What the store holds, as far as the ports show it: a refused or stale write must leave it as
/// it was.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    audit_head: Option<(i64, String)>,
    audit_events: usize,
    messages: usize,
    requests: usize,
    grants: usize,
    latest_change: i64,
}

fn footprint(store: &dyn Store) -> Result<Footprint, StoreError> {
    Ok(Footprint {
        audit_head: store.audit_head()?,
        audit_events: store.audit_events(None, usize::MAX)?.len(),
        messages: store.messages(None, usize::MAX)?.len(),
        requests: store.requests(&everything())?.len(),
        grants: store.app_records()?.iter().map(|r| r.grants.len()).sum(),
        latest_change: store.latest_change()?,
    })
}

fn accounts_keep_their_email_address(store: &dyn Store) -> Result<(), StoreError> {
    let new = NewAccount {
        name: "erin".into(),
        role: Role::Reviewer,
        email: Some("erin@example.com".into()),
        token_hash: secret::hash("erin"),
    };
    let created = store.create_account(&new, AT, &audit("account.create"))?;
    assert_eq!(
        (created.name.as_str(), created.role, created.email.as_deref()),
        ("erin", Role::Reviewer, Some("erin@example.com"))
    );
    assert_eq!(store.account(created.id)?, Some(created.clone()));
    assert_eq!(store.account_by_token_hash(&secret::hash("erin"))?, Some((created.clone(), secret::hash("erin"))));
    assert_eq!(store.accounts()?, vec![created.clone()]);
    let dana = account(store, "dana", Role::Developer)?;
    assert_eq!(store.account(dana)?.map(|a| a.email), Some(None));
    assert_eq!(
        store.accounts()?.into_iter().map(|a| (a.id, a.email)).collect::<Vec<_>>(),
        [(created.id, Some("erin@example.com".to_owned())), (dana, None)]
    );
    Ok(())
}

fn workflow_settings_are_kept_in_the_app_record(store: &dyn Store) -> Result<(), StoreError> {
    let dana = account(store, "dana", Role::Developer)?;
    let app_id = app(store, dana, &[])?;
    let other = app(store, dana, &[])?;
    let settings = |action: &str| NewAuditEvent::new(AT, Some(dana), action, format!("app:{app_id}")).app(app_id);
    let before = store.latest_change()?;

    assert!(store.agree_eligibility(app_id, dana, AT, &settings("app.eligibility"))?);
    let head = store.audit_head()?;
    assert!(
        !store.agree_eligibility(app_id, dana, Timestamp(AT.0 + 5), &settings("app.eligibility"))?,
        "agreeing twice keeps the first agreement"
    );
    assert_eq!(store.audit_head()?, head, "and records no second agreement");

    let business = Business {
        kind: permgate_core::model::BizKind::Corporate,
        registration_number: "123-45-67890".into(),
        company_name: "Example Ltd".into(),
        verified_at: AT,
        icon_url: None,
    };
    store.set_business(app_id, &business, Some(&review_grant(app_id, "biz_app")), &settings("app.business"))?;
    let renamed = Business { company_name: "Example Corp".into(), ..business.clone() };
    store.set_business(app_id, &renamed, None, &settings("app.business"))?;

    let consent = |scope: &str, level| ConsentSetting {
        scope: scope.into(),
        consent_type: level,
        purpose: format!("to use {scope}"),
        set_at: AT,
    };
    let set = |scope: &str, setting: Option<ConsentSetting>| {
        store.set_consent_item(app_id, scope, setting.as_ref(), &settings("app.consent"))
    };
    set("talk_message", Some(consent("talk_message", ConsentLevel::Optional)))?;
    set("Profile", Some(consent("Profile", ConsentLevel::Required)))?;
    set("age_range", Some(consent("age_range", ConsentLevel::Optional)))?;
    set("email", Some(consent("email", ConsentLevel::OnUse)))?;
    set("email", None)?;
    set("talk_message", Some(consent("talk_message", ConsentLevel::Required)))?;

    let record = store.app_record(app_id)?.ok_or_else(|| not_found("app"))?;
    assert_eq!(record.eligibility, Some(Eligibility { agreed_by: dana, agreed_at: AT }));
    assert_eq!(record.business, Some(renamed));
    assert_eq!(
        record.consent_items,
        vec![
            consent("Profile", ConsentLevel::Required),
            consent("age_range", ConsentLevel::Optional),
            consent("talk_message", ConsentLevel::Required)
        ],
        "byte order, upper case first, whatever the database's collation"
    );
    assert_eq!(
        record.grants.iter().map(|g| (g.permission.as_str(), g.source)).collect::<Vec<_>>(),
        [("biz_app", GrantSource::Review)]
    );

    let records = store.app_records()?;
    let bare = records.iter().find(|r| r.app.id == other).ok_or_else(|| not_found("other app"))?;
    assert_eq!((&bare.business, bare.consent_items.len(), &bare.eligibility), (&None, 0, &None));
    assert_eq!(records.iter().find(|r| r.app.id == app_id), Some(&record), "app_records agrees with app_record");

    assert_eq!(store.changes_since(before)?.1, vec![app_id], "the settings are changes of their app");
    assert_eq!(last_action(store)?, Some(("app.consent".into(), format!("app:{app_id}"), Some(app_id))));
    assert_eq!(store.audit_head()?, last_event(store)?);

    // Removing Biz: the event names what was revoked; a second removal finds nothing and writes
    // nothing (no event, no message).
    let revoke = ["biz_app".to_owned(), "kakao_moment".to_owned()];
    let unset = ["age_range".to_owned(), "gender".to_owned()];
    let remove = |reason: &str| {
        let audit = settings("business.remove").after(serde_json::json!({"revoked": revoke, "reason": reason}));
        store.remove_business(app_id, &revoke, &unset, dana, reason, &[message(app_id, "dana@example.com")], &audit)
    };
    assert_eq!(remove("gone")?, Some(vec!["biz_app".to_owned()]));
    let last = store.audit_events(None, usize::MAX)?.pop().map(|e| e.event.after);
    let held = serde_json::json!({"revoked": ["biz_app"], "consent_items_unset": ["age_range"], "reason": "gone"});
    assert_eq!(last, Some(held), "what was held and set, not asked");
    let (head, sent) = (store.audit_head()?, store.messages(Some(app_id), 10)?.len());
    assert_eq!(remove("again")?, None);
    assert_eq!((store.audit_head()?, store.messages(Some(app_id), 10)?.len()), (head, sent));
    Ok(())
}

fn a_request_is_stored_with_its_evidence_messages_and_grant(store: &dyn Store) -> Result<(), StoreError> {
    let dana = account(store, "dana", Role::Developer)?;
    let a = app(store, dana, &[])?;
    let file = evidence_file();
    let before = store.latest_change()?;
    let mut new = new_request(a, dana, "talk_message");
    new.requested_rule = Some("talk_message_daily".into());
    let first = store.create_request(
        &new,
        Some(&file),
        None,
        &[message(a, "dana@example.com")],
        &request_audit(a, "request.create"),
    )?;
    assert_eq!(
        (first.app_id, first.state, first.permission.as_str(), first.applicant),
        (a, RequestState::Submitted, "talk_message", dana)
    );
    assert_eq!(
        (first.service_url.as_str(), first.reason.as_str(), first.usage_scenario.as_str()),
        ("https://shop.example.com", "we send order updates", "after checkout")
    );
    assert_eq!(
        (first.requested_limit, first.requested_rule.as_deref(), first.grant_id, first.created_at, first.updated_at),
        (Some(5000), Some("talk_message_daily"), None, AT, AT)
    );
    assert_eq!(first.history, vec![event("submit", None, RequestState::Submitted, AT)]);
    assert_eq!(store.request(first.id)?, Some(first.clone()));
    assert_eq!(store.request(first.id + 100)?, None);

    // The evidence file and its bytes.
    let info = first.evidence.clone().ok_or_else(|| not_found("evidence"))?;
    assert_eq!(
        (info.file_name.as_str(), info.content_type.as_str(), info.size, info.sha256.as_str()),
        ("screens.pdf", "application/pdf", 259, &*"ab".repeat(32))
    );
    assert_eq!(store.evidence(info.id)?, Some((info.clone(), file.bytes)));
    assert_eq!(store.evidence(info.id + 100)?, None);

    // The notification, with the placeholder filled, waiting for its first attempt.
    let sent = store.messages(Some(a), 10)?;
    assert_eq!(sent.len(), 1);
    let m = &sent[0];
    assert_eq!(
        (m.channel, m.recipient.as_str(), m.app_id, m.subject.clone(), m.body.clone()),
        (
            Channel::Email,
            "dana@example.com",
            Some(a),
            format!("Request {} received", first.id),
            format!("See /requests/{}", first.id)
        )
    );
    assert_eq!(
        (m.state, m.attempts, m.created_at, m.next_attempt_at, m.delivered_at, m.last_error.as_deref()),
        (DeliveryState::Pending, 0, AT, Some(AT), None, None)
    );

    // Its audit event names it, and its app changed.
    assert_eq!(last_action(store)?, Some(("request.create".into(), format!("request:{}", first.id), Some(a))));
    assert_eq!(store.changes_since(before)?.1, vec![a], "a request's write is a change of its app");
    assert_eq!(store.audit_head()?, last_event(store)?);

    // Approved at once: the grant is written with the request and names it.
    let mut instant = new_request(a, dana, "profile");
    instant.event = event("submit", None, RequestState::Approved, AT);
    let approved = store.create_request(
        &instant,
        None,
        Some((&review_grant(a, "profile"), &Requirements::default())),
        &[],
        &request_audit(a, "request.create"),
    )?;
    assert_eq!((approved.state, approved.evidence.as_ref()), (RequestState::Approved, None));
    let record = store.app_record(a)?.ok_or_else(|| not_found("app"))?;
    let held = record.grants.iter().find(|g| g.permission == "profile").ok_or_else(|| not_found("grant"))?;
    assert_eq!(approved.grant_id, Some(held.id));
    assert_eq!(
        (held.reason.clone(), held.source, held.granted_by, held.granted_at),
        (format!("approved with request {}", approved.id), GrantSource::Review, Some(AccountId(1)), AT)
    );
    assert_eq!(store.messages(None, usize::MAX)?.len(), 1, "no message was asked for");
    assert_eq!(last_action(store)?.map(|(_, target, _)| target), Some(format!("request:{}", approved.id)));
    assert_eq!(verify_chain(&store.audit_events(None, usize::MAX)?), Ok(()));
    assert_eq!(store.audit_head()?, last_event(store)?);
    Ok(())
}

fn one_open_request_per_app_and_permission(store: &dyn Store) -> Result<(), StoreError> {
    let dana = account(store, "dana", Role::Developer)?;
    let (a, b) = (app(store, dana, &[])?, app(store, dana, &[])?);
    let ask = |app: AppId, permission: &str| {
        store.create_request(
            &new_request(app, dana, permission),
            Some(&evidence_file()),
            None,
            &[message(app, "dana@example.com")],
            &request_audit(app, "request.create"),
        )
    };
    let first = ask(a, "talk_message")?;
    let evidence_id = first.evidence.as_ref().map(|e| e.id).ok_or_else(|| not_found("evidence"))?;

    // Refused in every open state, and a refusal writes nothing: no request, evidence, message,
    // audit event or change.
    let mut seen = first.clone();
    for (action, next) in [
        ("start_review", RequestState::InReview),
        ("hold", RequestState::OnHold),
        ("withdraw", RequestState::Withdrawn),
    ] {
        let before = footprint(store)?;
        match ask(a, "talk_message") {
            Err(StoreError::Conflict(m)) => {
                assert_eq!(m, "the app already has an open request for `talk_message`", "while {:?}", seen.state);
            }
            other => unreachable!("expected a conflict while {:?}, got {other:?}", seen.state),
        }
        assert_eq!(footprint(store)?, before, "a refused request writes nothing");
        for id in evidence_id + 1..=evidence_id + 3 {
            assert_eq!(store.evidence(id)?, None, "no evidence file is left behind");
        }
        let step = Transition {
            request_id: first.id,
            from: seen.state,
            event: RequestEvent {
                reason_code: (next == RequestState::OnHold).then(|| "evidence_missing".into()),
                reason: (next == RequestState::OnHold).then(|| "Attach the screens".into()),
                ..event(action, Some(seen.state), next, AT)
            },
        };
        seen = store
            .transition_request(&step, None, &[], &request_audit(a, "request.step"))?
            .ok_or_else(|| not_found("the transition"))?;
        assert_eq!(seen.history.last(), Some(&step.event));
    }
    assert_eq!(seen.state, RequestState::Withdrawn);
    assert_eq!(
        seen.history.iter().map(|e| (e.action.as_str(), e.reason_code.as_deref())).collect::<Vec<_>>(),
        [("submit", None), ("start_review", None), ("hold", Some("evidence_missing")), ("withdraw", None)]
    );

    // Another app, or another permission, may apply; and a closed request lets the app apply again.
    let on_b = ask(b, "talk_message")?;
    let other = ask(a, "profile")?;
    let again = ask(a, "talk_message")?;
    assert_eq!(
        [&on_b, &other, &again].map(|r| (r.app_id, r.permission.as_str(), r.state)),
        [
            (b, "talk_message", RequestState::Submitted),
            (a, "profile", RequestState::Submitted),
            (a, "talk_message", RequestState::Submitted)
        ]
    );
    assert!(again.id > first.id);
    assert_eq!(store.requests(&everything())?.len(), 4);
    assert_eq!(store.messages(None, usize::MAX)?.len(), 4, "one message per stored request");
    assert_eq!(store.audit_head()?, last_event(store)?);
    Ok(())
}

fn a_transition_applies_only_from_the_state_seen(store: &dyn Store) -> Result<(), StoreError> {
    let dana = account(store, "dana", Role::Developer)?;
    let a = app(store, dana, &[])?;
    let first = store.create_request(&new_request(a, dana, "talk_message"), None, None, &[], &request_audit(a, "c"))?;

    let later = Timestamp(AT.0 + 60);
    let review = Transition {
        request_id: first.id,
        from: RequestState::Submitted,
        event: event("start_review", Some(RequestState::Submitted), RequestState::InReview, later),
    };
    let changes = store.latest_change()?;
    let in_review = store
        .transition_request(&review, None, &[message(a, "dana@example.com")], &request_audit(a, "request.review"))?
        .ok_or_else(|| not_found("the transition"))?;
    assert_eq!(
        (in_review.id, in_review.state, in_review.created_at, in_review.updated_at, in_review.grant_id),
        (first.id, RequestState::InReview, AT, later, None)
    );
    assert_eq!(in_review.history, vec![first.history[0].clone(), review.event.clone()]);
    assert_eq!(store.request(first.id)?, Some(in_review.clone()));
    let sent = store.messages(None, usize::MAX)?;
    assert_eq!(
        sent.iter().map(|m| (m.recipient.as_str(), m.created_at, m.next_attempt_at)).collect::<Vec<_>>(),
        [("dana@example.com", later, Some(later))]
    );
    assert_eq!(last_action(store)?.map(|(action, _, app)| (action, app)), Some(("request.review".into(), Some(a))));
    assert_eq!(store.changes_since(changes)?.1, vec![a]);
    assert_eq!(store.audit_head()?, last_event(store)?);

    // The same transition again is stale: nothing is written, not even its grant or message.
    let before = footprint(store)?;
    let stale = store.transition_request(
        &review,
        Some((&review_grant(a, "talk_message"), &Requirements::default())),
        &[message(a, "dana@example.com")],
        &request_audit(a, "request.review"),
    )?;
    assert_eq!(stale, None);
    assert_eq!(footprint(store)?, before, "a stale transition writes nothing");
    assert_eq!(store.request(first.id)?, Some(in_review.clone()));
    let missing = Transition { request_id: first.id + 1000, ..review.clone() };
    assert_eq!(store.transition_request(&missing, None, &[], &request_audit(a, "x"))?, None);
    assert_eq!(footprint(store)?, before, "nor does one of a missing request");

    // The approval writes its grant, bound to the request.
    let approve = Transition {
        request_id: first.id,
        from: RequestState::InReview,
        event: RequestEvent {
            comment: "looks fine".into(),
            ..event("approve", Some(RequestState::InReview), RequestState::Approved, Timestamp(later.0 + 1))
        },
    };
    let grant = NewGrant { reason: "approved".into(), ..review_grant(a, "talk_message") };
    // Its prerequisites are checked again in the transaction: one gone since the service looked
    // (Biz removed, the last channel disconnected) refuses the grant and writes nothing.
    let unmet = [
        (Requirements { permissions: vec!["biz_app".into()], ..Requirements::default() }, "`biz_app`"),
        (Requirements { channel_connected: true, ..Requirements::default() }, "Channel"),
        (Requirements { consent_items: vec!["friends".into()], ..Requirements::default() }, "`friends`"),
    ];
    for (requires, named) in &unmet {
        match store.transition_request(&approve, Some((&grant, requires)), &[], &request_audit(a, "request.approve")) {
            Err(StoreError::Conflict(m)) => assert!(m.contains(named), "{m}"),
            other => unreachable!("{requires:?}: {other:?}"),
        }
        assert_eq!(footprint(store)?, before, "{requires:?}: nothing written");
    }
    // Granted meanwhile another way (an operator): not granted twice. (A grant ending before
    // `not_held_after`, the one a renewal renews, does not stand in the way: the renewal tests
    // of the services show it.)
    let operator = NewGrant { source: GrantSource::Operator, ..review_grant(a, "talk_message") };
    store.insert_grant(&operator, later, &audit("grant.create"))?;
    let once = Requirements { not_held_after: Some(Timestamp(later.0 + 100)), ..Requirements::default() };
    match store.transition_request(&approve, Some((&grant, &once)), &[], &request_audit(a, "request.approve")) {
        Err(StoreError::Conflict(m)) => assert!(m.contains("holds it already"), "{m}"),
        other => unreachable!("{other:?}"),
    }
    assert_eq!(store.request(first.id)?.map(|r| r.state), Some(RequestState::InReview), "nothing written");
    let of = GrantOf { permission: "talk_message", key: None, rule: None };
    store.revoke_grant(a, of, Cascade::default(), AccountId(1), "meanwhile", later, &audit("grant.revoke"))?;
    let done = store
        .transition_request(&approve, Some((&grant, &once)), &[], &request_audit(a, "request.approve"))?
        .ok_or_else(|| not_found("the approval"))?;
    assert_eq!((done.state, done.updated_at), (RequestState::Approved, Timestamp(later.0 + 1)));
    let record = store.app_record(a)?.ok_or_else(|| not_found("app"))?;
    assert_eq!(record.grants.len(), 1);
    let held = &record.grants[0];
    assert_eq!(done.grant_id, Some(held.id));
    assert_eq!(
        (held.permission.as_str(), held.reason.as_str(), held.granted_at),
        ("talk_message", "approved", Timestamp(later.0 + 1))
    );
    assert_eq!(
        done.history.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["submit", "start_review", "approve"]
    );
    assert_eq!(done.history[2].comment, "looks fine");
    assert_eq!(store.request(first.id)?, Some(done.clone()));
    assert_eq!(store.request(first.id + 1000)?, None);
    assert_eq!(store.audit_head()?, last_event(store)?);
    Ok(())
}

fn requests_are_listed_newest_first_and_filtered(store: &dyn Store) -> Result<(), StoreError> {
    let dana = account(store, "dana", Role::Developer)?;
    let (a, b) = (app(store, dana, &[])?, app(store, dana, &[])?);
    let first = store.create_request(
        &new_request(a, dana, "talk_message"),
        Some(&evidence_file()),
        None,
        &[],
        &request_audit(a, "c"),
    )?;
    let info = first.evidence.clone().ok_or_else(|| not_found("evidence"))?;
    let on_b = store.create_request(&new_request(b, dana, "talk_message"), None, None, &[], &request_audit(b, "c"))?;
    let mut instant = new_request(a, dana, "profile");
    instant.event = event("submit", None, RequestState::Approved, AT);
    let approved = store.create_request(
        &instant,
        None,
        Some((&review_grant(a, "profile"), &Requirements::default())),
        &[],
        &request_audit(a, "c"),
    )?;
    for (action, from, to) in [
        ("start_review", RequestState::Submitted, RequestState::InReview),
        ("approve", RequestState::InReview, RequestState::Approved),
    ] {
        let t = Transition { request_id: first.id, from, event: event(action, Some(from), to, AT) };
        store.transition_request(&t, None, &[], &request_audit(a, action))?.ok_or_else(|| not_found(action))?;
    }
    let again = store.create_request(&new_request(a, dana, "talk_message"), None, None, &[], &request_audit(a, "c"))?;

    let ids = |filter: RequestFilter| -> Result<Vec<i64>, StoreError> {
        Ok(store.requests(&filter)?.iter().map(|r| r.id).collect())
    };
    let any = RequestFilter { limit: 100, ..RequestFilter::default() };
    assert_eq!(ids(any.clone())?, [again.id, approved.id, on_b.id, first.id]);
    let listed = store.requests(&any)?;
    assert!(listed.iter().all(|r| r.history.is_empty()), "listings carry no history");
    assert_eq!(listed.last().map(|r| (r.state, r.evidence.clone())), Some((RequestState::Approved, Some(info))));
    assert_eq!(listed.first().map(|r| (r.app_id, r.permission.as_str())), Some((a, "talk_message")));
    assert_eq!(ids(RequestFilter { limit: 2, ..any.clone() })?, [again.id, approved.id]);
    assert_eq!(ids(RequestFilter { state: Some(RequestState::Submitted), ..any.clone() })?, [again.id, on_b.id]);
    assert_eq!(ids(RequestFilter { state: Some(RequestState::Approved), ..any.clone() })?, [approved.id, first.id]);
    assert_eq!(ids(RequestFilter { state: Some(RequestState::InReview), ..any.clone() })?, Vec::<i64>::new());
    assert_eq!(ids(RequestFilter { app_id: Some(b), ..any.clone() })?, [on_b.id]);
    assert_eq!(ids(RequestFilter { app_id: Some(a), ..any.clone() })?, [again.id, approved.id, first.id]);
    assert_eq!(ids(RequestFilter { among_apps: Some(vec![b]), ..any.clone() })?, [on_b.id]);
    assert_eq!(
        ids(RequestFilter { among_apps: Some(vec![a, b]), ..any.clone() })?,
        [again.id, approved.id, on_b.id, first.id]
    );
    assert_eq!(ids(RequestFilter { among_apps: Some(vec![]), ..any.clone() })?, Vec::<i64>::new());
    assert_eq!(
        ids(RequestFilter {
            state: Some(RequestState::Submitted),
            app_id: Some(a),
            among_apps: Some(vec![a, b]),
            ..any.clone()
        })?,
        [again.id]
    );
    assert_eq!(ids(RequestFilter { app_id: Some(a), among_apps: Some(vec![b]), ..any })?, Vec::<i64>::new());
    Ok(())
}

fn outbox_messages_are_leased_retried_and_finished(store: &dyn Store) -> Result<(), StoreError> {
    let dana = account(store, "dana", Role::Developer)?;
    let (a, b) = (app(store, dana, &[])?, app(store, dana, &[])?);
    let messages = [message(a, "one@example.com"), message(a, "two@example.com"), message(a, "three@example.com")];
    store.create_request(&new_request(a, dana, "talk_message"), None, None, &messages, &request_audit(a, "c"))?;
    let mut stored = store.messages(Some(a), 10)?;
    stored.reverse();
    let ids: Vec<i64> = stored.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(
        stored.iter().map(|m| m.recipient.as_str()).collect::<Vec<_>>(),
        ["one@example.com", "two@example.com", "three@example.com"]
    );
    assert_eq!(store.messages(Some(b), 10)?, vec![]);
    assert_eq!(store.messages(None, 2)?.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[2], ids[1]]);

    let now = Timestamp(AT.0 + 10);
    assert_eq!(store.claim_messages(Timestamp(AT.0 - 1), 10, 60)?, vec![], "not due before its creation");
    let claimed = store.claim_messages(now, 2, 60)?;
    assert_eq!(claimed, stored[..2], "the oldest first, as stored");
    let rest = store.claim_messages(now, 10, 60)?;
    assert_eq!(rest.iter().map(|m| m.id).collect::<Vec<_>>(), ids[2..], "a leased message is not claimed again");
    assert_eq!(store.claim_messages(Timestamp(now.0 + 59), 10, 60)?, vec![], "every lease still holds");

    // The first is delivered, the second failed and waits, the third's lease expires.
    store.finish_attempt(ids[0], DeliveryState::Delivered, None, None, Timestamp(now.0 + 1))?;
    let retry_at = Timestamp(now.0 + 100);
    store.finish_attempt(ids[1], DeliveryState::Pending, Some(retry_at), Some("smtp down"), Timestamp(now.0 + 1))?;
    let by_id = |id: i64| -> Result<_, StoreError> {
        store.messages(None, 10)?.into_iter().find(|m| m.id == id).ok_or_else(|| not_found("message"))
    };
    let delivered = by_id(ids[0])?;
    assert_eq!(
        (delivered.state, delivered.attempts, delivered.delivered_at, delivered.next_attempt_at),
        (DeliveryState::Delivered, 1, Some(Timestamp(now.0 + 1)), None)
    );
    let failed = by_id(ids[1])?;
    assert_eq!(
        (failed.state, failed.attempts, failed.next_attempt_at, failed.delivered_at, failed.last_error.as_deref()),
        (DeliveryState::Pending, 1, Some(retry_at), None, Some("smtp down"))
    );
    assert_eq!(by_id(ids[2])?.attempts, 0, "a claim is not an attempt");

    let expired = store.claim_messages(Timestamp(now.0 + 60), 10, 60)?;
    assert_eq!(expired.iter().map(|m| m.id).collect::<Vec<_>>(), ids[2..], "released by its lease's expiry");
    let due = store.claim_messages(retry_at, 10, 60)?;
    assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[1]], "the retry is due, the new lease holds");
    assert_eq!((due[0].attempts, due[0].last_error.as_deref()), (1, Some("smtp down")));

    // A later attempt without an error keeps the last one; a give-up is final.
    store.finish_attempt(ids[1], DeliveryState::Pending, Some(retry_at), None, retry_at)?;
    let retried = by_id(ids[1])?;
    assert_eq!((retried.attempts, retried.last_error.as_deref()), (2, Some("smtp down")));
    store.finish_attempt(ids[1], DeliveryState::Failed, None, Some("gave up"), retry_at)?;
    let given_up = by_id(ids[1])?;
    assert_eq!(
        (given_up.state, given_up.attempts, given_up.last_error.as_deref(), given_up.delivered_at),
        (DeliveryState::Failed, 3, Some("gave up"), None)
    );
    assert_eq!(
        store.claim_messages(Timestamp(now.0 + 10_000), 10, 60)?.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[2..],
        "delivered and failed messages are never claimed again"
    );
    Ok(())
}

fn the_audit_head_is_the_newest_event(store: &dyn Store) -> Result<(), StoreError> {
    assert_eq!(store.audit_head()?, None, "a fresh store has no head");
    let owner = account(store, "owner", Role::Developer)?;
    let mut heads = vec![store.audit_head()?];
    let id = app(store, owner, &[key(KeyKind::RestApi, "r")])?;
    heads.push(store.audit_head()?);
    store.record_event(&audit("quota.alert"))?;
    heads.push(store.audit_head()?);
    store.set_product(id, "local", true, &audit("product.set").app(id))?;
    heads.push(store.audit_head()?);
    store.create_request(&new_request(id, owner, "talk_message"), None, None, &[], &request_audit(id, "c"))?;
    heads.push(store.audit_head()?);
    let events = store.audit_events(None, usize::MAX)?;
    assert_eq!(heads, events.iter().map(|e| Some((e.seq, e.hash.clone()))).collect::<Vec<_>>());
    assert_eq!(heads.iter().flatten().map(|(seq, _)| *seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);

    // Writes that fail or change nothing leave the head where it was.
    assert!(app(store, owner, &[key(KeyKind::RestApi, "r")]).is_err());
    let stale = Transition {
        request_id: 999,
        from: RequestState::Submitted,
        event: event("start_review", Some(RequestState::Submitted), RequestState::InReview, AT),
    };
    assert_eq!(store.transition_request(&stale, None, &[], &request_audit(id, "x"))?, None);
    assert_eq!(store.audit_head()?, heads.last().cloned().flatten());
    assert_eq!(store.audit_head()?, last_event(store)?);
    Ok(())
}
