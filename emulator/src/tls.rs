//! The self-signed certificate and the TLS acceptor offering ALPN `h2` and `http/1.1`.

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

use crate::error::EmulatorError;

/// A TLS acceptor and the certificate it presents, for clients to trust.
#[derive(Clone)]
pub(crate) struct TlsSetup {
    /// Accepts TLS connections with the generated certificate.
    pub(crate) acceptor: TlsAcceptor,
    /// The certificate in PEM, valid for `localhost`, `127.0.0.1` and `::1`.
    pub(crate) certificate_pem: String,
}

/// Generates a certificate for the loopback names and a server configuration using it.
pub(crate) fn self_signed() -> Result<TlsSetup, EmulatorError> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| EmulatorError::Tls(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EmulatorError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)
        .map_err(|e| EmulatorError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsSetup {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        certificate_pem: generated.cert.pem(),
    })
}
