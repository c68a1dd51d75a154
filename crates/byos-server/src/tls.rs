//! byos's own certificate authority and the server certificate its listeners present.
//!
//! The CA is created at first start: its certificate is written to `ca.crt` in the data dir (what
//! clients trust) and its private key is kept only sealed under the root key. The server's leaf
//! key is generated at every start and never stored.

use std::sync::Arc;

use anyhow::Context;
use byos_crypto::{RootKey, SealPurpose};
use byos_store::{Batch, SharedStore, Table};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const TLS: Table = Table("tls");
const CA_KEY: &str = "ca-key";
const CA_CERT: &str = "ca-cert";

/// The CA: its certificate (PEM) and the key that signs server certificates.
pub struct CertificateAuthority {
    pub cert_pem: String,
    key: KeyPair,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "byos local CA");
    dn.push(DnType::OrganizationName, "byos");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    params
}

impl CertificateAuthority {
    /// Loads the CA from the store, creating it on first start.
    pub async fn load_or_create(store: &SharedStore, root: &RootKey) -> anyhow::Result<Self> {
        if let (Some(sealed), Some(cert)) = (store.get(TLS, CA_KEY).await?, store.get(TLS, CA_CERT).await?) {
            let der = root.open(SealPurpose::CaKey, &sealed).context("opening the sealed CA key")?;
            let key = KeyPair::try_from(der.as_slice()).context("parsing the CA key")?;
            return Ok(CertificateAuthority { cert_pem: String::from_utf8(cert)?, key });
        }
        let key = KeyPair::generate().context("generating the CA key")?;
        let cert = ca_params().self_signed(&key).context("self-signing the CA certificate")?;
        let sealed = root.seal(SealPurpose::CaKey, &zeroize::Zeroizing::new(key.serialize_der()))?;
        let batch =
            Batch::new().expect_absent(TLS, CA_KEY).put(TLS, CA_KEY, sealed).put(TLS, CA_CERT, cert.pem().into_bytes());
        store.commit(batch).await?;
        Ok(CertificateAuthority { cert_pem: cert.pem(), key })
    }

    /// A fresh server certificate for `hosts` (IP addresses or DNS names) with a fresh key.
    pub fn server_config(&self, hosts: &[String]) -> anyhow::Result<Arc<ServerConfig>> {
        let leaf_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(h.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.distinguished_name.push(DnType::CommonName, "byos");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        let issuer = Issuer::new(ca_params(), &self.key);
        let leaf = params.signed_by(&leaf_key, &issuer)?;
        let ca_der = ca_der_from_pem(&self.cert_pem)?;
        let chain = vec![leaf.der().clone(), ca_der];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Decodes the single certificate of a PEM string.
fn ca_der_from_pem(pem: &str) -> anyhow::Result<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    Ok(CertificateDer::from_pem_slice(pem.as_bytes())?)
}
