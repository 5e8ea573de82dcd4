//! Interned catalog texts: `&'static str` that a decision can carry without allocating (API,
//! permission and quota rule ids, and each API's -401 messages). Each distinct text is leaked once
//! for the life of the process; reloading a catalog with the same texts adds nothing, so the memory
//! is bounded by the distinct texts ever loaded (about 30 KB for the built-in catalog).

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

/// The one `&'static str` equal to `text`.
pub fn intern(text: &str) -> &'static str {
    static IDS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut ids = IDS.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(id) = ids.get(text) {
        return id;
    }
    let id: &'static str = Box::leak(text.to_owned().into_boxed_str());
    ids.insert(id);
    id
}

#[cfg(test)]
mod tests {
    use super::intern;

    #[test]
    fn equal_texts_share_one_leaked_copy() {
        let a = intern("local_keyword_search");
        let b = intern(&String::from("local_keyword_search"));
        assert_eq!(a, "local_keyword_search");
        assert!(std::ptr::eq(a, b));
        assert!(!std::ptr::eq(a, intern("talk_message")));
    }
}
