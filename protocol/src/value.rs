//! Limits every configuration value obeys, wherever it enters (put, gray release, import).
//!
//! A value is stored, kept in history, replayed from the change log and pushed inside
//! messages that wrap it in a few more levels of JSON. Every one of those forms must
//! read back with serde_json's default recursion limit (128) in the server, the SDK and
//! any other client, so values are refused beyond [`MAX_VALUE_DEPTH`] levels: far below
//! that limit, with room for every wrapper.

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
