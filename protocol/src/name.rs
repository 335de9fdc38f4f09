//! Validation of namespace and key names: `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.

use std::fmt;

/// The longest namespace or key name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong(usize),
    /// The name starts with a character other than an ASCII letter or digit.
    BadStart(char),
    /// The name contains a character outside `A-Z a-z 0-9 . _ -`.
    BadChar(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "name is empty"),
            NameError::TooLong(len) => {
                write!(f, "name is {len} bytes long, the limit is {MAX_NAME_LEN}")
            }
            NameError::BadStart(c) => {
                write!(f, "name must start with a letter or digit, not {c:?}")
            }
            NameError::BadChar(c) => {
                write!(f, "name may only contain letters, digits, '.', '_' and '-', not {c:?}")
            }
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a namespace or key name against the naming rule of the contract.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let mut chars = name.chars();
    let first = chars.next().ok_or(NameError::Empty)?;
    if !first.is_ascii_alphanumeric() {
        return Err(NameError::BadStart(first));
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(NameError::BadChar(bad));
    }
    // Every accepted character is one byte, so the byte length is the character count.
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, expected: Result<(), NameError>) {
        assert_eq!(validate_name(name), expected, "name {name:?}");
    }

    #[test]
    fn names() {
        check("payments", Ok(()));
        check("a", Ok(()));
        check("0", Ok(()));
        check("timeout_ms", Ok(()));
        check("svc.v2-beta_1", Ok(()));
        check(&"x".repeat(128), Ok(()));
        check(&"x".repeat(129), Err(NameError::TooLong(129)));
        check("", Err(NameError::Empty));
        check("-x", Err(NameError::BadStart('-')));
        check(".hidden", Err(NameError::BadStart('.')));
        check("_x", Err(NameError::BadStart('_')));
        check("a/b", Err(NameError::BadChar('/')));
        check("a b", Err(NameError::BadChar(' ')));
        check("café", Err(NameError::BadChar('é')));
        check("a\0", Err(NameError::BadChar('\0')));
        check("é", Err(NameError::BadStart('é')));
    }
}
