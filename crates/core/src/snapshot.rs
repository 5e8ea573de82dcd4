//! The in-memory state decisions are made from: the catalog, every app with its keys, products
//! and grants, and indexes from key to app. Built once from the store at start, then patched app by
//! app whenever a write changes an app, so the next call sees the change without a database read.

use crate::fast_hash::FastMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use crate::catalog::{Activation, Catalog};
use crate::credential::TokenVerifier;
use crate::meter::Meter;
use crate::model::{AccountId, AppId, AppRecord, AppStatus, KeyId, KeyKind, Platforms};
use crate::secret;
use crate::time::Timestamp;

/// One key as the engine sees it.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub id: KeyId,
    pub kind: KeyKind,
    pub platforms: Platforms,
}

/// A permission held, resolved to the catalog's index.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    pub permission: usize,
    /// Bound to one key (e.g. `multi_app`); `None` for the whole app.
    pub key: Option<KeyId>,
    pub expires_at: Option<Timestamp>,
}

/// A quota limit raised by a grant (`talk_share_quota`, `increased_quota`).
#[derive(Debug, Clone, Copy, Default)]
pub struct QuotaOverride {
    /// The rule's catalog index.
    pub rule: u32,
    pub limit: u64,
    /// When it stops raising (Unix seconds; `i64::MAX`: never). 24 bytes: two fill a line.
    pub until: i64,
}

/// An app's quota overrides on a line of their own (two inline): a counted call reads them if
/// the app has any.
#[derive(Debug, Clone, Default)]
#[repr(align(64))]
pub struct Overrides(pub crate::small::SmallVec<QuotaOverride, 2>);

/// Facts about an app entry's later lines, kept on its first: a bit each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Fast(u8);

impl Fast {
    /// Active, its owner not blocked, without paid usage: the app may take the quick lane.
    const QUICK: u8 = 1;
    /// It has quota overrides (current or expired).
    const OVERRIDES: u8 = 2;
    /// A test app: its calls are for its original's members only.
    const TEST: u8 = 4;

    fn of(entry: &AppEntry) -> Fast {
        let quick = entry.status == AppStatus::Active && !entry.owner_blocked && entry.paid.is_none();
        let overrides = !entry.quota_overrides.0.is_empty();
        let test = entry.original.is_some();
        Fast((u8::from(quick) * Self::QUICK) | (u8::from(overrides) * Self::OVERRIDES) | (u8::from(test) * Self::TEST))
    }
}

/// Paid usage, resolved to rule indexes.
#[derive(Debug, Clone)]
pub struct PaidEntry {
    pub rules: Vec<usize>,
    pub daily_cap: u64,
    pub monthly_cap: u64,
}

/// One app as the engine sees it (`repr(C)` keeps the fields in this order). The quick lane
/// reads and writes its first two lines and nothing else (unless the app has quota overrides):
/// the first holds the id, what the lane checks (copies of the low words of three sets, and
/// [`Fast`]'s bits), the meter's lock word, its last call and calls; the second the meter's rule
/// counters. A layout test pins this.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub struct AppEntry {
    pub id: AppId,
    /// The first 64 bits of `plain` and `consent_set`, and the first 32 of `products_active`
    /// ([`AppEntry::derive`] keeps them).
    quick_plain: u64,
    quick_consent: u64,
    quick_products: u32,
    /// What the quick lane needs to know of the fields past the first line, worked out when the
    /// entry is prepared (see [`Fast`]).
    fast: Fast,
    /// Its own quota counters and its activity, carried over when the entry is patched: locked
    /// by every counted call.
    pub meter: Meter,
    pub status: AppStatus,
    pub owner_blocked: bool,
    /// Which products are activated, by catalog index.
    pub products_active: BitSet,
    /// The permissions held app-wide without an expiry (own and inherited), by catalog index:
    /// the common case of [`AppEntry::holds`], answered without reading `held`.
    pub plain: BitSet,
    /// Which of the catalog's consent items (by index) the app has set.
    pub consent_set: BitSet,
    /// Boxed: few apps have paid usage, and every entry would carry its room.
    pub paid: Option<Box<PaidEntry>>,
    /// Inline for the usual one or two; read by a counted call only if there are any
    /// ([`AppEntry::has_overrides`]).
    pub quota_overrides: Overrides,
    /// For a test app: the app it tests. Its calls are for the original's members only.
    pub original: Option<AppId>,
    pub owner: AccountId,
    pub keys: Vec<KeyEntry>,
    /// The app's own grants.
    pub held: Vec<Held>,
    /// For a test app, its original's grants (empty otherwise): it holds both.
    pub inherited: Vec<Held>,
    /// Where its keys are indexed, to unindex exactly them.
    lookups: Vec<Lookup>,
}

/// Where one key of an app is indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lookup {
    Hex(crate::key_table::RawKey),
    Text(Box<str>),
    /// The SHA-256 of a secret key (admin keys are stored hashed).
    Secret([u8; 32]),
}

/// `text` as the key table indexes it, if it is a Kakao-style key (32 lowercase hex digits, as
/// permgate issues them).
fn hex_key(text: &str) -> Option<crate::key_table::RawKey> {
    crate::key_table::raw_key(text).filter(|_| text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// The apps, each in a slot of one vector (a key points at its app's slot), with an index by id.
/// A free slot holds a vacant entry rather than `None`: whether an `Option` is set would be read
/// from wherever the compiler puts its niche (a `Vec` field lines away), a second cache line per
/// decision.
#[derive(Debug, Default)]
pub(crate) struct Apps {
    slots: Vec<AppEntry>,
    by_id: FastMap<AppId, u32>,
    free: Vec<u32>,
}

/// The id of a free slot's entry.
const VACANT: AppId = AppId(i64::MIN);

impl Apps {
    fn get(&self, id: &AppId) -> Option<&AppEntry> {
        self.by_id.get(id).and_then(|&s| self.slot(s))
    }

    fn get_mut(&mut self, id: &AppId) -> Option<&mut AppEntry> {
        let s = *self.by_id.get(id)?;
        self.slots.get_mut(s as usize).filter(|e| e.id != VACANT)
    }

    fn slot(&self, s: u32) -> Option<&AppEntry> {
        self.slots.get(s as usize).filter(|e| e.id != VACANT)
    }

    fn insert(&mut self, entry: AppEntry) -> u32 {
        let id = entry.id;
        if let Some(&s) = self.by_id.get(&id) {
            self.slots[s as usize] = entry;
            return s;
        }
        let s = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = entry;
                s
            }
            None => {
                self.slots.push(entry);
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.by_id.insert(id, s);
        s
    }

    fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        self.by_id.reserve(additional);
    }

    fn remove(&mut self, id: &AppId) -> Option<AppEntry> {
        let s = self.by_id.remove(id)?;
        let entry = self.slots.get_mut(s as usize).map(|e| std::mem::replace(e, AppEntry::vacant()));
        self.free.push(s);
        entry
    }

    fn values(&self) -> impl Iterator<Item = &AppEntry> {
        self.slots.iter().filter(|e| e.id != VACANT)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut AppEntry> {
        self.slots.iter_mut().filter(|e| e.id != VACANT)
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// A set of small indexes: the first 64 in one word, kept inline; more only for catalogs that
/// declare more items (behind a pointer, so that the set is two words).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BitSet {
    low: u64,
    #[expect(clippy::box_collection, reason = "a thin pointer keeps the set two words (a boxed slice would be three)")]
    high: Option<Box<Vec<u64>>>,
}

impl BitSet {
    pub fn insert(&mut self, i: usize) {
        if i < 64 {
            self.low |= 1 << i;
        } else {
            let (word, bit) = (i / 64 - 1, i % 64);
            let high = self.high.get_or_insert_with(Box::default);
            if high.len() <= word {
                high.resize(word + 1, 0);
            }
            high[word] |= 1 << bit;
        }
    }

    /// The first 64 indexes, as bits.
    pub(crate) fn low(&self) -> u64 {
        self.low
    }

    pub fn contains(&self, i: usize) -> bool {
        if i < 64 {
            self.low & (1 << i) != 0
        } else {
            self.high.as_ref().and_then(|h| h.get(i / 64 - 1)).is_some_and(|w| w & (1 << (i % 64)) != 0)
        }
    }
}

impl AppEntry {
    /// Whether the app may take the quick lane as far as its own state goes: active, its owner
    /// not blocked, no paid usage. Read off the first line.
    pub fn quick(&self) -> bool {
        self.fast.0 & Fast::QUICK != 0
    }

    /// Whether the app has quota overrides (current or expired). Read off the first line.
    pub fn has_overrides(&self) -> bool {
        self.fast.0 & Fast::OVERRIDES != 0
    }

    /// Whether it is a test app (`original` is set), read off the first line.
    pub fn quick_test(&self) -> bool {
        self.fast.0 & Fast::TEST != 0
    }

    /// The first 64 bits of `plain` and `consent_set` and the first 32 of `products_active`,
    /// read off the first line.
    pub fn quick_sets(&self) -> (u64, u64, u32) {
        (self.quick_plain, self.quick_consent, self.quick_products)
    }

    /// A test app's grants of its original, `held`: what it holds follows them.
    fn inherit(&mut self, held: &[Held]) {
        self.inherited.clear();
        self.inherited.extend_from_slice(held);
        self.plain = plain_set(&self.held, &self.inherited);
        self.derive();
    }

    /// Works out what the first line repeats of the later ones ([`Fast`], the sets' low bits):
    /// whenever the entry is prepared or its sets change.
    fn derive(&mut self) {
        self.fast = Fast::of(self);
        self.quick_plain = self.plain.low();
        self.quick_consent = self.consent_set.low();
        // Only the first 32 products: a quick API's product is among them.
        self.quick_products = self.products_active.low() as u32;
    }

    /// A free slot's entry (allocates nothing).
    fn vacant() -> AppEntry {
        AppEntry {
            id: VACANT,
            status: AppStatus::Blocked,
            owner_blocked: true,
            quick_plain: 0,
            quick_consent: 0,
            quick_products: 0,
            fast: Fast::default(),
            products_active: BitSet::default(),
            plain: BitSet::default(),
            consent_set: BitSet::default(),
            original: None,
            owner: AccountId(0),
            quota_overrides: Overrides::default(),
            meter: Meter::default(),
            keys: Vec::new(),
            held: Vec::new(),
            inherited: Vec::new(),
            paid: None,
            lookups: Vec::new(),
        }
    }

    /// The limit of rule `rule` for this app now: the catalog's, or the highest granted one.
    pub fn quota_limit(&self, rule: usize, default: u64, now: Timestamp) -> u64 {
        if self.has_overrides() { self.raised_limit(rule, default, now) } else { default }
    }

    /// [`AppEntry::quota_limit`] through the overrides. Not inlined: the compiler would read
    /// their line ahead of the branch, a cache miss on every counted call.
    #[inline(never)]
    fn raised_limit(&self, rule: usize, default: u64, now: Timestamp) -> u64 {
        self.raised(now).filter(|&(r, _)| r == rule).map(|(_, limit)| limit).fold(default, u64::max)
    }

    /// The limits the app's overrides raise now, as (rule, limit): read only by an app that
    /// [`has_overrides`](AppEntry::has_overrides).
    pub(crate) fn raised(&self, now: Timestamp) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.quota_overrides
            .0
            .iter()
            .filter(move |o| now.0 < o.until)
            .filter_map(|o| Some((usize::try_from(o.rule).ok()?, o.limit)))
    }

    /// Whether the app holds `permission` now, for a call made with `key` (if any).
    pub fn holds(&self, permission: usize, key: Option<KeyId>, now: Timestamp) -> bool {
        self.plain.contains(permission)
            || self.held.iter().chain(&self.inherited).any(|h| {
                h.permission == permission
                    && (h.key.is_none() || h.key == key)
                    && h.expires_at.is_none_or(|at| now < at)
            })
    }

    pub fn key(&self, id: KeyId) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.id == id)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyRef {
    /// The app's slot in [`Apps`].
    pub slot: u32,
    pub key: KeyId,
    pub kind: KeyKind,
}

/// The decision state at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) verifier: Arc<TokenVerifier>,
    pub(crate) apps: Apps,
    /// Non-secret keys of 32 hex digits (every key permgate issues) by their value as a number.
    hex_keys: crate::key_table::KeyTable,
    /// Other non-secret keys by their value.
    pub(crate) keys: FastMap<Box<str>, KeyRef>,
    /// Secret (admin) keys by their SHA-256 hash.
    pub(crate) secret_keys: FastMap<[u8; 32], KeyRef>,
    /// Test apps by their original, to follow an original's change.
    tests_of: FastMap<AppId, Vec<AppId>>,
    /// Increases with every patch; shown in `/healthz` and useful to tell nodes apart.
    pub version: u64,
}

impl Snapshot {
    pub fn new(catalog: Arc<Catalog>, verifier: Arc<TokenVerifier>) -> Snapshot {
        Snapshot {
            catalog,
            verifier,
            apps: Apps::default(),
            hex_keys: crate::key_table::KeyTable::default(),
            keys: FastMap::default(),
            secret_keys: FastMap::default(),
            tests_of: FastMap::default(),
            version: 0,
        }
    }

    /// Builds a snapshot of every app.
    pub fn build(
        catalog: Arc<Catalog>,
        verifier: Arc<TokenVerifier>,
        records: impl IntoIterator<Item = AppRecord>,
    ) -> Snapshot {
        let records = records.into_iter();
        let mut snapshot = Snapshot::new(catalog, verifier);
        snapshot.apps.reserve(records.size_hint().0);
        snapshot.hex_keys.reserve(records.size_hint().0);
        for record in records {
            let entry = prepare(&snapshot.catalog, &record);
            // Freed now, while its memory is in cache (and a store's worth is never held twice).
            drop(record);
            snapshot.install(entry);
        }
        snapshot
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn app(&self, id: AppId) -> Option<&AppEntry> {
        self.apps.get(&id)
    }

    /// Every app, for the saver's activity round.
    pub fn apps(&self) -> impl Iterator<Item = &AppEntry> {
        self.apps.values()
    }

    pub fn app_count(&self) -> usize {
        self.apps.len()
    }

    /// Takes over the apps' meters (their own quota counters, and activity not saved yet) from
    /// `old`, the snapshot this one replaces, and continues its version.
    pub fn carry_over(&mut self, old: &Snapshot, rule_map: &[Option<usize>]) {
        let permission_map: Vec<Option<usize>> =
            old.catalog.permissions.iter().map(|p| self.catalog.permission_index(&p.id)).collect();
        for entry in self.apps.values_mut() {
            if let Some(before) = old.apps.get(&entry.id) {
                entry.meter = before.meter.renumbered(rule_map, &permission_map);
            }
        }
        self.version = old.version + 1;
    }

    /// Replaces everything known about one app with `record`.
    pub fn upsert_app(&mut self, record: &AppRecord) {
        let entry = prepare(&self.catalog, record);
        self.install(entry);
    }

    /// Puts a prepared entry in place of the app's present one (whose meter it takes over),
    /// indexes its keys, and shares grants between test apps and their originals.
    fn install(&mut self, mut entry: AppEntry) {
        let id = entry.id;
        // The app's counts must survive the patch: no call is deciding meanwhile (a patch holds
        // the write lock), so moving the meter loses none.
        if let Some(present) = self.apps.get_mut(&id) {
            entry.meter = std::mem::take(&mut present.meter);
        }
        self.remove_app(id);
        if let Some(original) = entry.original.and_then(|o| self.apps.get(&o)) {
            entry.inherit(&original.held);
        }
        let slot = self.apps.insert(entry);
        if let Some(entry) = self.apps.slot(slot) {
            for (k, lookup) in entry.keys.iter().zip(&entry.lookups) {
                let r = KeyRef { slot, key: k.id, kind: k.kind };
                match lookup {
                    Lookup::Hex(n) => self.hex_keys.insert(*n, r),
                    Lookup::Text(t) => drop(self.keys.insert(t.clone(), r)),
                    Lookup::Secret(h) => drop(self.secret_keys.insert(*h, r)),
                }
            }
            // A test app holds what its original holds: follow the original's change.
            if let Some(original) = entry.original {
                self.tests_of.entry(original).or_default().push(id);
            }
        }
        let tests = self.tests_of.get(&id).cloned().unwrap_or_default();
        if !tests.is_empty() {
            let inherited = self.apps.get(&id).map(|a| a.held.clone()).unwrap_or_default();
            for test in tests {
                if let Some(entry) = self.apps.get_mut(&test) {
                    entry.inherit(&inherited);
                }
            }
        }
        self.version += 1;
    }

    /// Forgets an app and its keys.
    pub fn remove_app(&mut self, id: AppId) {
        if let Some(removed) = self.apps.remove(&id) {
            if let Some(original) = removed.original
                && let Some(tests) = self.tests_of.get_mut(&original)
            {
                tests.retain(|t| *t != id);
            }
            for lookup in &removed.lookups {
                match lookup {
                    Lookup::Hex(n) => self.hex_keys.remove(n),
                    Lookup::Text(t) => drop(self.keys.remove(t)),
                    Lookup::Secret(h) => drop(self.secret_keys.remove(h)),
                }
            }
            self.version += 1;
        }
    }

    /// Finds the app key a caller presented: its app, id and kind.
    /// [`Snapshot::find_key`] for a Kakao-style key (32 lowercase hex digits) alone: `None` for
    /// any other text, which only the general search finds.
    pub(crate) fn find_hex_key(&self, presented: &str) -> Option<(&AppEntry, KeyId, KeyKind)> {
        self.key_of(self.hex_keys.get(&crate::key_table::raw_key(presented)?)?)
    }

    pub(crate) fn find_key(&self, presented: &str) -> Option<(&AppEntry, KeyId, KeyKind)> {
        // Text of 32 bytes that the key table lacks may still be another kind of key.
        let found = crate::key_table::raw_key(presented)
            .and_then(|raw| self.hex_keys.get(&raw))
            .or_else(|| self.keys.get(presented).copied());
        let r = match found {
            Some(r) => r,
            // Hashed into a buffer on the stack: an unknown key's -401 allocates nothing.
            None => *self.secret_keys.get(&secret::digest(presented))?,
        };
        self.key_of(r)
    }

    /// The app, id and kind of an indexed key.
    fn key_of(&self, r: KeyRef) -> Option<(&AppEntry, KeyId, KeyKind)> {
        Some((self.apps.slot(r.slot)?, r.key, r.kind))
    }
}

/// An app's entry as far as its record and the catalog make it: without the activity of the
/// entry it replaces or the grants of its original (see [`Snapshot::install`]).
fn prepare(catalog: &Catalog, record: &AppRecord) -> AppEntry {
    let mut products_active = BitSet::default();
    for (i, p) in catalog.products.iter().enumerate() {
        let explicit = record.products.iter().find(|(id, _)| *id == p.id).map(|(_, on)| *on);
        if explicit.unwrap_or(p.activation == Activation::DefaultOn) {
            products_active.insert(i);
        }
    }
    // Grants of permissions the catalog no longer declares cannot be enforced; they stay in the
    // store and come back if the permission returns. Each grant's permission is looked up once,
    // for both what it holds and the quota it raises.
    let mut held: Vec<Held> = Vec::with_capacity(record.grants.len());
    let mut quota_overrides = Overrides::default();
    for g in &record.grants {
        let Some(permission) = catalog.permission_index(&g.permission) else { continue };
        held.push(Held { permission, key: g.key_id, expires_at: g.expires_at });
        if let Some(o) = quota_override(catalog, permission, g) {
            quota_overrides.0.push(o);
        }
    }
    let keys =
        record.keys.iter().map(|k| KeyEntry { id: k.id, kind: k.kind, platforms: k.platforms.clone() }).collect();
    let paid = record.paid.as_ref().map(|p| {
        Box::new(PaidEntry {
            rules: p.rules.iter().filter_map(|r| catalog.quota_rule_index(r)).collect(),
            daily_cap: p.daily_cap,
            monthly_cap: p.monthly_cap,
        })
    });
    let lookups = record
        .keys
        .iter()
        .map(|k| match (&k.value, k.kind.is_secret()) {
            (Some(value), false) => match hex_key(value) {
                Some(raw) => Lookup::Hex(raw),
                None => Lookup::Text(value.as_str().into()),
            },
            // The store writes `secret::hash`'s 64 hex digits; anything else matches no key.
            _ => Lookup::Secret(secret::digest_from_hex(&k.hash).unwrap_or_default()),
        })
        .collect();
    let mut entry = AppEntry {
        id: record.app.id,
        owner: record.app.owner,
        status: record.app.status,
        owner_blocked: record.owner_blocked,
        quick_plain: 0,
        quick_consent: 0,
        quick_products: 0,
        fast: Fast::default(),
        keys,
        products_active,
        plain: plain_set(&held, &[]),
        held,
        inherited: Vec::new(),
        original: record.app.original,
        quota_overrides,
        paid,
        consent_set: catalog_consent_set(catalog, record),
        meter: Meter::default(),
        lookups,
    };
    entry.derive();
    entry
}

/// The quota limit a grant of `permission` (by index) sets, if the permission raises quotas:
/// `params.limit` for the rule in `params.rule`, or for the permission's only rule.
fn quota_override(catalog: &Catalog, permission: usize, grant: &crate::model::Grant) -> Option<QuotaOverride> {
    let permission = catalog.permissions.get(permission).filter(|p| p.grants_quota)?;
    let limit = grant.params.get("limit")?.as_u64()?;
    let rule_id = match grant.params.get("rule").and_then(|r| r.as_str()) {
        Some(rule) => rule,
        None => match permission.raises_quota_rules.as_slice() {
            [only] => only.as_str(),
            _ => return None,
        },
    };
    let rule = catalog.quota_rule_index(rule_id)?;
    // A grant that names a rule its permission may not raise (made before the catalog said so)
    // raises nothing.
    permission.may_raise(&catalog.quota_rules[rule]).then_some(QuotaOverride {
        rule: u32::try_from(rule).ok()?,
        limit,
        until: grant.expires_at.map_or(i64::MAX, |at| at.0),
    })
}

/// The snapshot shared by every request handler of one node. Reads are concurrent; a patch holds
/// the write lock only while it swaps one app's entry.
#[derive(Debug)]
pub struct SharedSnapshot {
    current: RwLock<Snapshot>,
    /// When it last changed.
    changed: std::sync::Mutex<std::time::Instant>,
}

impl SharedSnapshot {
    pub fn new(snapshot: Snapshot) -> SharedSnapshot {
        SharedSnapshot { current: RwLock::new(snapshot), changed: std::sync::Mutex::new(std::time::Instant::now()) }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Snapshot> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn patch<R>(&self, f: impl FnOnce(&mut Snapshot) -> R) -> R {
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let out = f(&mut guard);
        *self.changed.lock().unwrap_or_else(PoisonError::into_inner) = std::time::Instant::now();
        out
    }

    /// How long ago the snapshot last changed.
    pub fn age(&self) -> std::time::Duration {
        self.changed.lock().unwrap_or_else(PoisonError::into_inner).elapsed()
    }
}

/// The permissions held app-wide and for good among `held` and `inherited`.
fn plain_set(held: &[Held], inherited: &[Held]) -> BitSet {
    let mut set = BitSet::default();
    for h in held.iter().chain(inherited).filter(|h| h.key.is_none() && h.expires_at.is_none()) {
        set.insert(h.permission);
    }
    set
}

/// Which of the catalog's consent items the app has set.
fn catalog_consent_set(catalog: &Catalog, record: &AppRecord) -> BitSet {
    let mut set = BitSet::default();
    for (i, c) in catalog.consent_items.iter().enumerate() {
        if record.consent_items.iter().any(|s| s.scope == c.id) {
            set.insert(i);
        }
    }
    set
}

#[cfg(test)]
mod bitset_tests {
    use super::{BitSet, hex_key};

    #[test]
    fn only_32_lowercase_hex_digits_are_a_hex_key() {
        assert!(hex_key("0123456789abcdef0123456789abcdef").is_some());
        assert!(hex_key(&"F".repeat(32)).is_none(), "upper case is another key");
        assert!(hex_key(&"0".repeat(31)).is_none());
        assert!(hex_key(&"0".repeat(33)).is_none());
        assert!(hex_key(&"g".repeat(32)).is_none());
        assert!(hex_key(&format!("{}\u{e9}", "0".repeat(30))).is_none());
    }

    #[test]
    fn a_bitset_holds_small_and_large_indexes() {
        let mut s = BitSet::default();
        for i in [0, 5, 63, 64, 130] {
            s.insert(i);
        }
        assert!([0, 5, 63, 64, 130].iter().all(|i| s.contains(*i)));
        assert!(![1, 62, 65, 129, 131, 1000].iter().any(|i| s.contains(*i)));
    }
}

#[cfg(test)]
mod layout_tests {
    use super::AppEntry;

    #[test]
    fn what_the_quick_lane_reads_and_writes_is_on_the_first_two_lines() {
        assert_eq!(std::mem::align_of::<AppEntry>(), 64);
        // The first line: the id, the sets' first words and the fast bits, then the meter: its
        // pending bits, its lock word, and (its state's first fields) the last call and calls.
        assert_eq!(std::mem::offset_of!(AppEntry, meter), 32);
        // std's `Mutex` on Linux: a futex word and a poison flag, then the data 8 bytes on.
        if cfg!(target_os = "linux") {
            let entry = AppEntry::vacant();
            let base = std::ptr::from_ref(&entry) as usize;
            let state = std::ptr::from_ref(&*entry.meter.lock()) as usize - base;
            assert_eq!(state, 48, "the lock word before the state, on the first line");
        }
        // The second: the rule counters, two inline, with the list's tag and length (their
        // place in the state: meter.rs's tests).
        assert_eq!(std::mem::size_of::<crate::small::SmallVec<crate::meter::RuleMeter, 2>>(), 64);
        // The overrides (read only by an app that has some) fill one line of their own.
        assert_eq!(std::mem::size_of::<super::Overrides>(), 64);
        assert_eq!(std::mem::offset_of!(AppEntry, quota_overrides) % 64, 0);
    }

    #[test]
    fn a_keys_lookup_stays_40_bytes() {
        // One per key of every app, its 32 bytes (or digest) inline, allocating nothing.
        assert_eq!(std::mem::size_of::<super::Lookup>(), 40);
    }
}

#[cfg(test)]
mod quota_override_tests {
    use super::*;
    use crate::model::{AppId, Grant};

    /// A grant of `increased_quota` (which raises whichever rule its grant names) raises an app's
    /// own quota of some APIs, and nothing else, even when the store holds a grant made before
    /// the catalog said so.
    #[test]
    fn a_grant_raises_only_a_rule_its_permission_may_raise() {
        let catalog = Catalog::builtin().unwrap_or_else(|e| unreachable!("{e}"));
        let permission = catalog.permission_index("increased_quota").unwrap_or(usize::MAX);
        let raised = |rule: &str| {
            let params = serde_json::json!({"rule": rule, "limit": 999_999});
            let grant = Grant::operator(AppId(1), "increased_quota", params, crate::time::Timestamp(0));
            quota_override(&catalog, permission, &grant)
                .map(|o| (catalog.quota_rules[o.rule as usize].id.clone(), o.limit))
        };
        assert_eq!(raised("local_keyword_search_daily"), Some(("local_keyword_search_daily".into(), 999_999)));
        for fixed in ["talk_message_daily", "talk_message_sender_daily", "talk_message_pair_daily", "api_monthly_total"]
        {
            assert_eq!(raised(fixed), None, "{fixed}");
        }
    }
}
