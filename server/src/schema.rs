//! Typed configs: a namespace's JSON Schemas (2020-12), by exact key or glob, and the check
//! every write of a value passes.
//!
//! A namespace's schemas are one entry of the reserved namespace [`SCHEMAS_NAMESPACE`] (key:
//! the namespace typed), so they are revisioned, kept in history, exported, imported,
//! pushed and rolled back as values are; their changes carry the op `schema`. The store
//! checks the values a write brings against the schemas as of that write (see
//! `store::plan`), so no write path can skip it. A schema is compiled once per revision.
//!
//! Safety: patterns run on the `regex` crate's engine, linear in the text (no
//! backtracking, so no ReDoS); references resolve only inside the document (graycast never
//! fetches a schema); a document is at most [`MAX_SCHEMA_BYTES`] and [`MAX_SCHEMA_DEPTH`]
//! deep.

use std::collections::BTreeMap;
use std::sync::Arc;

use dashmap::DashMap;
use graycast_protocol::{Entry, Revision};
use jsonschema::{PatternOptions, Validator};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::glob_match;

/// The reserved namespace holding each namespace's schemas, keyed by namespace name.
pub const SCHEMAS_NAMESPACE: &str = "graycast.schemas";
/// Most bytes of a namespace's schema document (its `schemas` serialized).
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Deepest nesting of a schema document.
pub const MAX_SCHEMA_DEPTH: usize = 32;
/// Most schemas (keys and globs) of one namespace.
pub const MAX_SCHEMAS: usize = 1000;
/// Most violations an answer lists (a count says how many there were).
pub const MAX_LISTED: usize = 100;

/// What a schema change does to live values it breaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Refused (409) while any live stable or gray value breaks it.
    #[default]
    Strict,
    /// Accepted; values it breaks stay as they are until written again, and every new
    /// write is held to it (as Kubernetes ratchets unchanged fields).
    Ratchet,
}

/// A namespace's schemas, as stored (the value of its entry in [`SCHEMAS_NAMESPACE`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaDocument {
    /// JSON Schemas (2020-12) by exact key or glob (`*` any run of characters). A key takes
    /// the schema of its exact name, else of the longest matching glob.
    #[schema(value_type = Object)]
    pub schemas: BTreeMap<String, Value>,
    #[serde(default)]
    pub mode: Mode,
    /// Schemas the `schemas` may `$ref` by absolute URI (shared definitions), supplied with
    /// the document: graycast never fetches a reference.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub resources: BTreeMap<String, Value>,
}

/// One way a value breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Violation {
    pub key: String,
    /// `stable` or `gray`: which of the key's values.
    pub variant: String,
    /// Where in the value, as a JSON pointer (`""` for the whole value).
    pub path: String,
    /// The schema keyword that refused it (`type`, `required`, `maximum`…).
    pub keyword: String,
    pub message: String,
}

/// A namespace's schemas, compiled.
pub struct Compiled {
    exact: BTreeMap<String, Validator>,
    /// Longest glob first: the first that matches is the key's.
    globs: Vec<(String, Validator)>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&String> =
            self.exact.keys().chain(self.globs.iter().map(|(g, _)| g)).collect();
        f.debug_struct("Compiled").field("schemas", &names).finish()
    }
}

impl Compiled {
    /// Checks and compiles a schema document; the error says which schema and why.
    pub fn compile(document: &SchemaDocument) -> Result<Compiled, String> {
        if document.schemas.len() > MAX_SCHEMAS {
            return Err(format!(
                "{} schemas; a namespace has at most {MAX_SCHEMAS}",
                document.schemas.len()
            ));
        }
        let size = graycast_protocol::value::compact_size(&serde_json::json!(document.schemas))
            + graycast_protocol::value::compact_size(&serde_json::json!(document.resources));
        if size > MAX_SCHEMA_BYTES {
            return Err(format!(
                "the schemas take {size} bytes; the limit is {MAX_SCHEMA_BYTES} (64 KiB)"
            ));
        }
        for (uri, resource) in &document.resources {
            if depth(resource) > MAX_SCHEMA_DEPTH {
                return Err(format!(
                    "the resource {uri:?} is nested deeper than {MAX_SCHEMA_DEPTH} levels"
                ));
            }
        }
        let registry = jsonschema::Registry::new()
            .draft(jsonschema::Draft::Draft202012)
            .extend(document.resources.iter())
            .and_then(|registry| registry.prepare())
            .map_err(|e| format!("the resources are not usable: {e}"))?;
        let mut exact = BTreeMap::new();
        let mut globs = Vec::new();
        for (name, schema) in &document.schemas {
            let pattern = name.replace('*', "");
            if pattern.is_empty() && name != "*" || !valid_name(&pattern) {
                return Err(format!(
                    "{name:?} is neither a key name nor a glob of one (letters, digits, `.`, \
                     `_`, `-` and `*`)"
                ));
            }
            if depth(schema) > MAX_SCHEMA_DEPTH {
                return Err(format!(
                    "the schema of {name:?} is nested deeper than {MAX_SCHEMA_DEPTH} levels"
                ));
            }
            let validator = jsonschema::draft202012::options()
                .with_pattern_options(PatternOptions::regex())
                // References resolve inside the document and its resources: nothing is
                // fetched.
                .offline()
                .with_registry(&registry)
                .build(schema)
                .map_err(|e| {
                    format!("the schema of {name:?} is not valid JSON Schema 2020-12: {e}")
                })?;
            if name.contains('*') {
                globs.push((name.clone(), validator));
            } else {
                exact.insert(name.clone(), validator);
            }
        }
        globs.sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Ok(Compiled { exact, globs })
    }

    /// The schema a key takes, if any.
    fn of(&self, key: &str) -> Option<&Validator> {
        self.exact
            .get(key)
            .or_else(|| self.globs.iter().find(|(glob, _)| glob_match(glob, key)).map(|(_, v)| v))
    }

    /// Whether a key has a schema.
    pub fn types(&self, key: &str) -> bool {
        self.of(key).is_some()
    }

    /// How `value`, the `variant` of `key`, breaks its schema (nothing when it has none).
    pub fn check(&self, key: &str, variant: &str, value: &Value) -> Vec<Violation> {
        let Some(validator) = self.of(key) else { return Vec::new() };
        if validator.is_valid(value) {
            return Vec::new();
        }
        validator
            .iter_errors(value)
            .take(MAX_LISTED)
            .map(|error| Violation {
                key: key.to_owned(),
                variant: variant.to_owned(),
                path: error.instance_path().as_str().to_owned(),
                keyword: error.kind().keyword().to_owned(),
                message: error.to_string(),
            })
            .collect()
    }

    /// How an entry's live values (stable, and gray if a release runs) break the schemas.
    pub fn check_entry(&self, entry: &Entry) -> Vec<Violation> {
        let mut violations = self.check(&entry.key, "stable", &entry.value);
        if let Some(gray) = &entry.gray {
            violations.extend(self.check(&entry.key, "gray", &gray.value));
        }
        violations
    }
}

fn valid_name(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && text.len() <= 128
}

/// How deeply a JSON value nests (a scalar is 1).
fn depth(value: &Value) -> usize {
    // Iterative, so that a hostile document cannot overflow the stack here either.
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((value, level)) = stack.pop() {
        deepest = deepest.max(level);
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, level + 1))),
            Value::Object(fields) => stack.extend(fields.values().map(|v| (v, level + 1))),
            _ => {}
        }
    }
    deepest
}

/// The compiled schemas of every typed namespace, each compiled once per revision.
#[derive(Default)]
pub struct Schemas {
    compiled: DashMap<String, (Revision, Arc<Compiled>)>,
}

impl Schemas {
    /// The compiled form of a namespace's schema entry (an entry of [`SCHEMAS_NAMESPACE`]).
    /// A stored document that no longer compiles (it did when written) types nothing.
    pub fn compiled(&self, entry: &Entry) -> Option<Arc<Compiled>> {
        if let Some(held) = self.compiled.get(&entry.key) {
            if held.0 == entry.revision {
                return Some(held.1.clone());
            }
        }
        let compiled = serde_json::from_value::<SchemaDocument>(entry.value.clone())
            .map_err(|e| e.to_string())
            .and_then(|document| Compiled::compile(&document));
        match compiled {
            Ok(compiled) => {
                let compiled = Arc::new(compiled);
                self.compiled.insert(entry.key.clone(), (entry.revision, compiled.clone()));
                Some(compiled)
            }
            Err(err) => {
                tracing::error!(namespace = %entry.key, error = %err, "stored schemas do not compile; they type nothing");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn compiled(schemas: Value) -> Result<Compiled, String> {
        Compiled::compile(&SchemaDocument {
            schemas: serde_json::from_value(schemas).unwrap(),
            mode: Mode::Strict,
            resources: BTreeMap::new(),
        })
    }

    #[test]
    fn the_exact_name_wins_then_the_longest_glob() {
        let c = compiled(json!({
            "timeout_ms": {"type": "integer"},
            "*": {"type": "string"},
            "feature.*": {"type": "boolean"},
        }))
        .unwrap();
        assert!(c.check("timeout_ms", "stable", &json!(5)).is_empty());
        assert!(c.check("feature.x", "stable", &json!(true)).is_empty());
        assert!(c.check("banner", "stable", &json!("hi")).is_empty());
        let refused = c.check("banner", "gray", &json!(3));
        assert_eq!(refused.len(), 1);
        assert_eq!((refused[0].variant.as_str(), refused[0].keyword.as_str()), ("gray", "type"));
    }

    #[test]
    fn violations_name_the_path_and_keyword() {
        let c = compiled(json!({"db": {
            "type": "object",
            "properties": {"pool": {"type": "integer", "minimum": 1}},
            "required": ["host"],
        }}))
        .unwrap();
        let mut refused = c.check("db", "stable", &json!({"pool": 0}));
        refused.sort_by(|a, b| a.keyword.cmp(&b.keyword));
        let got: Vec<(&str, &str)> =
            refused.iter().map(|v| (v.path.as_str(), v.keyword.as_str())).collect();
        assert_eq!(got, [("/pool", "minimum"), ("", "required")]);
    }

    #[test]
    fn limits_and_remote_references_are_refused() {
        let deep = (0..40).fold(json!({"type": "integer"}), |s, _| json!({"items": s}));
        assert!(compiled(json!({"k": deep})).unwrap_err().contains("deeper"));
        let big = json!({"k": {"enum": vec!["x".repeat(100); 700]}});
        assert!(compiled(big).unwrap_err().contains("64 KiB"));
        let remote = json!({"k": {"$ref": "https://example.com/schema.json"}});
        assert!(compiled(remote).is_err());
        assert!(compiled(json!({"a b": {}})).is_err());
        assert!(compiled(json!({"k": {"type": "no-such-type"}})).is_err());
    }

    #[test]
    fn a_backtracking_pattern_runs_in_linear_time() {
        let c = compiled(json!({"k": {"type": "string", "pattern": "^(a+)+$"}})).unwrap();
        let started = std::time::Instant::now();
        let text = format!("{}!", "a".repeat(30));
        assert_eq!(c.check("k", "stable", &json!(text)).len(), 1);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn a_recursive_reference_compiles_and_validates() {
        let tree = json!({"k": {
            "$defs": {"node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
            "$ref": "#/$defs/node",
        }});
        let c = compiled(tree).unwrap();
        assert!(c.check("k", "stable", &json!({"children": [{"children": []}]})).is_empty());
        assert_eq!(c.check("k", "stable", &json!({"children": [{"children": 1}]})).len(), 1);
    }
}
