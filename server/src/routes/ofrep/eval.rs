//! OFREP evaluation: a request's context read into a subject and attributes, and one
//! entry evaluated as the rollout algorithm says, in OFREP's words (reasons, variants, error codes).

use std::collections::BTreeMap;

use graycast_protocol::rollout::Reason;
use graycast_protocol::{evaluate, Entry, Variant};
use serde::Serialize;
use serde_json::{Map, Value};

/// Most fields a context may hold, counted at every level.
pub const MAX_CONTEXT_FIELDS: usize = 1000;

/// OFREP's error codes graycast answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    FlagNotFound,
    ParseError,
    InvalidContext,
    TargetingKeyMissing,
    TypeMismatch,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::FlagNotFound => "FLAG_NOT_FOUND",
            Code::ParseError => "PARSE_ERROR",
            Code::InvalidContext => "INVALID_CONTEXT",
            Code::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            Code::TypeMismatch => "TYPE_MISMATCH",
        }
    }
}

/// Why a request or a flag could not be evaluated.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: Code,
    pub details: String,
}

impl Failure {
    pub fn new(code: Code, details: impl Into<String>) -> Failure {
        Failure { code, details: details.into() }
    }
}

/// Who a request evaluates for: `targetingKey` and the other top-level attributes.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub struct Context {
    pub subject: Option<String>,
    pub attrs: BTreeMap<String, String>,
}

/// Reads a request body `{"context": {...}}` (a missing context is an empty one).
pub fn read_context(body: &[u8]) -> Result<Context, Failure> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            Failure::new(Code::InvalidContext, "the context is nested too deeply")
        } else {
            Failure::new(Code::ParseError, format!("the body is not valid JSON: {e}"))
        }
    })?;
    let Value::Object(mut body) = value else {
        return Err(Failure::new(
            Code::ParseError,
            "the body must be a JSON object {\"context\": {...}}",
        ));
    };
    let context = match body.remove("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(context)) => context,
        Some(_) => return Err(Failure::new(Code::InvalidContext, "context must be an object")),
    };
    let context = Value::Object(context);
    let depth = graycast_protocol::value::depth(&context);
    if depth > graycast_protocol::value::MAX_VALUE_DEPTH {
        return Err(Failure::new(
            Code::InvalidContext,
            format!(
                "the context is nested {depth} levels deep; the limit is {}",
                graycast_protocol::value::MAX_VALUE_DEPTH
            ),
        ));
    }
    let fields = count_fields(&context);
    if fields > MAX_CONTEXT_FIELDS {
        return Err(Failure::new(
            Code::InvalidContext,
            format!("the context has {fields} fields; the limit is {MAX_CONTEXT_FIELDS}"),
        ));
    }
    let Value::Object(context) = context else { return Ok(Context::default()) };
    let mut read = Context::default();
    for (name, value) in context {
        if name == "targetingKey" {
            match value {
                Value::String(subject) => read.subject = Some(subject),
                Value::Null => {}
                _ => {
                    return Err(Failure::new(Code::InvalidContext, "targetingKey must be a string"))
                }
            }
            continue;
        }
        let text = match value {
            Value::String(text) => text,
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            // Nested objects, arrays and nulls are no attribute rules can match.
            _ => continue,
        };
        read.attrs.insert(name, text);
    }
    Ok(read)
}

/// Fields of a value at every level (array items count as fields).
fn count_fields(value: &Value) -> usize {
    let mut count = 0;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(fields) => {
                count += fields.len();
                pending.extend(fields.values());
            }
            Value::Array(items) => {
                count += items.len();
                pending.extend(items.iter());
            }
            _ => {}
        }
    }
    count
}

/// A flag's successful evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluated {
    pub key: String,
    pub value: Value,
    pub reason: &'static str,
    pub variant: &'static str,
    pub metadata: Map<String, Value>,
}

/// A flag's failed evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    pub key: String,
    #[serde(rename = "errorCode")]
    pub error_code: Code,
    #[serde(rename = "errorDetails")]
    pub error_details: String,
}

/// One flag of an answer.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Flag {
    Evaluated(Evaluated),
    Failed(Failed),
}

/// Evaluates `entry` for `context`, answering under the flag key `key`.
pub fn evaluate_entry(key: &str, entry: &Entry, context: &Context) -> Flag {
    let failed = |code, details: String| {
        Flag::Failed(Failed { key: key.to_owned(), error_code: code, error_details: details })
    };
    if entry.gray.is_some() && context.subject.is_none() {
        return failed(
            Code::TargetingKeyMissing,
            format!("a gray release runs on {key}: the context needs a targetingKey"),
        );
    }
    let decision = evaluate(entry.gray.as_ref(), context.subject.as_deref(), &context.attrs);
    let value = match (&decision.variant, &entry.gray) {
        (Variant::Gray, Some(gray)) => gray.value.clone(),
        _ => entry.value.clone(),
    };
    if matches!(value, Value::Array(_) | Value::Null) {
        return failed(
            Code::TypeMismatch,
            format!("the value of {key} is {}, which OFREP cannot carry", kind(&value)),
        );
    }
    let reason = match decision.reason {
        Reason::NoGray => "STATIC",
        Reason::Deny | Reason::Allow | Reason::RuleMismatch => "TARGETING_MATCH",
        Reason::Percent | Reason::Random => "SPLIT",
    };
    let mut metadata = Map::new();
    metadata.insert("namespace".into(), Value::String(entry.namespace.clone()));
    metadata.insert("revision".into(), Value::from(entry.revision));
    if let Some(bucket) = decision.bucket {
        metadata.insert("bucket".into(), Value::from(bucket));
    }
    Flag::Evaluated(Evaluated {
        key: key.to_owned(),
        value,
        reason,
        variant: match decision.variant {
            Variant::Gray => "gray",
            Variant::Stable => "stable",
        },
        metadata,
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "an array",
        _ => "null",
    }
}
