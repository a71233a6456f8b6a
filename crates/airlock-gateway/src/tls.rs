//! TLS on the gateway's own listener (`server.tls_cert` / `server.tls_key`).
//!
//! Off loopback, agents send Airlock keys and whole prompts to the gateway; without TLS they
//! cross the network in the clear. The listener speaks TLS 1.2/1.3 (rustls, ring provider, as
//! on the upstream side) and offers HTTP/2 and HTTP/1.1 by ALPN. The handshake runs in the
//! connection's own task under the header timeout, so a slow or silent client holds neither the
//! accept loop nor more than its connection slot. Loaded once at start: a new certificate needs
//! a restart (the reload of the rest of the configuration keeps the listener as it is).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why the TLS configuration cannot be used; names the key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls_cert: cannot read certificates from {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("server.tls_key: cannot read a private key from {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("server.tls_cert / server.tls_key: {0}")]
    Pair(String),
}

/// The acceptor for a PEM certificate chain and private key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Cert {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cert.to_path_buf(),
            reason: "no CERTIFICATE block in the file".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Pair(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
