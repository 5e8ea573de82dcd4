//! Path patterns (`/v1/api/talk/friends`, `/openapi/v4/campaigns/{id}`) and the router that maps a
//! method and a concrete path to one API. A literal segment wins over a parameter; two patterns of
//! the same method with the same shape are ambiguous and refused when the catalog loads.

use crate::fast_hash::FastMap;
use std::fmt;

/// An HTTP method the catalog can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub const ALL: [Method; 5] = [Method::Get, Method::Post, Method::Put, Method::Patch, Method::Delete];

    /// Parses a method name, case-insensitively; `HEAD` is answered like `GET`. Inlined: nearly
    /// every call is a `GET`, told by one compare; the rest is not.
    #[inline]
    pub fn parse(text: &str) -> Option<Method> {
        if text.as_bytes() == b"GET" {
            return Some(Method::Get);
        }
        Method::parse_any(text)
    }

    #[inline(never)]
    fn parse_any(text: &str) -> Option<Method> {
        let m = match text.len() {
            3 if text.eq_ignore_ascii_case("GET") => Method::Get,
            3 if text.eq_ignore_ascii_case("PUT") => Method::Put,
            4 if text.eq_ignore_ascii_case("POST") => Method::Post,
            4 if text.eq_ignore_ascii_case("HEAD") => Method::Get,
            5 if text.eq_ignore_ascii_case("PATCH") => Method::Patch,
            6 if text.eq_ignore_ascii_case("DELETE") => Method::Delete,
            _ => return None,
        };
        Some(m)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Literal(String),
    Param(String),
}

impl Segment {
    /// The text of a literal segment (empty for a parameter).
    fn literal(&self) -> &str {
        match self {
            Segment::Literal(l) => l,
            Segment::Param(_) => "",
        }
    }
}

/// A parsed path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub segments: Vec<Segment>,
}

/// Why a pattern is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("a path pattern must start with `/`")]
    NoLeadingSlash,
    #[error("empty segment (`//` or a trailing `/`) at segment {0}")]
    EmptySegment(usize),
    #[error("segment `{0}` mixes a parameter with literal text; a parameter is a whole segment like `{{id}}`")]
    PartialParam(String),
    #[error("parameter name `{0}` must be snake_case or camelCase letters, digits and `_`")]
    BadParamName(String),
    #[error("parameter `{0}` appears twice")]
    DuplicateParam(String),
    #[error("segment `{0}` holds characters a path cannot carry (`?`, `#`, whitespace)")]
    BadCharacter(String),
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let rest = text.strip_prefix('/').ok_or(PatternError::NoLeadingSlash)?;
        if rest.is_empty() {
            return Ok(Pattern { segments: Vec::new() });
        }
        let mut segments = Vec::new();
        let mut params: Vec<&str> = Vec::new();
        for (i, seg) in rest.split('/').enumerate() {
            if seg.is_empty() {
                return Err(PatternError::EmptySegment(i + 1));
            }
            if seg.chars().any(|c| c == '?' || c == '#' || c.is_whitespace()) {
                return Err(PatternError::BadCharacter(seg.to_owned()));
            }
            let opens = seg.contains('{');
            let closes = seg.contains('}');
            if opens || closes {
                let name = seg
                    .strip_prefix('{')
                    .and_then(|s| s.strip_suffix('}'))
                    .ok_or_else(|| PatternError::PartialParam(seg.to_owned()))?;
                let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(PatternError::BadParamName(name.to_owned()));
                }
                if params.contains(&name) {
                    return Err(PatternError::DuplicateParam(name.to_owned()));
                }
                params.push(name);
                segments.push(Segment::Param(name.to_owned()));
            } else {
                segments.push(Segment::Literal(seg.to_owned()));
            }
        }
        Ok(Pattern { segments })
    }

    /// The pattern with parameter names erased: two patterns with the same shape match exactly
    /// the same paths.
    pub fn shape(&self) -> Vec<Option<&str>> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => Some(l.as_str()),
                Segment::Param(_) => None,
            })
            .collect()
    }
}

#[derive(Debug, Default, Clone)]
struct Node {
    literals: FastMap<Box<str>, Node>,
    param: Option<Box<Node>>,
    /// The API index per method, indexed by `Method::index`.
    endpoints: [Option<u32>; 5],
}

/// Maps (method, path) to an API index. Built once per catalog.
#[derive(Debug, Default, Clone)]
pub struct Router {
    root: Node,
    /// Patterns without parameters (most of them), per method: one hash lookup of the whole path.
    /// Such a pattern is also what the tree would find, as literals win at every segment.
    exact: [Exact; 5],
}

impl Router {
    /// Adds a route; returns the index already registered for the same method and shape, if any.
    pub fn insert(&mut self, method: Method, pattern: &Pattern, api: u32) -> Result<(), u32> {
        let mut node = &mut self.root;
        for seg in &pattern.segments {
            node = match seg {
                Segment::Literal(l) => node.literals.entry(l.as_str().into()).or_default(),
                Segment::Param(_) => node.param.get_or_insert_with(Box::default),
            };
        }
        match node.endpoints[method.index()] {
            Some(existing) => Err(existing),
            None => {
                node.endpoints[method.index()] = Some(api);
                if pattern.segments.iter().all(|s| matches!(s, Segment::Literal(_))) {
                    let path: String = pattern.segments.iter().map(|s| format!("/{}", s.literal())).collect();
                    self.exact[method.index()].insert(if path.is_empty() { "/" } else { &path }, api);
                }
                Ok(())
            }
        }
    }

    /// Finds the API for a concrete path (a query string, if any, is ignored).
    pub fn lookup(&self, method: Method, path: &str) -> Option<u32> {
        let path = without_query(path);
        if let Some(api) = self.exact[method.index()].get(path) {
            return Some(api);
        }
        let rest = path.strip_prefix('/')?;
        if rest.is_empty() {
            return self.root.endpoints[method.index()];
        }
        Self::walk(&self.root, method, rest)
    }

    fn walk(node: &Node, method: Method, rest: &str) -> Option<u32> {
        let (seg, tail) = match rest.bytes().position(|b| b == b'/') {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        if seg.is_empty() {
            return None;
        }
        let step = |next: &Node| match tail {
            None => next.endpoints[method.index()],
            Some(tail) => Self::walk(next, method, tail),
        };
        if let Some(found) = node.literals.get(seg).and_then(step) {
            return Some(found);
        }
        node.param.as_deref().and_then(step)
    }
}

/// Whole paths and their APIs, in an open-addressing table at most half full whose slots say
/// where each path's bytes are: every decision looks its path up here, and a general-purpose map
/// spent twice the instructions (hashing through the `Hasher` trait, a probe of control bytes, a
/// `memcmp` call). A lookup reads the slot, then the bytes (a path boxed on its own was two
/// reads further).
#[derive(Debug, Default, Clone)]
struct Exact {
    /// A power of two long (or empty).
    slots: Vec<Slot>,
    /// Every path's bytes, one after another.
    bytes: Vec<u8>,
    len: usize,
}

/// A path in [`Exact`]: its hash, its bytes' place, and its API plus one (0: a free slot).
#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    hash: u64,
    start: u32,
    len: u32,
    api: u32,
}

impl Exact {
    /// A path's hash ([`crate::fast_hash::hash_bytes`]).
    fn hash(path: &[u8]) -> u64 {
        crate::fast_hash::hash_bytes(path)
    }

    /// Whether two byte strings are the same, compared a word at a time in place (a slice's `==`
    /// calls `memcmp`).
    fn same(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let (wa, _) = a.as_chunks::<8>();
        let (wb, _) = b.as_chunks::<8>();
        let words = wa.iter().zip(wb).all(|(x, y)| x == y);
        match (a.last_chunk::<8>(), b.last_chunk::<8>()) {
            (Some(x), Some(y)) => words && x == y,
            _ => a.iter().zip(b).all(|(x, y)| x == y),
        }
    }

    /// Where a hash's probe starts: from its high bits, which a multiply mixes best.
    fn home(hash: u64, mask: usize) -> usize {
        (hash >> 32) as usize & mask
    }

    /// Adds `path`; a path past what a slot can say (4 GiB of paths, API `u32::MAX`) is left to
    /// the tree, which finds it too.
    fn insert(&mut self, path: &str, api: u32) {
        let (Ok(start), Ok(len), Some(api)) =
            (u32::try_from(self.bytes.len()), u32::try_from(path.len()), api.checked_add(1))
        else {
            return;
        };
        let slot = Slot { hash: Self::hash(path.as_bytes()), start, len, api };
        self.bytes.extend_from_slice(path.as_bytes());
        self.len += 1;
        let capacity = (self.len * 2).next_power_of_two().max(8);
        if capacity != self.slots.len() {
            let old = std::mem::replace(&mut self.slots, vec![Slot::default(); capacity]);
            for s in old.into_iter().filter(|s| s.api != 0) {
                self.place(s);
            }
        }
        self.place(slot);
    }

    fn place(&mut self, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut i = Self::home(slot.hash, mask);
        while self.slots[i].api != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }

    fn get(&self, path: &str) -> Option<u32> {
        let mask = self.slots.len().checked_sub(1)?;
        let path = path.as_bytes();
        let hash = Self::hash(path);
        let mut i = Self::home(hash, mask);
        loop {
            let s = self.slots.get(i)?;
            if s.api == 0 {
                return None;
            }
            if s.hash == hash && s.len as usize == path.len() {
                let start = s.start as usize;
                let known = self.bytes.get(start..start + path.len())?;
                if Self::same(known, path) {
                    return Some(s.api - 1);
                }
            }
            i = (i + 1) & mask;
        }
    }
}

/// A concrete path without its query string or fragment, as routing sees it.
pub fn without_query(path: &str) -> &str {
    &path[..query_start(path.as_bytes())]
}

/// Where a path's query string or fragment starts (its length if it has neither), read a word
/// at a time: every decision cuts its path here.
fn query_start(path: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `w` equal to `b` (the lowest flagged byte is always a true one).
    let equal = |w: u64, b: u8| {
        let t = w ^ (ONES * u64::from(b));
        t.wrapping_sub(ONES) & !t & HIGH
    };
    let (words, tail) = path.as_chunks::<8>();
    for (n, word) in words.iter().enumerate() {
        let w = u64::from_le_bytes(*word);
        let found = equal(w, b'?') | equal(w, b'#');
        if found != 0 {
            return n * 8 + (found.trailing_zeros() / 8) as usize;
        }
    }
    let at = words.len() * 8;
    tail.iter().position(|&b| b == b'?' || b == b'#').map_or(path.len(), |i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(Method, &str)]) -> Router {
        let mut r = Router::default();
        for (i, (m, p)) in routes.iter().enumerate() {
            let pattern = Pattern::parse(p).unwrap_or_else(|e| unreachable!("{p}: {e}"));
            assert!(r.insert(*m, &pattern, i as u32).is_ok(), "{p} conflicts");
        }
        r
    }

    #[test]
    fn the_query_starts_at_the_first_question_mark_or_hash() {
        for path in
            ["", "/", "/a?b", "/abcdefg?x", "/abcdefgh#x", "/v2/local/search/keyword.json?query=coffee", "/x#a?b"]
        {
            let by_byte = path.bytes().position(|b| b == b'?' || b == b'#').unwrap_or(path.len());
            assert_eq!(query_start(path.as_bytes()), by_byte, "{path}");
        }
        for len in 0..40 {
            for at in 0..len {
                for mark in [b'?', b'#', b'>', b'@', 0x3f + 0x80] {
                    let mut path = vec![b'a'; len];
                    path[at] = mark;
                    let by_byte = path.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(len);
                    assert_eq!(query_start(&path), by_byte, "{len} {at} {mark}");
                }
            }
        }
    }

    #[test]
    fn whole_paths_are_found_exactly_whatever_their_length() {
        let mut exact = Exact::default();
        let paths: Vec<String> = (0..200).map(|n| format!("/{}", "ab".repeat(n % 23)) + &n.to_string()).collect();
        for (n, p) in paths.iter().enumerate() {
            exact.insert(p, n as u32);
        }
        for (n, p) in paths.iter().enumerate() {
            assert_eq!(exact.get(p), Some(n as u32), "{p}");
            // The same length, one byte off (first, middle, last), and one byte shorter.
            for at in [0, p.len() / 2, p.len() - 1] {
                let mut other = p.clone().into_bytes();
                other[at] ^= 1;
                let other = String::from_utf8(other).unwrap_or_default();
                assert_eq!(exact.get(&other), paths.iter().position(|q| *q == other).map(|i| i as u32), "{other}");
            }
            assert_eq!(
                exact.get(&p[..p.len() - 1]),
                paths.iter().position(|q| *q == p[..p.len() - 1]).map(|i| i as u32)
            );
        }
        assert_eq!(Exact::default().get("/"), None);
        // The compare alone (a lookup reaches it only on equal hashes).
        for len in 0..40 {
            let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(Exact::same(&a, &a.clone()));
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 1;
                assert!(!Exact::same(&a, &b), "{len} {at}");
            }
            assert!(!Exact::same(&a, &[a.as_slice(), b"x"].concat()));
        }
    }

    #[test]
    fn literal_segments_win_over_parameters() {
        let r = router(&[(Method::Get, "/openapi/v4/adAccounts/{id}"), (Method::Get, "/openapi/v4/adAccounts/pages")]);
        assert_eq!(r.lookup(Method::Get, "/openapi/v4/adAccounts/pages"), Some(1));
        assert_eq!(r.lookup(Method::Get, "/openapi/v4/adAccounts/123"), Some(0));
    }

    #[test]
    fn a_dead_end_literal_backtracks_to_the_parameter() {
        let r = router(&[(Method::Get, "/a/{x}/c"), (Method::Get, "/a/b/d")]);
        assert_eq!(r.lookup(Method::Get, "/a/b/c"), Some(0));
        assert_eq!(r.lookup(Method::Get, "/a/b/d"), Some(1));
    }

    #[test]
    fn methods_are_routed_separately() {
        let r = router(&[(Method::Get, "/v2/user/me"), (Method::Post, "/v2/user/me")]);
        assert_eq!(r.lookup(Method::Get, "/v2/user/me"), Some(0));
        assert_eq!(r.lookup(Method::Post, "/v2/user/me"), Some(1));
        assert_eq!(r.lookup(Method::Delete, "/v2/user/me"), None);
    }

    #[test]
    fn query_strings_are_ignored_and_empty_segments_never_match() {
        let r = router(&[(Method::Get, "/v1/api/talk/friends"), (Method::Get, "/x/{id}")]);
        assert_eq!(r.lookup(Method::Get, "/v1/api/talk/friends?limit=10"), Some(0));
        assert_eq!(r.lookup(Method::Get, "/v1/api/talk/friends/"), None);
        assert_eq!(r.lookup(Method::Get, "/x//"), None);
        assert_eq!(r.lookup(Method::Get, "v1/api/talk/friends"), None);
    }

    #[test]
    fn same_shape_with_other_parameter_names_is_a_conflict() {
        let mut r = router(&[(Method::Get, "/campaigns/{id}")]);
        let other = Pattern::parse("/campaigns/{campaignId}").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(r.insert(Method::Get, &other, 9), Err(0));
        assert!(r.insert(Method::Delete, &other, 9).is_ok());
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        assert_eq!(Pattern::parse("v1/x"), Err(PatternError::NoLeadingSlash));
        assert_eq!(Pattern::parse("/v1//x"), Err(PatternError::EmptySegment(2)));
        assert_eq!(Pattern::parse("/v1/x/"), Err(PatternError::EmptySegment(3)));
        assert_eq!(Pattern::parse("/v1/x{id}"), Err(PatternError::PartialParam("x{id}".into())));
        assert_eq!(Pattern::parse("/v1/{1d}"), Err(PatternError::BadParamName("1d".into())));
        assert_eq!(Pattern::parse("/v1/{id}/{id}"), Err(PatternError::DuplicateParam("id".into())));
        assert_eq!(Pattern::parse("/v1/a?b"), Err(PatternError::BadCharacter("a?b".into())));
    }

    #[test]
    fn methods_parse_case_insensitively() {
        assert_eq!(Method::parse("get"), Some(Method::Get));
        assert_eq!(Method::parse("HEAD"), Some(Method::Get));
        assert_eq!(Method::parse("TRACE"), None);
    }
}
