//! Reloading without a restart: SIGHUP reads the token file and the TLS certificate and key
//! again. What loads replaces what was loaded, for new requests and new TLS handshakes at
//! once; open connections stay as they are. A file that does not load keeps the previous
//! one in service, is logged with the reason and counts as a failed reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use crate::auth::Tokens;
use crate::metrics::Metrics;

/// A value replaced as a whole, while readers keep the one they took.
#[derive(Debug)]
pub struct Reloadable<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Reloadable<T> {
    pub fn new(value: T) -> Reloadable<T> {
        Reloadable { current: RwLock::new(Arc::new(value)) }
    }

    /// The value as last loaded.
    pub fn get(&self) -> Arc<T> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set(&self, value: T) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(value);
    }
}

/// The server's certificate chain and key, as TLS handshakes ask for them.
#[derive(Debug)]
pub struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    loaded: Reloadable<CertifiedKey>,
}

impl Certificate {
    /// Reads the certificate chain and key (PEM), checking that they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Certificate, String> {
        Ok(Certificate {
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded: Reloadable::new(certified(cert, key)?),
        })
    }

    fn reload(&self) -> Result<(), String> {
        self.loaded.set(certified(&self.cert, &self.key)?);
        Ok(())
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.loaded.get())
    }
}

fn certified(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("cannot read the certificates of {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the private key of {}: {e}", key.display()))?;
    CertifiedKey::from_der(certs, private, &rustls::crypto::ring::default_provider())
        .map_err(|e| format!("the TLS certificate and key do not fit together: {e}"))
}

/// What SIGHUP reloads.
pub struct Reloads {
    pub tokens: Option<(PathBuf, Arc<Reloadable<Tokens>>)>,
    pub certificate: Option<Arc<Certificate>>,
    pub metrics: Arc<Metrics>,
}

impl Reloads {
    /// Reloads everything once; whether all of it loaded.
    pub fn reload(&self) -> bool {
        let mut ok = true;
        if let Some((path, tokens)) = &self.tokens {
            match Tokens::load(path) {
                Ok(loaded) => {
                    tracing::info!(path = %path.display(), "token file reloaded");
                    tokens.set(loaded);
                }
                Err(err) => {
                    tracing::error!(error = %err, "token file not reloaded; the previous tokens stay in service");
                    ok = false;
                }
            }
        }
        if let Some(certificate) = &self.certificate {
            match certificate.reload() {
                Ok(()) => {
                    tracing::info!(cert = %certificate.cert.display(), "TLS certificate reloaded")
                }
                Err(err) => {
                    tracing::error!(error = %err, "TLS certificate not reloaded; the previous one stays in service");
                    ok = false;
                }
            }
        }
        self.metrics.record_reload(ok);
        ok
    }

    /// Reloads on every SIGHUP until the server stops.
    pub async fn on_hangup(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut hangups =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(signal) => signal,
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for SIGHUP; reloading is off");
                    return;
                }
            };
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                    // Reading files blocks: off the async workers.
                    let reloads = self.clone();
                    let _ = tokio::task::spawn_blocking(move || reloads.reload()).await;
                }
            }
        }
    }
}
