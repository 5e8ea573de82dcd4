//! Filtering an upstream's JSON response: fields the catalog guards are removed when the app may
//! not receive them. A field guarded by a consent item is kept only if the user's token carries
//! that consent (and then Kakao's `*_needs_agreement` flag says `true` when it is withheld); a
//! field guarded by a response permission (e.g. `account_id`) only if the app holds it.

use serde_json::Value;

use crate::decision::Decision;
use crate::snapshot::Snapshot;
use crate::time::Timestamp;

/// Whether the decision's API has guarded response fields (only then is the body read).
pub fn guards_fields(snapshot: &Snapshot, decision: &Decision) -> bool {
    let Some(api) = decision.api else { return false };
    snapshot.catalog().response_fields.iter().any(|f| f.api == api)
}

/// Removes what the app may not receive from `body`; returns the paths removed.
pub fn filter(snapshot: &Snapshot, decision: &Decision, now: Timestamp, body: &mut Value) -> Vec<String> {
    let catalog = snapshot.catalog();
    let (Some(api), Some(app)) = (decision.api, decision.app_id.and_then(|a| snapshot.app(a))) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for f in catalog.response_fields.iter().filter(|f| f.api == api) {
        let permitted = f
            .permission
            .as_deref()
            .is_none_or(|p| catalog.permission_index(p).is_some_and(|i| app.holds(i, decision.key_id, now)));
        // Consent is known from user tokens; calls with an admin key carry none to check.
        let consented = f
            .consent_item
            .as_deref()
            .is_none_or(|c| decision.user.is_none() || decision.consented.iter().any(|s| s == c));
        if permitted && consented {
            continue;
        }
        if take(body, &f.field) {
            removed.push(f.field.clone());
        }
        if !consented && let Some(flag) = &f.needs_agreement_field {
            set_true(body, flag);
        }
    }
    removed
}

/// Removes the value at a dotted path; says whether there was one.
fn take(body: &mut Value, path: &str) -> bool {
    let (parent, last) = match path.rsplit_once('.') {
        Some((parent, last)) => (walk(body, parent), last),
        None => (Some(body), path),
    };
    parent.and_then(Value::as_object_mut).and_then(|o| o.remove(last)).is_some()
}

/// Sets a dotted path to `true` where its parent object exists.
fn set_true(body: &mut Value, path: &str) {
    let (parent, last) = match path.rsplit_once('.') {
        Some((parent, last)) => (walk(body, parent), last),
        None => (Some(body), path),
    };
    if let Some(o) = parent.and_then(Value::as_object_mut) {
        o.insert(last.to_owned(), Value::Bool(true));
    }
}

fn walk<'a>(mut v: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    for part in path.split('.') {
        v = v.as_object_mut()?.get_mut(part)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_are_removed_and_flags_set() {
        let mut v = serde_json::json!({"id": 1, "kakao_account": {"email": "a@b.c", "email_needs_agreement": false}});
        assert!(take(&mut v, "kakao_account.email"));
        assert!(!take(&mut v, "kakao_account.phone_number"));
        assert!(!take(&mut v, "nowhere.email"));
        set_true(&mut v, "kakao_account.email_needs_agreement");
        set_true(&mut v, "nowhere.flag");
        assert_eq!(v, serde_json::json!({"id": 1, "kakao_account": {"email_needs_agreement": true}}));
        assert!(take(&mut v, "id"));
    }
}
