//! Credentials as callers send them: the Authorization header (KakaoAK keys, Bearer JWTs), the KA
//! header and Origin, through the whole decision against a snapshot with one app.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use permgate_core::catalog::Catalog;
use permgate_core::credential::{TokenVerifier, parse_authorization, parse_ka};
use permgate_core::decision::{Query, decide};
use permgate_core::model::*;
use permgate_core::snapshot::Snapshot;
use permgate_core::time::Timestamp;

const NOW: Timestamp = Timestamp(1_795_824_000);

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let catalog = Catalog::builtin().unwrap_or_else(|e| unreachable!("{e}"));
        let key = |id: i64, kind: KeyKind, value: &str, platforms: Platforms| {
            Key::issued(KeyId(id), kind, value, platforms, NOW)
        };
        let mut record = AppRecord::active(AppId(1), NOW);
        record.keys = vec![
            key(1, KeyKind::RestApi, "0123456789abcdef0123456789abcdef", Platforms::default()),
            key(
                2,
                KeyKind::Javascript,
                "javascript-key",
                Platforms { origins: vec!["https://a.example".into()], ..Platforms::default() },
            ),
            key(
                3,
                KeyKind::NativeApp,
                "native-key",
                Platforms { android_packages: vec!["com.example".into()], ..Platforms::default() },
            ),
            key(4, KeyKind::Admin, "fedcba9876543210fedcba9876543210", Platforms::default()),
        ];
        let verifier = TokenVerifier::new(Some(b"fuzz-secret"));
        Snapshot::build(Arc::new(catalog), Arc::new(verifier), vec![record])
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Fields separated by newlines: authorization, path, origin, KA.
    let mut parts = text.splitn(4, '\n');
    let authorization = parts.next();
    let path = parts.next().unwrap_or("/v2/local/search/keyword.json");
    let origin = parts.next();
    let ka = parts.next();
    let _ = parse_authorization(authorization);
    if let Some(ka) = ka {
        let _ = parse_ka(ka);
    }
    for method in ["GET", "POST"] {
        let query = Query { method, path, authorization, origin, ka, recipients: &[], explain: true };
        let d = decide(snapshot(), &query, NOW);
        assert_eq!(d.allow, d.code == 0);
        let _ = d.error_body();
    }
});
