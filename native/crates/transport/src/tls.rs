//! rustls configurations for mutual TLS 1.3 between nodes of one cluster.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use dwcp_amst::frame::Version;

use crate::{Result, TransportError};

/// ALPN protocol ids of AMST connections, newest first: both ends offer every frame version
/// they speak and the server picks the first of its own that the client offered. A peer without
/// ALPN (the TypeScript reference path) or from before v2 ends up on v1; one from before v3
/// on v2 (no probes).
pub const ALPN: [&[u8]; 3] = [b"dwcp-amst/3", b"dwcp-amst/2", b"dwcp-amst/1"];

/// The frame version an ALPN outcome means; none negotiated means v1.
pub fn negotiated_version(alpn: Option<&[u8]>) -> Version {
    match alpn {
        Some(b"dwcp-amst/3") => Version::V3,
        Some(b"dwcp-amst/2") => Version::V2,
        _ => Version::V1,
    }
}

fn alpn_protocols() -> Vec<Vec<u8>> {
    ALPN.iter().map(|p| p.to_vec()).collect()
}

/// A node's TLS identity: the cluster CA it trusts, and its own certificate and key.
#[derive(Debug)]
pub struct NodeIdentity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        NodeIdentity {
            roots: Arc::clone(&self.roots),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl NodeIdentity {
    /// Parses PEM: the CA certificate, this node's certificate (chain) and its private key.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            TransportError::Certificate(format!("{what}: {e}"))
        };
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(ca.map_err(|e| bad("CA PEM", &e))?)
                .map_err(|e| bad("CA certificate", &e))?;
        }
        if roots.is_empty() {
            return Err(TransportError::Certificate(
                "CA PEM holds no certificate".into(),
            ));
        }
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad("certificate PEM", &e))?;
        if chain.is_empty() {
            return Err(TransportError::Certificate(
                "certificate PEM holds no certificate".into(),
            ));
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad("key PEM", &e))?;
        Ok(NodeIdentity {
            roots: Arc::new(roots),
            chain,
            key,
        })
    }

    /// The server side: presents our certificate and requires a client certificate from the CA.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&self.roots),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| TransportError::Certificate(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TransportError::Certificate(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TransportError::Certificate(e.to_string()))?;
        config.alpn_protocols = alpn_protocols();
        Ok(Arc::new(config))
    }

    /// The client side: presents our certificate and checks the server's against the CA.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::clone(&self.roots),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| TransportError::Certificate(e.to_string()))?;
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TransportError::Certificate(e.to_string()))?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TransportError::Certificate(e.to_string()))?;
        config.alpn_protocols = alpn_protocols();
        Ok(Arc::new(config))
    }
}
