//! Short-lived tickets for OFREP event streams: a browser's `EventSource` sends no
//! headers, so the stream URL authenticates itself, with a ticket that names the token it
//! stands for and expires, and holds no secret. Any node with the same token file checks
//! it: its MAC is keyed with the token's hash, which is never sent.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::auth::{hex, Principal, Tokens};

/// How long a ticket is good for; each bulk answer hands out a fresh one.
pub const TICKET_LIFETIME_SECS: i64 = 600;

fn hmac(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut inner_key = [0x36u8; 64];
    let mut outer_key = [0x5cu8; 64];
    for (i, byte) in key.iter().enumerate() {
        inner_key[i] ^= byte;
        outer_key[i] ^= byte;
    }
    let inner = Sha256::new().chain_update(inner_key).chain_update(message).finalize();
    Sha256::new().chain_update(outer_key).chain_update(inner).finalize().into()
}

/// A ticket for the holder of the token whose hash is `token_hash`, good until `expires`
/// (seconds since the epoch): `{expires}.{id}.{mac}`, `id` naming the token by the first
/// bytes of its hash's hash.
pub fn issue(token_hash: &[u8; 32], expires: i64) -> String {
    let id = hex(&Sha256::digest(token_hash)[..8]);
    let mac = hmac(token_hash, format!("{expires}.{id}").as_bytes());
    format!("{expires}.{id}.{}", hex(&mac))
}

/// The holder of a valid, unexpired ticket.
pub fn check(tokens: &Tokens, ticket: &str, now: i64) -> Option<Arc<Principal>> {
    let mut parts = ticket.split('.');
    let (expires, id, mac) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let expires: i64 = expires.parse().ok()?;
    if expires < now {
        return None;
    }
    let (hash, principal) = tokens.find(|hash| hex(&Sha256::digest(hash)[..8]) == id)?;
    let expected = hex(&hmac(&hash, format!("{expires}.{id}").as_bytes()));
    // Compared in full whatever differs first.
    let same = expected.len() == mac.len()
        && expected.bytes().zip(mac.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
    same.then_some(principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_hold_for_their_token_until_they_expire() {
        let tokens = crate::auth::tests::tokens();
        let hash: [u8; 32] = Sha256::digest(b"s3cret-deploy").into();
        let ticket = issue(&hash, 1_000);
        assert_eq!(check(&tokens, &ticket, 999).map(|p| p.name.clone()), Some("deploy-bot".into()));
        assert!(check(&tokens, &ticket, 1_001).is_none(), "expired");
        let forged = ticket.replacen("1000", "9000", 1);
        assert!(check(&tokens, &forged, 999).is_none(), "another expiry breaks the MAC");
        let other: [u8; 32] = Sha256::digest(b"not a token").into();
        assert!(check(&tokens, &issue(&other, 1_000), 999).is_none(), "no such token");
        assert!(!ticket.contains(&hex(&hash)), "the token's hash is not in the ticket");
    }
}
