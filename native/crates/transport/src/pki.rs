//! The cluster's certificates: a CA per cluster, and one certificate per node that serves as
//! both TLS server and client identity (mutual TLS between nodes).

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::{Result, TransportError};

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemPair {
    /// The certificate.
    pub cert_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
}

/// Creates a new self-signed cluster CA, valid for ten years.
pub fn generate_cluster_ca(cluster_name: &str) -> Result<PemPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("DWCP cluster CA {cluster_name}"),
    );
    dn.push(DnType::OrganizationName, "NovaCron DWCP");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(
        &mut params,
        SystemTime::now(),
        Duration::from_secs(10 * 365 * 86_400),
    )?;
    let key = KeyPair::generate().map_err(pki_err)?;
    let cert = params.self_signed(&key).map_err(pki_err)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What a node certificate says about its holder.
#[derive(Debug, Clone)]
pub struct NodeCertRequest {
    /// The node's name; peers check it as the TLS server name.
    pub node_name: String,
    /// Further DNS names or IP addresses it answers to.
    pub extra_names: Vec<String>,
    /// When it starts being valid (normally now).
    pub not_before: SystemTime,
    /// How long it is valid.
    pub valid_for: Duration,
}

impl NodeCertRequest {
    /// A one-year certificate for `node_name`, valid from now.
    pub fn new(node_name: impl Into<String>) -> Self {
        NodeCertRequest {
            node_name: node_name.into(),
            extra_names: Vec::new(),
            not_before: SystemTime::now(),
            valid_for: Duration::from_secs(365 * 86_400),
        }
    }
}

/// Issues a node certificate signed by the cluster CA, usable as TLS server and client.
pub fn issue_node_certificate(ca: &PemPair, req: &NodeCertRequest) -> Result<PemPair> {
    if req.node_name.is_empty() {
        return Err(TransportError::InvalidParam {
            field: "nodeName",
            reason: "must not be empty".into(),
        });
    }
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(pki_err)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(pki_err)?;
    let mut names = vec![req.node_name.clone()];
    names.extend(req.extra_names.iter().cloned());
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
    params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.node_name.clone());
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    set_validity(&mut params, req.not_before, req.valid_for)?;
    let key = KeyPair::generate().map_err(pki_err)?;
    let cert = params.signed_by(&key, &issuer).map_err(pki_err)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn san(name: &str) -> Result<SanType> {
    if let Ok(ip) = name.parse() {
        return Ok(SanType::IpAddress(ip));
    }
    let dns = name
        .to_string()
        .try_into()
        .map_err(|_| TransportError::InvalidParam {
            field: "extraNames",
            reason: format!("`{name}` is neither a DNS name nor an IP address"),
        })?;
    Ok(SanType::DnsName(dns))
}

fn set_validity(
    params: &mut CertificateParams,
    from: SystemTime,
    valid_for: Duration,
) -> Result<()> {
    // Allow for clocks a little behind ours.
    let start = from.checked_sub(Duration::from_secs(300)).unwrap_or(from);
    params.not_before = start.into();
    params.not_after = from
        .checked_add(valid_for)
        .ok_or_else(|| TransportError::InvalidParam {
            field: "validFor",
            reason: "too long".into(),
        })?
        .into();
    Ok(())
}

fn pki_err(e: rcgen::Error) -> TransportError {
    TransportError::Certificate(e.to_string())
}
