//! Typed keys: a key read as one Rust type, falling back to the last value that decoded.
//!
//! Anyone with write access can store any JSON under a key, `"oops"` where a service
//! reads a number included. [`Client::get`] reports that as [`Error::Decode`] at each
//! read; a [`Typed`] handle instead keeps serving the last value that did decode (the
//! last known good configuration), logs the bad one once, and tells about it in
//! [`Typed::last_error`].

use std::sync::{Arc, Mutex, PoisonError};

use graycast_protocol::rollout::Variant;
use graycast_protocol::Revision;
use serde::de::DeserializeOwned;

use crate::client::decode;
use crate::gray::Context;
use crate::rest::check_names;
use crate::{Client, Error};

/// A key of the cache read as `T`, falling back to the last value that decoded. Make one
/// per key and share it (in an `Arc`) between tasks.
pub struct Typed<T> {
    client: Client,
    namespace: String,
    key: String,
    state: Mutex<Decoded<T>>,
}

/// What was decoded, as of an entry revision.
struct Decoded<T> {
    /// The entry revision `stable` and `gray` were decoded from.
    revision: Option<Revision>,
    /// The last stable value that decoded.
    stable: Option<Arc<T>>,
    /// The gray value of the entry at `revision`, when it decoded.
    gray: Option<Arc<T>>,
    /// Why the value at `revision` (stable or gray) did not decode.
    error: Option<Error>,
}

impl Client {
    /// A typed handle on a key of a subscribed namespace: reads decode as `T` and fall
    /// back to the last value that decoded. Fails for a namespace the client does not
    /// follow or an invalid name.
    pub fn typed<T: DeserializeOwned>(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Typed<T>, Error> {
        check_names(namespace, Some(key))?;
        self.check_subscribed(namespace)?;
        Ok(Typed {
            client: self.clone(),
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            state: Mutex::new(Decoded { revision: None, stable: None, gray: None, error: None }),
        })
    }
}

impl<T: DeserializeOwned> Typed<T> {
    /// The stable value: the current one if it decodes as `T`, else the last one that
    /// did; `None` when the key does not exist (or never held a `T`).
    pub fn get(&self) -> Option<Arc<T>> {
        let entry = self.client.entry(&self.namespace, &self.key)?;
        let state = self.refresh(entry.revision);
        state.stable.clone()
    }

    /// The value `context` gets: the gray value when a running release puts it in gray
    /// and that value decodes as `T`, else the stable value as [`Typed::get`] gives it.
    pub fn get_for(&self, context: &Context) -> Option<Arc<T>> {
        let evaluation = self.client.evaluate(&self.namespace, &self.key, context)?;
        let state = self.refresh(evaluation.entry.revision);
        match (evaluation.variant, &state.gray) {
            (Variant::Gray, Some(gray)) => Some(gray.clone()),
            _ => state.stable.clone(),
        }
    }

    /// Why the current value (stable or gray) does not decode as `T`, if it does not.
    pub fn last_error(&self) -> Option<Error> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).error.clone()
    }

    /// Decodes the entry at `revision` unless done already.
    fn refresh(&self, revision: Revision) -> std::sync::MutexGuard<'_, Decoded<T>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.revision == Some(revision) {
            return state;
        }
        let Some(entry) = self.client.entry(&self.namespace, &self.key) else { return state };
        state.revision = Some(entry.revision);
        state.error = None;
        match decode::<T>(&self.namespace, &self.key, &entry.value) {
            Ok(value) => state.stable = Some(Arc::new(value)),
            Err(err) => {
                tracing::error!(namespace = %self.namespace, key = %self.key, revision = entry.revision, error = %err,
                    "a configuration value does not have the expected type; keeping the last good one");
                state.error = Some(err);
            }
        }
        state.gray = match &entry.gray {
            None => None,
            Some(gray) => match decode::<T>(&self.namespace, &self.key, &gray.value) {
                Ok(value) => Some(Arc::new(value)),
                Err(err) => {
                    tracing::error!(namespace = %self.namespace, key = %self.key, revision = entry.revision, error = %err,
                        "a gray value does not have the expected type; serving the stable value");
                    state.error = Some(err);
                    None
                }
            },
        };
        state
    }
}

impl<T> std::fmt::Debug for Typed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed")
            .field("namespace", &self.namespace)
            .field("key", &self.key)
            .field("type", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}
