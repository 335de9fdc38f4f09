//! Reading what the user typed: values, rules, ramp steps, durations, guards.

use std::io::Read as _;

use graycast_client::{Guard, Rule, RuleOp, Step};
use graycast_protocol::gray::check_percent;
use serde_json::Value;

use crate::Failure;

/// A value argument: JSON text, `@FILE`, or `@-` for stdin.
pub fn read_value(arg: &str) -> Result<Value, Failure> {
    let (text, from) = match arg.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::Usage(format!("cannot read the value from stdin: {e}")))?;
            (text, Some("on stdin".to_owned()))
        }
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| Failure::Usage(format!("cannot read the value from {path}: {e}")))?,
            Some(format!("in {path}")),
        ),
        None => (arg.to_owned(), None),
    };
    serde_json::from_str(&text).map_err(|e| {
        Failure::Usage(match from {
            Some(from) => format!(
                "the value {from} is not JSON ({e}); a string is written in JSON quotes, \
                 such as \"hello\""
            ),
            None => not_json(&text, &e),
        })
    })
}

/// Why a value typed on the command line is not JSON, and how to write it. Most often it
/// is a string whose quotes the shell took (`put ns k hello`): show it JSON-quoted inside
/// shell quotes, ready to paste.
fn not_json(text: &str, err: &serde_json::Error) -> String {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return "the value is empty; for an empty string write '\"\"'".into();
    }
    // Text that tries to be JSON: the parser's reason says what is wrong.
    if trimmed.starts_with(['{', '[', '"']) {
        return format!("the value is not JSON ({err})");
    }
    let quoted = Value::String(text.to_owned()).to_string();
    let shell = format!("'{}'", quoted.replace('\'', r"'\''"));
    let lower = trimmed.to_ascii_lowercase();
    let literal = match lower.as_str() {
        "true" | "false" => format!("; for the boolean write {lower}"),
        "null" => "; for null write null".to_owned(),
        _ => String::new(),
    };
    format!(
        "{quoted} is not JSON; for a string write it with JSON quotes inside shell quotes: \
         {shell}{literal}"
    )
}

/// `ATTRIBUTE:OP:V1,V2`.
pub fn parse_rule(text: &str) -> Result<Rule, Failure> {
    let usage = || Failure::Usage(format!("--rule {text:?} is not ATTRIBUTE:OP:V1,V2"));
    let (attribute, rest) = text.split_once(':').ok_or_else(usage)?;
    let (op, values) = rest.split_once(':').ok_or_else(usage)?;
    let op: RuleOp = serde_json::from_value(Value::String(op.to_owned())).map_err(|_| {
        Failure::Usage(format!(
            "rule op {op:?} is not one of in, not_in, eq, prefix, semver_gte, semver_lt"
        ))
    })?;
    Ok(Rule {
        attribute: attribute.to_owned(),
        op,
        values: values.split(',').map(str::to_owned).collect(),
    })
}

/// `PERCENT[:HOLD]`.
pub fn parse_step(text: &str) -> Result<Step, Failure> {
    let usage =
        |why: String| Failure::Usage(format!("--step {text:?} is not PERCENT[:HOLD]: {why}"));
    let (percent, hold) = match text.split_once(':') {
        Some((percent, hold)) => (percent, Some(parse_duration(hold).map_err(usage)?)),
        None => (text, None),
    };
    let percent: f64 =
        percent.parse().map_err(|_| usage(format!("{percent:?} is not a percent")))?;
    check_percent("--step percent", percent).map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(Step { percent, hold_secs: hold })
}

/// A duration in seconds: `90` (seconds), `30s`, `10m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("the hold {text:?} is not a number followed by s, m, h or d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("the hold's unit {other:?} is not s, m, h or d")),
    };
    number.checked_mul(scale).ok_or_else(|| format!("the hold {text:?} is too long"))
}

/// `MAX_ERROR_RATE:MIN_SAMPLES`.
pub fn parse_guard(text: &str) -> Result<Guard, Failure> {
    let usage = || Failure::Usage(format!("--guard {text:?} is not MAX_ERROR_RATE:MIN_SAMPLES"));
    let (rate, min) = text.split_once(':').ok_or_else(usage)?;
    Ok(Guard {
        max_error_rate: rate.parse().map_err(|_| usage())?,
        min_samples: min.parse().map_err(|_| usage())?,
    })
}

/// The JSON type of a value, as people name it (integers apart from other numbers: a
/// service reading an integer fails on `2.5`).
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(n)
            if n.as_f64().is_some_and(|f| f.fract() == 0.0)
                && !n.to_string().contains(['.', 'e', 'E']) =>
        {
            "an integer"
        }
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a reader of `old`'s type can read `new`: the same kind, an integer where any
/// number was, or `null` either way (a value that is unset).
pub fn same_kind(old: &Value, new: &Value) -> bool {
    let (a, b) = (kind_of(old), kind_of(new));
    a == b || (a == "a number" && b == "an integer") || old.is_null() || new.is_null()
}

/// Splits a comma-separated list, dropping empty items.
pub fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("5m"), Ok(300));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert!(parse_duration("5 min").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn values_not_json() {
        let said = |text: &str| match read_value(text) {
            Err(Failure::Usage(message)) => message,
            _ => panic!("{text:?} was taken"),
        };
        assert_eq!(
            said("hello"),
            r#""hello" is not JSON; for a string write it with JSON quotes inside shell quotes: '"hello"'"#
        );
        assert!(said("it's").ends_with(r#"'"it'\''s"'"#), "{}", said("it's"));
        assert!(said("True").ends_with("'\"True\"'; for the boolean write true"));
        assert!(said("{a: 1}").starts_with("the value is not JSON (key must be a string"));
        assert!(said("").starts_with("the value is empty"));
        assert_eq!(read_value("\"hello\"").ok(), Some(json!("hello")));
    }

    #[test]
    fn kinds() {
        assert!(same_kind(&json!(250), &json!(300)));
        assert!(same_kind(&json!(2.5), &json!(3)));
        assert!(!same_kind(&json!(250), &json!(2.5)));
        assert!(!same_kind(&json!(250), &json!("oops")));
        assert!(same_kind(&json!(12345678901234567890u64), &json!(1)));
        assert!(!same_kind(&json!({"a": 1}), &json!([1])));
        assert!(same_kind(&json!(null), &json!("x")));
    }
}
