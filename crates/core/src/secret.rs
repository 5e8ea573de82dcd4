//! Secrets: random tokens and keys, their SHA-256 hashes, and constant-time comparison. Account
//! tokens and admin keys are stored only as hashes; all are high-entropy random values, so a fast
//! hash is enough (there is nothing to brute-force).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why randomness could not be had.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Lowercase hex of a digest.
pub fn hex_digest(bytes: &[u8]) -> String {
    hex(bytes)
}

fn random_hex(bytes: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| RandomError(e.to_string()))?;
    Ok(hex(&buf))
}

/// A new app key: 32 lowercase hex characters, the shape of Kakao's keys.
pub fn new_app_key() -> Result<String, RandomError> {
    random_hex(16)
}

/// A new account token: `pgt_` and 48 hex characters.
pub fn new_account_token() -> Result<String, RandomError> {
    Ok(format!("pgt_{}", random_hex(24)?))
}

/// SHA-256 of a secret, as lowercase hex.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Compares two hashes without leaking where they differ.
/// SHA-256 of raw bytes, hex (e.g. an evidence file's fingerprint).
pub fn hash_bytes(bytes: &[u8]) -> String {
    hex_digest(&Sha256::digest(bytes))
}

/// SHA-256 of a secret, as bytes: [`hash`] without the hex text (nothing allocated).
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A [`hash`]'s hex text back as bytes; `None` unless it is 64 hex digits.
pub fn digest_from_hex(hash: &str) -> Option<[u8; 32]> {
    let bytes = hash.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |b: u8| char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The last four characters of a secret, shown so a user can tell keys apart.
pub fn hint(secret: &str) -> String {
    let start = secret.char_indices().rev().nth(3).map_or(0, |(i, _)| i);
    secret[start..].to_owned()
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    // The user-info of a URL: scheme://user:password@host
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let authority_end = out[start..].find(['/', '?']).map_or(out.len(), |i| start + i);
        let user_info_end = out[start..authority_end].rfind('@').map(|i| start + i);
        let password = user_info_end.and_then(|at| out[start..at].find(':').map(|i| (start + i + 1, at)));
        if let Some((from, to)) = password {
            out.replace_range(from..to, "***");
        }
    }
    // `password=` as a URL query parameter or in a key=value string.
    let mut from = 0;
    while let Some(found) = out[from..].find("password=") {
        let value = from + found + "password=".len();
        let end = out[value..].find(['&', ' ']).map_or(out.len(), |i| value + i);
        out.replace_range(value..end, "***");
        from = value + 3;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_read_back_is_the_digest_and_nothing_else_reads() {
        for secret in ["", "admin-key-1", "한글 키"] {
            assert_eq!(digest_from_hex(&hash(secret)), Some(digest(secret)), "{secret:?}");
        }
        let good = hash("x");
        for bad in [&good[..62], &format!("{}zz", &good[..62]), &format!("+{}", &good[1..]), ""] {
            assert_eq!(digest_from_hex(bad), None, "{bad:?}");
        }
        assert_eq!(digest_from_hex(&good.to_uppercase()), Some(digest("x")), "hex digits in either case");
    }

    #[test]
    fn keys_look_like_kakao_keys_and_differ() -> Result<(), RandomError> {
        let a = new_app_key()?;
        let b = new_app_key()?;
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn equal_hashes_compare_equal_and_others_do_not() {
        assert!(hashes_equal(&hash("x"), &hash("x")));
        assert!(!hashes_equal(&hash("x"), &hash("y")));
        assert!(!hashes_equal("ab", "abc"));
    }

    #[test]
    fn database_urls_lose_their_passwords() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/permgate"), "postgres://app:***@db:5432/permgate");
        assert_eq!(redact_url("postgres://app@db/permgate"), "postgres://app@db/permgate");
        assert_eq!(redact_url("sqlite://permgate.db"), "sqlite://permgate.db");
    }

    #[test]
    fn hint_is_the_last_four_characters() {
        assert_eq!(hint("0123456789"), "6789");
        assert_eq!(hint("ab"), "ab");
    }
}
