//! Access tokens: who a request comes from and what it may do.
//!
//! The token file lists tokens by name with the SHA-256 of their secret (never the secret),
//! a role, and namespace glob patterns:
//!
//! ```toml
//! [[token]]
//! name = "deploy-bot"
//! secret_sha256 = "<hex sha256 of the secret>"
//! role = "write"                       # admin | write | report | read
//! namespaces = ["payments*", "search"] # admin ignores them
//! ```
//!
//! A request presents its secret as `Authorization: Bearer <secret>` (REST, and the
//! WebSocket upgrade), as `?token=<secret>` on `/v1/watch`, or as the WebSocket's first
//! message `{"type": "auth", "token": "<secret>"}`. Without a token file the server is open
//! and refuses to serve beyond loopback (see `Config::validate`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a token may do in its namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, in every namespace, including `/v1/clients` and subscribing to `*`.
    Admin,
    /// Read and change entries and gray releases of its namespaces.
    Write,
    /// Read, subscribe and evaluate in its namespaces.
    Read,
    /// What `read` may, and report outcomes for gray releases' guards: the role for the
    /// services whose reports can abort a release.
    Report,
}

impl Role {
    /// The role's name in token files and `/v1/whoami`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Write => "write",
            Role::Read => "read",
            Role::Report => "report",
        }
    }
}

/// What a request needs on a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Report outcomes to a gray release's guard (roles `report`, `write`, `admin`).
    Report,
    Write,
}

/// An authenticated caller.
#[derive(Debug)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    patterns: Vec<String>,
}

impl Principal {
    /// The namespace patterns of a non-admin token.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether the caller may have `access` to `namespace`.
    pub fn can(&self, access: Access, namespace: &str) -> bool {
        match (self.role, access) {
            (Role::Admin, _) => true,
            (Role::Read, Access::Write | Access::Report) | (Role::Report, Access::Write) => false,
            _ => self.patterns.iter().any(|p| glob_match(p, namespace)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSpec {
    name: String,
    secret_sha256: String,
    role: Role,
    #[serde(default)]
    namespaces: Vec<String>,
}

/// The configured tokens, by the hash of their secret.
pub struct Tokens {
    by_hash: HashMap<[u8; 32], Arc<Principal>>,
}

impl Tokens {
    /// Reads a token file; the error names the file and the problem.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("token file {}: {e}", path.display()))
    }

    /// Parses the TOML of a token file.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let file: TokenFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.token.is_empty() {
            return Err("it lists no [[token]]".into());
        }
        let mut by_hash = HashMap::new();
        for spec in file.token {
            if spec.name.is_empty() || spec.name.len() > 128 {
                return Err(format!("token name {:?} must be 1 to 128 bytes", spec.name));
            }
            let hash = parse_hex32(&spec.secret_sha256).ok_or_else(|| {
                format!("token {:?}: secret_sha256 must be 64 hex digits", spec.name)
            })?;
            if spec.role != Role::Admin && spec.namespaces.is_empty() {
                return Err(format!(
                    "token {:?} with role {:?} names no namespace",
                    spec.name, spec.role
                ));
            }
            let principal =
                Principal { name: spec.name.clone(), role: spec.role, patterns: spec.namespaces };
            if by_hash.insert(hash, Arc::new(principal)).is_some() {
                return Err(format!("token {:?} has the same secret as another token", spec.name));
            }
        }
        Ok(Tokens { by_hash })
    }

    /// The caller a secret belongs to.
    pub fn authenticate(&self, secret: &str) -> Option<Arc<Principal>> {
        self.by_hash.get(&Tokens::hash(secret)).cloned()
    }

    /// The hash a secret is known by.
    pub fn hash(secret: &str) -> [u8; 32] {
        Sha256::digest(secret.as_bytes()).into()
    }

    /// The first token whose hash satisfies `wanted`, with its hash.
    pub fn find(&self, wanted: impl Fn(&[u8; 32]) -> bool) -> Option<([u8; 32], Arc<Principal>)> {
        self.by_hash.iter().find(|(hash, _)| wanted(hash)).map(|(h, p)| (*h, p.clone()))
    }
}

/// Bytes as lowercase hex (hashes in keys, tickets and ETags).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// `*` matches any run of characters, `?` any one character; everything else itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, ni));
            pi += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            ni = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The bearer secret of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, secret) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn sha(secret: &str) -> String {
        Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn tokens() -> Tokens {
        Tokens::parse(&format!(
            r#"
[[token]]
name = "root"
secret_sha256 = "{}"
role = "admin"

[[token]]
name = "deploy-bot"
secret_sha256 = "{}"
role = "write"
namespaces = ["payments*", "search"]

[[token]]
name = "reader"
secret_sha256 = "{}"
role = "read"
namespaces = ["*"]

[[token]]
name = "canary-svc"
secret_sha256 = "{}"
role = "report"
namespaces = ["payments"]
"#,
            sha("s3cret-admin"),
            sha("s3cret-deploy"),
            sha("s3cret-read"),
            sha("s3cret-report")
        ))
        .expect("valid token file")
    }

    #[test]
    fn globs() {
        for (pattern, name, expected) in [
            ("payments*", "payments", true),
            ("payments*", "payments-eu", true),
            ("payments*", "pay", false),
            ("*", "anything", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*-eu", "checkout-eu", true),
            ("*-eu", "checkout-us", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("search", "search", true),
            ("search", "search2", false),
        ] {
            assert_eq!(glob_match(pattern, name), expected, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn bad_token_files_are_refused() {
        for (text, expected) in [
            ("", "no [[token]]"),
            ("[[token]]\nname = \"a\"\nsecret_sha256 = \"abc\"\nrole = \"read\"\nnamespaces = [\"x\"]", "64 hex digits"),
            (&format!("[[token]]\nname = \"a\"\nsecret_sha256 = \"{}\"\nrole = \"write\"", sha("x")), "names no namespace"),
            (&format!("[[token]]\nname = \"a\"\nsecret_sha256 = \"{}\"\nrole = \"owner\"", sha("x")), "owner"),
            ("not toml [", ""),
        ] {
            let err = Tokens::parse(text).err().expect("refused");
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
