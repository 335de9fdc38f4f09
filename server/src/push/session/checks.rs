//! What a subscription may ask for: its namespaces, its client id and labels, checked
//! before anything is registered.

use std::collections::BTreeMap;

use graycast_protocol::validate_name;
use graycast_protocol::ws::{ClientHello, ALL_NAMESPACES};

use crate::error::ApiError;

/// Most namespaces in one subscription.
pub const MAX_NAMESPACES: usize = 256;
/// Most labels a client may declare, and the longest label key or value and client id.
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_LEN: usize = 256;

/// Validates a subscription request before anything is registered.
pub fn check_subscription(namespaces: &[String], client: &ClientHello) -> Result<(), ApiError> {
    if namespaces.is_empty() {
        return Err(ApiError::BadRequest("subscribe names no namespace".into()));
    }
    if namespaces.len() > MAX_NAMESPACES {
        return Err(ApiError::BadRequest(format!(
            "subscribe names {} namespaces, the limit is {MAX_NAMESPACES}",
            namespaces.len()
        )));
    }
    if namespaces.iter().any(|n| n == ALL_NAMESPACES) {
        if namespaces.len() > 1 {
            return Err(ApiError::BadRequest(format!(
                "{ALL_NAMESPACES:?} subscribes to every namespace and cannot be mixed with names"
            )));
        }
        return check_client(client);
    }
    for name in namespaces {
        validate_name(name).map_err(|source| ApiError::InvalidName {
            what: "namespace",
            name: name.clone(),
            source,
        })?;
    }
    check_client(client)
}

fn check_client(client: &ClientHello) -> Result<(), ApiError> {
    if let Some(id) = &client.id {
        if id.is_empty() || id.len() > MAX_LABEL_LEN {
            return Err(ApiError::BadRequest(format!(
                "client id must be 1 to {MAX_LABEL_LEN} bytes, not {}",
                id.len()
            )));
        }
    }
    check_labels(&client.labels)
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::BadRequest(format!(
            "{} labels given, the limit is {MAX_LABELS}",
            labels.len()
        )));
    }
    if let Some((k, _)) =
        labels.iter().find(|(k, v)| k.len() > MAX_LABEL_LEN || v.len() > MAX_LABEL_LEN)
    {
        return Err(ApiError::BadRequest(format!(
            "label {k:?} is longer than {MAX_LABEL_LEN} bytes"
        )));
    }
    Ok(())
}
