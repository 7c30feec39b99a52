//! A SPIFFE test PKI for mutual TLS: trust-domain CAs and X.509-SVIDs, generated fresh for each run.
//!
//! Follows the X.509-SVID rules (SPIFFE X509-SVID §4, §5): a CA is a signing certificate (`CA:true`,
//! `keyCertSign`) whose only URI SAN is its trust domain's id; a leaf SVID is not a CA, has exactly one URI
//! SAN (its SPIFFE id), `digitalSignature` and neither `keyCertSign` nor `cRLSign`, and may carry DNS and IP
//! SANs too (the gateway's, so a client can check the server name). Keys are ECDSA P-256.
//!
//! Used by the mutual-TLS end-to-end tests and to write the files `envoy/sidecar-mtls.yaml` names
//! ([`TestPki::write_pem`] into [`sidecar_pki_dir`]).

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The trust domain the sidecar trusts.
pub const TRUST_DOMAIN: &str = "example.org";
/// A trust domain the sidecar does not trust.
pub const FOREIGN_TRUST_DOMAIN: &str = "foreign.example";
/// The gateway's (the sidecar's) own SPIFFE id.
pub const GATEWAY_ID: &str = "spiffe://example.org/sidecar/orders";
/// The trading agent.
pub const TRADER_ID: &str = "spiffe://example.org/agent/trader";
/// The research agent.
pub const RESEARCH_ID: &str = "spiffe://example.org/agent/research";
/// A SPIFFE id outside the trust domain, in a certificate the trust domain's CA signed anyway.
pub const OUTSIDER_ID: &str = "spiffe://elsewhere.example/agent/trader";
/// The foreign trust domain's agent.
pub const FOREIGN_ID: &str = "spiffe://foreign.example/agent/trader";

/// The directory the files of `envoy/sidecar-mtls.yaml` are written to: `target/pki` in the workspace.
pub fn sidecar_pki_dir() -> PathBuf {
    agent_iam_host::workspace_root().join("target/pki")
}

/// A certificate with its private key.
pub struct Svid {
    /// The SPIFFE id in its URI SAN.
    pub spiffe_id: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl Svid {
    /// SHA-256 of the certificate's DER.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.cert_der).into()
    }

    /// The digest as Envoy gives it (`connection.sha256_peer_certificate_digest`, `Hash=` in
    /// `x-forwarded-client-cert`): lower-case hex.
    pub fn sha256_hex(&self) -> String {
        self.sha256().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The certificate thumbprint of RFC 8705 (`cnf.x5t#S256`): the digest in unpadded base64url.
    pub fn x5t_s256(&self) -> String {
        agent_iam::b64::encode(&self.sha256())
    }
}

/// A trust domain's signing certificate (self-signed root), which issues SVIDs.
pub struct Ca {
    /// The trust domain, e.g. `example.org`.
    pub trust_domain: String,
    /// The CA certificate, DER.
    pub cert_der: Vec<u8>,
    /// The CA certificate, PEM (the trust bundle).
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ia5(s: &str) -> Result<rcgen::string::Ia5String> {
    s.try_into().with_context(|| format!("{s:?} is not IA5"))
}

impl Ca {
    /// A new self-signed CA for `trust_domain`: URI SAN `spiffe://<trust_domain>`.
    pub fn new(trust_domain: &str) -> Result<Ca> {
        let key = KeyPair::generate().context("generating a CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, trust_domain);
        params.distinguished_name.push(DnType::CommonName, format!("{trust_domain} SPIFFE CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.subject_alt_names = vec![SanType::URI(ia5(&format!("spiffe://{trust_domain}"))?)];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let cert = params.self_signed(&key).context("signing the CA certificate")?;
        Ok(Ca {
            trust_domain: trust_domain.to_owned(),
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Issues an X.509-SVID for `spiffe_id` (its only URI SAN), with `dns_or_ip` as further SANs (IP
    /// addresses become IP SANs). The CA signs whatever id it is given, inside its trust domain or not: tests
    /// need certificates a verifier must refuse.
    pub fn issue(&self, spiffe_id: &str, dns_or_ip: &[&str]) -> Result<Svid> {
        if !spiffe_id.starts_with("spiffe://") {
            bail!("{spiffe_id:?} is not a SPIFFE id");
        }
        let key = KeyPair::generate().context("generating an SVID key")?;
        let mut params =
            CertificateParams::new(dns_or_ip.iter().map(|s| s.to_string()).collect::<Vec<_>>()).context("SVID SANs")?;
        params.subject_alt_names.insert(0, SanType::URI(ia5(spiffe_id)?));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, "SPIFFE");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let cert = params.signed_by(&key, &self.issuer).with_context(|| format!("signing the SVID of {spiffe_id}"))?;
        Ok(Svid {
            spiffe_id: spiffe_id.to_owned(),
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_der: key.serialize_der(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Everything the mutual-TLS tests need: the trusted trust domain with the gateway's and the agents' SVIDs,
/// and certificates the gateway must refuse.
pub struct TestPki {
    /// The CA of [`TRUST_DOMAIN`], the sidecar's trust bundle.
    pub ca: Ca,
    /// The CA of [`FOREIGN_TRUST_DOMAIN`], which the sidecar does not trust.
    pub foreign_ca: Ca,
    /// The gateway: [`GATEWAY_ID`], also for `localhost` and `127.0.0.1`.
    pub gateway: Svid,
    /// The trading agent, [`TRADER_ID`].
    pub trader: Svid,
    /// The trading agent's next SVID after a rotation: the same id, another key and certificate.
    pub trader_rotated: Svid,
    /// The research agent, [`RESEARCH_ID`].
    pub research: Svid,
    /// Signed by the trusted CA, but for [`OUTSIDER_ID`], outside the trust domain.
    pub outsider: Svid,
    /// The foreign trust domain's agent, [`FOREIGN_ID`], signed by the foreign CA.
    pub foreign: Svid,
    /// The foreign CA's forgery of the trading agent: [`TRADER_ID`], signed by the foreign CA.
    pub impostor: Svid,
}

impl TestPki {
    /// Generates fresh CAs, keys and SVIDs.
    pub fn generate() -> Result<TestPki> {
        let ca = Ca::new(TRUST_DOMAIN)?;
        let foreign_ca = Ca::new(FOREIGN_TRUST_DOMAIN)?;
        Ok(TestPki {
            gateway: ca.issue(GATEWAY_ID, &["localhost", "127.0.0.1"])?,
            trader: ca.issue(TRADER_ID, &[])?,
            trader_rotated: ca.issue(TRADER_ID, &[])?,
            research: ca.issue(RESEARCH_ID, &[])?,
            outsider: ca.issue(OUTSIDER_ID, &[])?,
            foreign: foreign_ca.issue(FOREIGN_ID, &[])?,
            impostor: foreign_ca.issue(TRADER_ID, &[])?,
            ca,
            foreign_ca,
        })
    }

    /// Writes the PEM files into `dir` (created if needed): `ca.pem` (the trust bundle), `foreign-ca.pem`, and
    /// `<name>.pem` with `<name>-key.pem` for `gateway`, `trader`, `trader-rotated`, `research`, `outsider`,
    /// `foreign` and `impostor`. Each file is written beside and renamed into place, so a reader never sees
    /// half a file.
    pub fn write_pem(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write(dir, "ca.pem", &self.ca.cert_pem)?;
        write(dir, "foreign-ca.pem", &self.foreign_ca.cert_pem)?;
        for (name, svid) in [
            ("gateway", &self.gateway),
            ("trader", &self.trader),
            ("trader-rotated", &self.trader_rotated),
            ("research", &self.research),
            ("outsider", &self.outsider),
            ("foreign", &self.foreign),
            ("impostor", &self.impostor),
        ] {
            write(dir, &format!("{name}.pem"), &svid.cert_pem)?;
            write(dir, &format!("{name}-key.pem"), &svid.key_pem)?;
        }
        Ok(())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    let next = dir.join(format!(".{name}.{}.next", std::process::id()));
    std::fs::write(&next, text).with_context(|| format!("writing {}", next.display()))?;
    std::fs::rename(&next, &path).with_context(|| format!("renaming into {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DER holds what X.509-SVID requires, checked by the bytes of the encoded extensions.
    #[test]
    fn svids_carry_their_spiffe_id_and_digests_agree() {
        let pki = TestPki::generate().unwrap();
        let contains = |der: &[u8], needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        // URI SAN: context tag [6], then the id.
        let uri = |id: &str| [&[0x86, id.len() as u8][..], id.as_bytes()].concat();
        assert!(contains(&pki.trader.cert_der, &uri(TRADER_ID)));
        assert!(contains(&pki.ca.cert_der, &uri("spiffe://example.org")));
        assert!(contains(&pki.gateway.cert_der, &uri(GATEWAY_ID)));
        assert!(contains(&pki.gateway.cert_der, &[0x87, 4, 127, 0, 0, 1]), "IP SAN 127.0.0.1");
        assert!(contains(&pki.gateway.cert_der, b"\x82\x09localhost"), "DNS SAN localhost");
        // Exactly one URI SAN in a leaf.
        assert_eq!(pki.trader.cert_der.windows(9).filter(|w| w == b"spiffe://").count(), 1);
        assert_ne!(pki.trader.cert_der, pki.trader_rotated.cert_der);
        let digest: [u8; 32] = Sha256::digest(&pki.trader.cert_der).into();
        assert_eq!(pki.trader.sha256(), digest);
        assert_eq!(pki.trader.sha256_hex().len(), 64);
        assert_eq!(agent_iam::b64::decode(pki.trader.x5t_s256().as_bytes()).unwrap(), digest);
    }
}
