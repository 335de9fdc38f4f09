//! The `Idempotency-Key` of a write (IETF httpapi draft "The Idempotency-Key HTTP Header
//! Field"): what the store keeps to apply the write at most once and to answer a repeat
//! with the first outcome.

use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpMessage, HttpRequest};
use sha2::{Digest, Sha256};

use crate::auth::hex;
use crate::error::ApiError;
use crate::store::Idempotency;

/// The header's name.
pub const HEADER: &str = "idempotency-key";

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 255;

/// The hash of a write's body, noted while it is read.
#[derive(Clone, Copy)]
struct BodyHash([u8; 32]);

/// Notes the body of a write that has an `Idempotency-Key`, for its fingerprint.
pub(crate) fn note_body(req: &HttpRequest, body: &[u8]) {
    if req.headers().contains_key(HEADER) {
        req.extensions_mut().insert(BodyHash(Sha256::digest(body).into()));
    }
}

/// The request's `Idempotency-Key`, if it has one: 1 to 255 visible ASCII characters,
/// scoped to the request's credentials, with the fingerprint of what the request asks
/// (method, path, query, conditions and body).
pub(crate) fn of_request(req: &HttpRequest) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let key = value.as_bytes();
    if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.iter().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_BYTES} visible ASCII characters \
             (a UUID is a good choice)"
        )));
    }
    let body = req.extensions().get::<BodyHash>().copied().unwrap_or(BodyHash([0; 32]));
    let headers = req.headers();
    let mut scope = Sha256::new();
    field(&mut scope, header_bytes(headers, &header::AUTHORIZATION));
    field(&mut scope, key);
    let mut asked = Sha256::new();
    field(&mut asked, req.method().as_str().as_bytes());
    field(&mut asked, req.path().as_bytes());
    field(&mut asked, req.query_string().as_bytes());
    field(&mut asked, header_bytes(headers, &header::IF_MATCH));
    field(&mut asked, header_bytes(headers, &header::IF_NONE_MATCH));
    field(&mut asked, &body.0);
    Ok(Some(Idempotency { key: hex(&scope.finalize()), fingerprint: hex(&asked.finalize()) }))
}

fn header_bytes<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> &'a [u8] {
    headers.get(name).map_or(&[][..], |v| v.as_bytes())
}

/// Hashes a length-prefixed field, so that fields cannot run into each other.
fn field(hash: &mut Sha256, bytes: &[u8]) {
    hash.update((bytes.len() as u64).to_be_bytes());
    hash.update(bytes);
}
