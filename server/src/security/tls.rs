//! TLS on the gRPC port, with optional client certificates (mutual TLS), reloaded without a
//! restart.
//!
//! The acceptor is built from the current `ServerConfig` for each connection (see
//! `connections`, which also bounds the handshake's time), so a reload (new certificate,
//! key or client CA) applies to the next connection while live ones continue.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
};

use anyhow::Context;
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};

/// Where the certificate material lives.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM CA bundle; when set, only clients with a certificate it signed connect.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Every file, for the reloader.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        paths.extend(self.client_ca.clone());
        paths
    }
}

/// The current TLS configuration.
#[derive(Debug)]
pub struct ReloadingTls {
    /// The files it is built from.
    files: TlsFiles,
    /// The configuration new connections get.
    current: RwLock<Arc<ServerConfig>>,
}

impl ReloadingTls {
    /// Loads the files; an error says which file is wrong.
    pub fn load(files: TlsFiles) -> anyhow::Result<Arc<Self>> {
        let config = build(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// Builds the configuration again from the files; on error the old one stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = build(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// The configuration for the next connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

fn build(files: &TlsFiles) -> anyhow::Result<ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect())
        .with_context(|| format!("reading the certificate chain {}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading the client CA {}", ca.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("parsing the client CA {}", ca.display()))?)
                    .with_context(|| format!("adding the client CA {}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| {
                    format!("client CA {} cannot verify certificates", ca.display())
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("the private key does not match the certificate")?;
    // HTTP/1.1 for the HTTP endpoints (`crate::web`); gRPC clients offer h2, chosen first.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
