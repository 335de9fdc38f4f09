//! TLS for `https://` endpoints: rustls, trusting the system's roots and, when given, the
//! certificates of a CA file (for servers with a private CA or a self-signed certificate).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::Error;

/// The system's root certificates, read once per process: reading and parsing them takes
/// tens of milliseconds, which a process building many clients would pay for each.
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system certificate rustls cannot use is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        roots
    })
}

/// The client configuration shared by REST calls and the push connection.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = system_roots().clone();
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect()).map_err(|e| {
                Error::Config(format!("cannot read the CA file {}: {e}", path.display()))
            })?;
        if certs.is_empty() {
            return Err(Error::Config(format!(
                "the CA file {} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                Error::Config(format!("a certificate of {} is not usable: {e}", path.display()))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
