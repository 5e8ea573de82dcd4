//! Credentials as they arrive in headers: `Authorization: KakaoAK <key>` for app keys,
//! `Authorization: Bearer <JWT>` for user tokens, the `Origin` header for JavaScript keys and the
//! `KA` header for native keys. Parsing never panics and never allocates for app keys.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::model::AppId;
use crate::time::Timestamp;

/// A credential named by the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    AppKey(&'a str),
    UserToken(&'a str),
}

/// Why a header does not carry a usable credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    Missing,
    UnknownScheme,
    Empty,
}

impl CredentialError {
    /// The -401 message (a fixed text: a refusal allocates nothing).
    pub fn message(self) -> &'static str {
        match self {
            CredentialError::Missing => {
                "no credential: send `Authorization: KakaoAK <app key>` or `Authorization: Bearer <user token>`"
            }
            CredentialError::UnknownScheme => {
                "unsupported authorization scheme; use `KakaoAK <app key>` or `Bearer <user token>`"
            }
            CredentialError::Empty => "the authorization header names a scheme but no credential",
        }
    }
}

impl std::fmt::Display for CredentialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for CredentialError {}

/// Reads the `Authorization` header. Whitespace around the header and its value is HTTP's
/// optional whitespace (ASCII; RFC 9110 5.6.3), which every decision trims.
pub fn parse_authorization(header: Option<&str>) -> Result<Credential<'_>, CredentialError> {
    let header = header.map(str::trim_ascii).filter(|h| !h.is_empty()).ok_or(CredentialError::Missing)?;
    // The usual form, as Kakao writes it, without searching for the space or folding case.
    if let Some(value) = header.strip_prefix("KakaoAK ") {
        let value = value.trim_ascii_start();
        return if value.is_empty() { Err(CredentialError::Empty) } else { Ok(Credential::AppKey(value)) };
    }
    parse_scheme(header)
}

/// A trimmed, non-empty `Authorization` header read in general: the scheme (either case) up to
/// the first space, then the credential.
fn parse_scheme(header: &str) -> Result<Credential<'_>, CredentialError> {
    let Some(space) = header.bytes().position(|b| b == b' ') else {
        let bare = header.eq_ignore_ascii_case("KakaoAK") || header.eq_ignore_ascii_case("Bearer");
        return Err(if bare { CredentialError::Empty } else { CredentialError::UnknownScheme });
    };
    let (scheme, value) = (&header[..space], header[space + 1..].trim_ascii_start());
    let credential = if scheme.eq_ignore_ascii_case("KakaoAK") {
        Credential::AppKey(value)
    } else if scheme.eq_ignore_ascii_case("Bearer") {
        Credential::UserToken(value)
    } else {
        return Err(CredentialError::UnknownScheme);
    };
    if value.is_empty() {
        return Err(CredentialError::Empty);
    }
    Ok(credential)
}

/// The native app a `KA` header says the call comes from, e.g.
/// `sdk/2.20.0 os/android-34 lang/ko-KR origin/xyz android_pkg/com.example.app app_ver/1.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeOrigin<'a> {
    AndroidPackage(&'a str),
    IosBundle(&'a str),
}

pub fn parse_ka(header: &str) -> Option<NativeOrigin<'_>> {
    header.split_ascii_whitespace().find_map(|part| {
        if let Some(pkg) = part.strip_prefix("android_pkg/") {
            (!pkg.is_empty()).then_some(NativeOrigin::AndroidPackage(pkg))
        } else if let Some(bundle) = part.strip_prefix("ios_bundle_id/") {
            (!bundle.is_empty()).then_some(NativeOrigin::IosBundle(bundle))
        } else {
            None
        }
    })
}

/// Compares a request's `Origin` with a registered origin: scheme and host case-insensitively,
/// a trailing `/` ignored.
pub fn origin_matches(registered: &str, origin: &str) -> bool {
    let a = registered.trim_end_matches('/');
    let b = origin.trim_end_matches('/');
    a.eq_ignore_ascii_case(b)
}

/// What a verified user token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserClaims {
    pub app_id: AppId,
    pub sub: String,
    pub scopes: Vec<String>,
    pub exp: Timestamp,
}

/// Why a user token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "user tokens are not accepted: no PERMGATE_JWT_SECRET (HS256) or PERMGATE_JWT_PUBLIC_KEYS (RS256, EdDSA) is configured for this algorithm"
    )]
    NotConfigured,
    #[error("invalid user token: {0}")]
    Invalid(String),
    #[error("the user token expired at {0}")]
    Expired(Timestamp),
    #[error("the user token is not valid before {0}")]
    NotYetValid(Timestamp),
}

/// Verifies user tokens. Time is checked against the caller's `now`, not the wall clock, with
/// `LEEWAY_SECONDS` of tolerance for clock skew.
pub struct TokenVerifier {
    hs256: Option<DecodingKey>,
    public: Vec<PublicKey>,
    validation: Validation,
}

/// A public key user tokens may be signed with (RS256 and friends, EdDSA, ES256).
pub struct PublicKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).field("algorithms", &self.algorithms).finish()
    }
}

/// Reads public keys from a JWKS document (`{"keys": [...]}`) or from PEM `PUBLIC KEY` blocks
/// (RSA, Ed25519 or P-256), as `PERMGATE_JWT_PUBLIC_KEYS` names them.
pub fn load_public_keys(text: &str) -> Result<Vec<PublicKey>, String> {
    let text = text.trim();
    let keys = if text.starts_with('{') {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            use jsonwebtoken::jwk::AlgorithmParameters as P;
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {} of the JWKS: {e}", i + 1))?;
            let algorithms = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (P::RSA(_), Some(a)) | (P::EllipticCurve(_), Some(a)) | (P::OctetKeyPair(_), Some(a)) => {
                    vec![a.to_string().parse::<Algorithm>().map_err(|e| format!("key {}: {e}", i + 1))?]
                }
                (P::RSA(_), None) => vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
                (P::EllipticCurve(_), None) => vec![Algorithm::ES256],
                (P::OctetKeyPair(_), None) => vec![Algorithm::EdDSA],
                (P::OctetKey(_), _) => {
                    return Err(format!(
                        "key {} of the JWKS is a shared secret; use PERMGATE_JWT_SECRET for HS256",
                        i + 1
                    ));
                }
            };
            keys.push(PublicKey { kid: jwk.common.key_id.clone(), algorithms, key });
        }
        keys
    } else {
        let mut keys = Vec::new();
        for (i, block) in text.split("-----END PUBLIC KEY-----").filter(|b| b.contains("-----BEGIN")).enumerate() {
            let pem = format!("{}-----END PUBLIC KEY-----\n", block.trim_start());
            let pem = pem.as_bytes();
            let (key, algorithms) = if let Ok(k) = DecodingKey::from_ed_pem(pem) {
                (k, vec![Algorithm::EdDSA])
            } else if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
                (k, vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512])
            } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
                (k, vec![Algorithm::ES256])
            } else {
                return Err(format!("PEM block {} is not an RSA, Ed25519 or P-256 public key", i + 1));
            };
            keys.push(PublicKey { kid: None, algorithms, key });
        }
        keys
    };
    if keys.is_empty() {
        return Err("no public key found: expected a JWKS document or PEM `PUBLIC KEY` blocks".into());
    }
    Ok(keys)
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").field("hs256", &self.hs256.is_some()).field("public", &self.public).finish()
    }
}

/// Tolerated clock skew for `exp` and `nbf`.
pub const LEEWAY_SECONDS: i64 = 60;

#[derive(Deserialize)]
struct RawClaims {
    app_id: serde_json::Value,
    sub: String,
    #[serde(default)]
    scope: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
}

impl TokenVerifier {
    /// A verifier for HS256 tokens signed with `secret`; `None` refuses every token.
    pub fn new(hs256_secret: Option<&[u8]>) -> TokenVerifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        TokenVerifier { hs256: hs256_secret.map(DecodingKey::from_secret), public: Vec::new(), validation }
    }

    /// Also accepts tokens signed with one of these public keys.
    pub fn with_public_keys(mut self, keys: Vec<PublicKey>) -> TokenVerifier {
        self.public = keys;
        self
    }

    /// Decodes with the key the token's header points at: HS256 with the secret, else the public
    /// keys of the header's algorithm (and `kid`, when both name one).
    fn decode(&self, token: &str) -> Result<RawClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(describe(&e)))?;
        if header.alg == Algorithm::HS256 {
            let key = self.hs256.as_ref().ok_or(TokenError::NotConfigured)?;
            return jsonwebtoken::decode::<RawClaims>(token, key, &self.validation)
                .map(|d| d.claims)
                .map_err(|e| TokenError::Invalid(describe(&e)));
        }
        let candidates: Vec<&PublicKey> = self
            .public
            .iter()
            .filter(|k| k.algorithms.contains(&header.alg))
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(if self.public.is_empty() {
                TokenError::NotConfigured
            } else {
                TokenError::Invalid(format!(
                    "no configured public key for {:?}{}",
                    header.alg,
                    header.kid.map(|k| format!(" with kid `{k}`")).unwrap_or_default()
                ))
            });
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let mut last = TokenError::Invalid("bad signature".into());
        for k in candidates {
            match jsonwebtoken::decode::<RawClaims>(token, &k.key, &validation) {
                Ok(d) => return Ok(d.claims),
                Err(e) => last = TokenError::Invalid(describe(&e)),
            }
        }
        Err(last)
    }

    pub fn verify(&self, token: &str, now: Timestamp) -> Result<UserClaims, TokenError> {
        let c = self.decode(token)?;
        let exp = Timestamp(c.exp);
        if now.0 > c.exp.saturating_add(LEEWAY_SECONDS) {
            return Err(TokenError::Expired(exp));
        }
        if let Some(nbf) = c.nbf
            && now.0.saturating_add(LEEWAY_SECONDS) < nbf
        {
            return Err(TokenError::NotYetValid(Timestamp(nbf)));
        }
        let app_id = match &c.app_id {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| TokenError::Invalid("claim `app_id` must be the numeric app id".into()))?;
        Ok(UserClaims {
            app_id: AppId(app_id),
            sub: c.sub,
            scopes: c.scope.split_ascii_whitespace().map(str::to_owned).collect(),
            exp,
        })
    }
}

/// Signs a user token with an HS256 secret, for development and tests (`permgate token`).
/// Production tokens come from the platform's identity provider.
pub fn mint_user_token(
    secret: &[u8],
    app_id: AppId,
    sub: &str,
    scopes: &[String],
    exp: Timestamp,
) -> Result<String, TokenError> {
    let claims = serde_json::json!({
        "app_id": app_id.0,
        "sub": sub,
        "scope": scopes.join(" "),
        "exp": exp.0,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .map_err(|e| TokenError::Invalid(e.to_string()))
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidAlgorithm => "the token is not signed with HS256".into(),
        ErrorKind::Json(inner) => format!("claims are not as expected ({inner}); it needs app_id, sub, scope and exp"),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            "not a JWT (three base64url parts separated by dots)".into()
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    fn token(secret: &[u8], claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))
            .unwrap_or_default()
    }

    #[test]
    fn kakao_ak_and_bearer_are_recognised_case_insensitively() {
        assert_eq!(parse_authorization(Some("KakaoAK abc")), Ok(Credential::AppKey("abc")));
        assert_eq!(parse_authorization(Some("kakaoak  abc ")), Ok(Credential::AppKey("abc")));
        assert_eq!(parse_authorization(Some("Bearer x.y.z")), Ok(Credential::UserToken("x.y.z")));
    }

    #[test]
    fn the_fast_path_for_kakao_ak_reads_as_the_general_one() {
        for header in [
            "KakaoAK abc",
            "KakaoAK  abc",
            "KakaoAK \tabc",
            " KakaoAK abc \t",
            "KakaoAK a b",
            "KakaoAK ",
            "KakaoAK\tabc",
            "KakaoAKabc",
            "KakaoAK",
            "kakaoak abc",
            "KAKAOAK abc",
            "KakaoAK\u{a0}abc",
        ] {
            // The general reading of the trimmed header (an empty one is refused before either).
            let trimmed = header.trim_ascii();
            assert_eq!(parse_authorization(Some(header)), parse_scheme(trimmed), "{header:?}");
        }
    }

    #[test]
    fn missing_empty_and_unknown_schemes_are_refused() {
        assert_eq!(parse_authorization(None), Err(CredentialError::Missing));
        assert_eq!(parse_authorization(Some("  ")), Err(CredentialError::Missing));
        assert_eq!(parse_authorization(Some("Basic dXNlcg==")), Err(CredentialError::UnknownScheme));
        assert_eq!(parse_authorization(Some("KakaoAK")), Err(CredentialError::Empty));
        assert_eq!(parse_authorization(Some("token-without-scheme")), Err(CredentialError::UnknownScheme));
        assert_eq!(parse_authorization(Some("KakaoAK   ")), Err(CredentialError::Empty));
    }

    #[test]
    fn ka_header_yields_the_package_or_bundle() {
        let ka = "sdk/2.20.0 os/android-34 lang/ko-KR android_pkg/com.example.app app_ver/1.0";
        assert_eq!(parse_ka(ka), Some(NativeOrigin::AndroidPackage("com.example.app")));
        assert_eq!(parse_ka("sdk/2 ios_bundle_id/com.example.ios"), Some(NativeOrigin::IosBundle("com.example.ios")));
        assert_eq!(parse_ka("sdk/2 os/web"), None);
        assert_eq!(parse_ka("android_pkg/"), None);
    }

    #[test]
    fn origins_compare_without_trailing_slash_or_case() {
        assert!(origin_matches("https://Example.com/", "https://example.com"));
        assert!(!origin_matches("https://example.com", "https://evil.example.com"));
    }

    #[test]
    fn a_valid_token_yields_its_claims() {
        let v = TokenVerifier::new(Some(b"s3cret"));
        let t = token(
            b"s3cret",
            serde_json::json!({"app_id": 7, "sub": "u1", "scope": "friends talk_message", "exp": 1000}),
        );
        let claims = v.verify(&t, Timestamp(900));
        assert_eq!(
            claims,
            Ok(UserClaims {
                app_id: AppId(7),
                sub: "u1".into(),
                scopes: vec!["friends".into(), "talk_message".into()],
                exp: Timestamp(1000)
            })
        );
    }

    #[test]
    fn expiry_allows_sixty_seconds_of_skew_and_no_more() {
        let v = TokenVerifier::new(Some(b"s3cret"));
        let t = token(b"s3cret", serde_json::json!({"app_id": "7", "sub": "u1", "exp": 1000}));
        assert!(v.verify(&t, Timestamp(1060)).is_ok());
        assert_eq!(v.verify(&t, Timestamp(1061)).map(|_| ()), Err(TokenError::Expired(Timestamp(1000))));
    }

    #[test]
    fn not_before_is_enforced() {
        let v = TokenVerifier::new(Some(b"k"));
        let t = token(b"k", serde_json::json!({"app_id": 1, "sub": "u", "exp": 5000, "nbf": 2000}));
        assert!(matches!(v.verify(&t, Timestamp(1000)), Err(TokenError::NotYetValid(_))));
        assert!(v.verify(&t, Timestamp(1950)).is_ok());
    }

    #[test]
    fn wrong_secret_garbage_and_missing_claims_are_invalid() {
        let v = TokenVerifier::new(Some(b"right"));
        let wrong = token(b"wrong", serde_json::json!({"app_id": 1, "sub": "u", "exp": 5000}));
        assert!(matches!(v.verify(&wrong, Timestamp(0)), Err(TokenError::Invalid(m)) if m.contains("signature")));
        assert!(matches!(v.verify("garbage", Timestamp(0)), Err(TokenError::Invalid(_))));
        let no_app = token(b"right", serde_json::json!({"sub": "u", "exp": 5000}));
        assert!(matches!(v.verify(&no_app, Timestamp(0)), Err(TokenError::Invalid(_))));
        let bad_app = token(b"right", serde_json::json!({"app_id": "x", "sub": "u", "exp": 5000}));
        assert!(matches!(v.verify(&bad_app, Timestamp(0)), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn minted_tokens_verify() {
        let t = mint_user_token(b"k", AppId(3), "u9", &["friends".into()], Timestamp(500));
        let claims = t.map(|t| TokenVerifier::new(Some(b"k")).verify(&t, Timestamp(100)));
        assert_eq!(
            claims.ok().and_then(Result::ok).map(|c| (c.app_id, c.sub, c.scopes)),
            Some((AppId(3), "u9".into(), vec!["friends".into()]))
        );
    }

    fn keyfile(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/data/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_default()
    }

    fn signed(alg: Algorithm, kid: Option<&str>, private: &str) -> String {
        let key = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private.as_bytes()),
            _ => EncodingKey::from_rsa_pem(private.as_bytes()),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        let claims = serde_json::json!({"app_id": 4, "sub": "u", "scope": "friends", "exp": 5000});
        key.and_then(|k| jsonwebtoken::encode(&header, &claims, &k)).unwrap_or_default()
    }

    #[test]
    fn rs256_and_eddsa_tokens_verify_against_pem_keys() {
        let pem = format!("{}{}", keyfile("rsa-public.pem"), keyfile("ed25519-public.pem"));
        let keys = load_public_keys(&pem);
        assert_eq!(keys.as_ref().map(Vec::len), Ok(2));
        let v = TokenVerifier::new(None).with_public_keys(keys.unwrap_or_default());
        for (alg, private) in [(Algorithm::RS256, "rsa-private.pem"), (Algorithm::EdDSA, "ed25519-private.pem")] {
            let t = signed(alg, None, &keyfile(private));
            assert_eq!(v.verify(&t, Timestamp(0)).map(|c| c.app_id), Ok(AppId(4)), "{alg:?}");
        }
        let hs = token(b"k", serde_json::json!({"app_id": 1, "sub": "u", "exp": 5000}));
        assert_eq!(v.verify(&hs, Timestamp(0)).err(), Some(TokenError::NotConfigured), "no HS256 secret configured");
    }

    #[test]
    fn a_jwks_document_selects_keys_by_kid() {
        let keys = load_public_keys(&keyfile("jwks.json")).unwrap_or_default();
        assert_eq!(keys.len(), 2);
        let v = TokenVerifier::new(None).with_public_keys(keys);
        let good = signed(Algorithm::RS256, Some("rsa-2026"), &keyfile("rsa-private.pem"));
        assert!(v.verify(&good, Timestamp(0)).is_ok());
        let ed = signed(Algorithm::EdDSA, Some("ed-2026"), &keyfile("ed25519-private.pem"));
        assert!(v.verify(&ed, Timestamp(0)).is_ok());
        let unknown_kid = signed(Algorithm::RS256, Some("rsa-1999"), &keyfile("rsa-private.pem"));
        assert!(matches!(v.verify(&unknown_kid, Timestamp(0)), Err(TokenError::Invalid(m)) if m.contains("rsa-1999")));
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        let v = TokenVerifier::new(None)
            .with_public_keys(load_public_keys(&keyfile("ed25519-public.pem")).unwrap_or_default());
        let other = signed(Algorithm::RS256, None, &keyfile("rsa-private.pem"));
        assert!(matches!(v.verify(&other, Timestamp(0)), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn key_files_that_hold_no_key_say_so() {
        assert!(load_public_keys("").is_err());
        assert!(load_public_keys("{\"keys\": []}").is_err());
        assert!(load_public_keys("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err());
        assert!(load_public_keys("{not json").is_err());
    }

    #[test]
    fn without_a_secret_every_token_is_refused() {
        let t = token(b"k", serde_json::json!({"app_id": 1, "sub": "u", "exp": 5000}));
        assert_eq!(TokenVerifier::new(None).verify(&t, Timestamp(0)), Err(TokenError::NotConfigured));
    }
}
