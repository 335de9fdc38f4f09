//! Limits every configuration value obeys, wherever it enters (put, gray release, import).
//!
//! A value is stored, kept in history, replayed from the change log and pushed inside
//! messages that wrap it in a few more levels of JSON. Every one of those forms must
//! read back with serde_json's default recursion limit (128) in the server, the SDK and
//! any other client, so values are refused beyond [`MAX_VALUE_DEPTH`] levels: far below
//! that limit, with room for every wrapper.

use serde::Deserialize;
use serde_json::Value;

/// Deepest nesting of arrays and objects a value may have. A scalar has depth 0, `[]`
/// and `{}` depth 1, `[[1]]` depth 2.
pub const MAX_VALUE_DEPTH: usize = 64;

/// The nesting depth of a value (see [`MAX_VALUE_DEPTH`]).
pub fn depth(value: &Value) -> usize {
    // Iterative, so that the check itself cannot exhaust the stack whatever it is given.
    let mut deepest = 0;
    let mut pending: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, level)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        deepest = deepest.max(level + 1);
        pending.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// Refuses a value nested deeper than [`MAX_VALUE_DEPTH`]; `what` names it in the message.
pub fn check_depth(what: &str, value: &Value) -> Result<(), String> {
    let depth = depth(value);
    if depth > MAX_VALUE_DEPTH {
        return Err(format!(
            "{what} is nested {depth} levels deep; the limit is {MAX_VALUE_DEPTH}"
        ));
    }
    Ok(())
}

/// The size of a value's compact serialization, the size every limit counts.
pub fn compact_size(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` into a counter cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Deserializes an unsigned integer written in any JSON form of an integer: `150`, and
/// also `150.0` or `1.5e2`, which JSON Schema counts as integers too. Anything with a
/// fraction, a sign or beyond `u64` is refused.
pub fn integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(n) = number.as_u64() {
        return Ok(n);
    }
    // Beyond 2^53 a float no longer tells integers apart, so only exact ones pass.
    match number.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= 9_007_199_254_740_992.0 => Ok(f as u64),
        _ => Err(D::Error::custom(format!("{number} is not an unsigned integer"))),
    }
}

/// [`integer`] for an optional field.
pub fn optional_integer<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Integer(#[serde(deserialize_with = "integer")] u64);
    Ok(Option::<Integer>::deserialize(deserializer)?.map(|Integer(n)| n))
}

/// A value of `levels` nested arrays around `1` (for tests and examples).
pub fn nested(levels: usize) -> Value {
    (0..levels).fold(Value::from(1), |inner, _| Value::Array(vec![inner]))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn depth_counts_containers() {
        for (value, expected) in [
            (json!(1), 0),
            (json!("text"), 0),
            (json!([]), 1),
            (json!({}), 1),
            (json!([[1]]), 2),
            (json!({"a": [1, {"b": []}], "c": 2}), 4),
            (nested(64), 64),
        ] {
            assert_eq!(depth(&value), expected, "{value}");
        }
    }

    #[test]
    fn the_limit_is_inclusive() {
        assert!(check_depth("value", &nested(MAX_VALUE_DEPTH)).is_ok());
        let err = check_depth("gray value", &nested(MAX_VALUE_DEPTH + 1)).unwrap_err();
        assert_eq!(err, "gray value is nested 65 levels deep; the limit is 64");
    }

    #[test]
    fn integers_in_any_json_form() {
        #[derive(serde::Deserialize)]
        struct N(#[serde(deserialize_with = "integer")] u64);
        for (text, expected) in [
            ("150", Some(150)),
            ("150.0", Some(150)),
            ("1.5e2", Some(150)),
            ("18446744073709551615", Some(u64::MAX)),
        ] {
            assert_eq!(serde_json::from_str::<N>(text).ok().map(|n| n.0), expected, "{text}");
        }
        for text in ["1.5", "-1", "18446744073709551616", "\"1\"", "1e300"] {
            assert!(serde_json::from_str::<N>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn compact_size_ignores_the_input_whitespace() {
        let value: Value = serde_json::from_str("{ \"a\" :  [ 1 , 2 ] }").unwrap();
        assert_eq!(compact_size(&value), r#"{"a":[1,2]}"#.len());
    }

    #[test]
    fn numbers_and_key_order_read_back_as_written() {
        let text = r#"{"z":12345678901234567890123,"a":-0.1000000000000000055511151231257827}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&value).unwrap(), text);
    }
}
