//! The quick lane: the usual call, decided and counted without the general path's machinery. A
//! REST API key (`KakaoAK` and 32 hex digits, as Kakao writes it) of an active, unblocked app
//! without paid usage (a test app's calls restricted to its original's members, as always)
//! calls an API whose checks are all bits of the app's first line ([`QuickApi`]), holds every
//! permission the API needs without expiry and app-wide, and is within every quota rule, all of
//! them counted per app. Anything else (an unusual header, a permission held until a date or by
//! one key, a used-up rule, an explanation asked for) is handed to the general path, having changed nothing, with what the lane found on the
//! way (the route, the key); the general path then answers as if the lane were not there. A test
//! decides the same calls both ways and compares the answers and the counts.
//!
//! [`QuickApi`]: crate::catalog::QuickApi

use super::{Lead, PerApp, Query, QuotaAlert, QuotaState, note_activity};
use crate::model::{AppId, KeyId, KeyKind};
use crate::route::Method;
use crate::snapshot::Snapshot;
use crate::time::Timestamp;

/// An allowed and counted call, as the quick lane found it: the parts of its verdict that are not
/// the same for every such call (made with a REST API key, holding every permission).
pub(super) struct Allowed {
    pub app: AppId,
    pub api: &'static str,
    pub key: KeyId,
    /// A test app's call: for the original app's members only.
    pub members_only: bool,
    pub quota: Option<QuotaState>,
}

/// Decides and counts `query` (consumed, in memory, without explanation), if the quick lane takes
/// it, adding the quota thresholds it passed to `alerts`; else, having changed nothing, what it
/// found for the general path.
pub(super) fn decide_and_count<'s>(
    snapshot: &'s Snapshot,
    query: &Query<'_>,
    now: Timestamp,
    alerts: &mut Vec<QuotaAlert>,
) -> Result<Allowed, Lead<'s>> {
    let mut lead = Lead::default();
    let method = Method::parse(query.method).filter(|_| query.path.starts_with('/'));
    let Some(method) = method else { return Err(lead) };
    let catalog = snapshot.catalog();
    let Some(api) = catalog.route(method, query.path) else { return Err(lead) };
    lead.route = Some((method, api));
    let Some(presented) = query.authorization.and_then(|h| h.strip_prefix("KakaoAK ")) else { return Err(lead) };
    let Some((app, key, kind)) = snapshot.find_hex_key(presented) else { return Err(lead) };
    lead.key = Some((app, key, kind));
    let Some(masks) = api.quick.as_ref() else { return Err(lead) };
    // A test app is served, restricted to its original's members.
    let members_only = app.quick_test();
    // Status, owner and paid usage: one bit of the first line; the sets' first words are there
    // too.
    let (plain, consent, products) = app.quick_sets();
    if kind != KeyKind::RestApi
        || !app.quick()
        || plain & masks.permissions != masks.permissions
        || consent & masks.consent_items != masks.consent_items
        || products & masks.product == 0
    {
        return Err(lead);
    }
    if !PerApp::takes(api) {
        return Err(lead);
    }
    let mut plan = PerApp::plan(catalog, api, now);
    plan.raise(app, api, now);
    let mut meter = app.meter.lock();
    let Ok(least) = plan.count(&mut meter, catalog, app, api, alerts) else {
        return Err(Lead { used_up: true, ..lead });
    };
    note_activity(&mut meter, app, api, true, Some(key), &[], now);
    let quota = plan.state(catalog, api, least);
    Ok(Allowed { app: app.id, api: api.static_id, key, members_only, quota })
}
