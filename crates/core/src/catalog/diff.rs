//! What changed between two catalogs: entries added, removed and changed (with the fields that
//! changed, old and new), section by section. `permgate catalog diff`, the reload's audit event
//! and the impact preview all use it.

use serde::Serialize;
use serde_json::Value;

use super::Catalog;

/// One entry whose fields changed.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Changed {
    pub id: String,
    /// Field name → `[old, new]`.
    pub fields: serde_json::Map<String, Value>,
}

/// The changes in one section (`permissions`, `apis`, …).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SectionDiff {
    pub section: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<Changed>,
}

/// Every change between two catalogs.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CatalogDiff {
    pub old_version: String,
    pub new_version: String,
    /// Top-level settings that changed (`time_zone`), as `[old, new]`.
    pub settings: serde_json::Map<String, Value>,
    /// Only the sections with a change.
    pub sections: Vec<SectionDiff>,
}

impl CatalogDiff {
    /// No entry or setting changed (the version alone may differ).
    pub fn is_empty(&self) -> bool {
        self.settings.is_empty() && self.sections.is_empty()
    }

    /// `+ permission foo`, `- api bar`, `~ api baz: status "active" -> "maintenance"`, one per line.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.old_version != self.new_version {
            out.push(format!("~ version: {} -> {}", self.old_version, self.new_version));
        }
        for (name, change) in &self.settings {
            out.push(format!("~ {name}: {} -> {}", change[0], change[1]));
        }
        for s in &self.sections {
            let kind = singular(&s.section);
            out.extend(s.added.iter().map(|id| format!("+ {kind} {id}")));
            out.extend(s.removed.iter().map(|id| format!("- {kind} {id}")));
            for c in &s.changed {
                let fields: Vec<String> =
                    c.fields.iter().map(|(f, v)| format!("{f} {} -> {}", compact(&v[0]), compact(&v[1]))).collect();
                out.push(format!("~ {kind} {}: {}", c.id, fields.join("; ")));
            }
        }
        out
    }
}

fn singular(section: &str) -> &str {
    match section {
        "quota_rules" => "quota rule",
        "consent_items" => "consent item",
        "review_reasons" => "review reason",
        "response_fields" => "response field",
        "config_items" => "config item",
        s => s.strip_suffix('s').unwrap_or(s),
    }
}

fn compact(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 80 { format!("{}…", text.chars().take(79).collect::<String>()) } else { text }
}

/// Compares two catalogs.
pub fn diff(old: &Catalog, new: &Catalog) -> CatalogDiff {
    let (old_doc, new_doc) = (to_object(old), to_object(new));
    let mut settings = serde_json::Map::new();
    let mut sections = Vec::new();
    for (key, new_value) in &new_doc {
        if key == "version" {
            continue;
        }
        let old_value = old_doc.get(key).cloned().unwrap_or(Value::Null);
        match (&old_value, new_value) {
            (Value::Array(a), Value::Array(b)) => {
                let section = diff_section(key, a, b);
                if !(section.added.is_empty() && section.removed.is_empty() && section.changed.is_empty()) {
                    sections.push(section);
                }
            }
            (a, b) if a != b => {
                settings.insert(key.clone(), Value::Array(vec![a.clone(), b.clone()]));
            }
            _ => {}
        }
    }
    CatalogDiff { old_version: old.version.clone(), new_version: new.version.clone(), settings, sections }
}

fn to_object(catalog: &Catalog) -> serde_json::Map<String, Value> {
    match serde_json::to_value(catalog) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// An entry's identity: its `id`, or for response fields `api.field`.
fn identity(entry: &Value) -> String {
    if let Some(id) = entry.get("id").and_then(Value::as_str) {
        return id.to_owned();
    }
    match (entry.get("api").and_then(Value::as_str), entry.get("field").and_then(Value::as_str)) {
        (Some(api), Some(field)) => format!("{api}.{field}"),
        _ => entry.to_string(),
    }
}

fn diff_section(section: &str, old: &[Value], new: &[Value]) -> SectionDiff {
    let old_by_id: Vec<(String, &Value)> = old.iter().map(|e| (identity(e), e)).collect();
    let new_by_id: Vec<(String, &Value)> = new.iter().map(|e| (identity(e), e)).collect();
    let find = |list: &[(String, &Value)], id: &str| list.iter().find(|(i, _)| i == id).map(|(_, v)| (*v).clone());
    let mut out =
        SectionDiff { section: section.to_owned(), added: Vec::new(), removed: Vec::new(), changed: Vec::new() };
    for (id, entry) in &new_by_id {
        match find(&old_by_id, id) {
            None => out.added.push(id.clone()),
            Some(before) if before != **entry => {
                let mut fields = serde_json::Map::new();
                let empty = serde_json::Map::new();
                let (b, a) = (before.as_object().unwrap_or(&empty), entry.as_object().unwrap_or(&empty));
                for key in b.keys().chain(a.keys().filter(|k| !b.contains_key(*k))) {
                    let (x, y) =
                        (b.get(key).cloned().unwrap_or(Value::Null), a.get(key).cloned().unwrap_or(Value::Null));
                    if x != y {
                        fields.insert(key.clone(), Value::Array(vec![x, y]));
                    }
                }
                out.changed.push(Changed { id: id.clone(), fields });
            }
            Some(_) => {}
        }
    }
    for (id, _) in &old_by_id {
        if find(&new_by_id, id).is_none() {
            out.removed.push(id.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::DEFAULT_CATALOG;

    fn parse(text: &str) -> Catalog {
        Catalog::parse("t.toml", text).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn identical_catalogs_have_no_diff() {
        let d = diff(&parse(DEFAULT_CATALOG), &parse(DEFAULT_CATALOG));
        assert!(d.is_empty() && d.lines().is_empty(), "{:?}", d.lines());
    }

    #[test]
    fn added_removed_and_changed_entries_are_named_with_their_fields() {
        let old = parse(DEFAULT_CATALOG);
        let line = DEFAULT_CATALOG
            .lines()
            .position(|l| l.trim() == "id = \"local_search_keyword\"")
            .unwrap_or_else(|| unreachable!("the default catalog has local_search_keyword"));
        // Put the keyword search under maintenance, and drop the review reason `other`... by
        // renaming it, which is one removal and one addition.
        let mut lines: Vec<String> = DEFAULT_CATALOG.lines().map(str::to_owned).collect();
        lines.insert(line + 1, "status = \"maintenance\"".to_owned());
        let text = lines.join("\n").replacen("version = \"kakao-2026.11\"", "version = \"kakao-2026.12\"", 1);
        let reason = old.review_reasons.last().map(|r| r.id.clone()).unwrap_or_default();
        let text = text.replacen(&format!("id = \"{reason}\""), "id = \"renamed_reason\"", 1);
        let d = diff(&old, &parse(&text));
        let lines = d.lines();
        assert!(lines.contains(&"~ version: kakao-2026.11 -> kakao-2026.12".to_owned()), "{lines:?}");
        assert!(
            lines.contains(&"~ api local_search_keyword: status \"active\" -> \"maintenance\"".to_owned()),
            "{lines:?}"
        );
        assert!(lines.contains(&"+ review reason renamed_reason".to_owned()), "{lines:?}");
        assert!(lines.contains(&format!("- review reason {reason}")), "{lines:?}");
        assert_eq!(lines.len(), 4, "{lines:?}");
    }
}
