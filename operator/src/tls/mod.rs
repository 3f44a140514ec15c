//! Certificates for every channel of a cluster: a CA that pgmetal creates, and the server and
//! client certificates it signs for each host (rcgen), with what a renewal decision needs.
//!
//! Pure: no I/O. Private keys live only in [`KeyPem`], whose `Debug` never shows them.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// The lifetime of a CA pgmetal creates: ten years (its certificates are far shorter-lived).
pub const CA_LIFETIME: Duration = Duration::from_secs(3650 * 86_400);

/// The scheme of a channel: a member's REST API, an etcd client or peer URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain text (`spec.tls.mode: Disabled`, or a member not moved to TLS yet).
    Http,
    /// TLS with the cluster's certificates.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// `Https` when `tls`, else `Http`.
    pub fn when(tls: bool) -> Self {
        if tls { Scheme::Https } else { Scheme::Http }
    }

    /// The scheme of `url` (`https://…` or anything else).
    pub fn of_url(url: &str) -> Self {
        Self::when(url.starts_with("https://"))
    }

    /// The other one.
    pub fn other(self) -> Self {
        match self {
            Scheme::Http => Scheme::Https,
            Scheme::Https => Scheme::Http,
        }
    }
}

/// A PEM private key. Its `Debug` prints only that it is one.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPem(pub String);

impl std::fmt::Debug for KeyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyPem(<private key>)")
    }
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    /// The certificate.
    pub cert: String,
    /// Its private key.
    pub key: KeyPem,
}

/// What a certificate is for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (etcd client port, Patroni REST, PostgreSQL).
    Server,
    /// A TLS client (pgmetal or Patroni to etcd, pgmetal to Patroni).
    Client,
    /// Both (etcd peers authenticate each other with one certificate).
    Peer,
}

/// One certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The subject's common name (a host, or a client such as `pgmetal`).
    pub common_name: String,
    /// DNS names and IP addresses the certificate is valid for.
    pub names: Vec<String>,
    /// Server, client or both.
    pub usage: Usage,
}

/// Why a certificate could not be made or read. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused the parameters or could not sign.
    #[error("issuing {what}: {reason}")]
    Issue {
        /// The certificate concerned (`CA`, or the request's common name).
        what: String,
        /// rcgen's error.
        reason: String,
    },
    /// A PEM certificate could not be parsed.
    #[error("reading a certificate: {0}")]
    Parse(String),
}

fn issue_error(what: &str) -> impl Fn(rcgen::Error) -> TlsError + '_ {
    move |e| TlsError::Issue {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime, lifetime: Duration) {
    // Backdated a little: a host whose clock is a few minutes behind still accepts it.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + lifetime;
}

/// A new CA for the cluster `cluster`, valid for `lifetime` from `now`.
pub fn new_ca(cluster: &str, now: OffsetDateTime, lifetime: Duration) -> Result<CertKey, TlsError> {
    let err = issue_error("CA");
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "pgmetal");
    dn.push(DnType::CommonName, format!("pgmetal CA {cluster}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, now, lifetime);
    let key = KeyPair::generate().map_err(&err)?;
    let cert = params.self_signed(&key).map_err(&err)?;
    Ok(CertKey {
        cert: cert.pem(),
        key: KeyPem(key.serialize_pem()),
    })
}

/// A certificate for `req`, signed by `ca`, valid for `lifetime` from `now`, with a new key.
pub fn issue(
    ca: &CertKey,
    req: &Request,
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<CertKey, TlsError> {
    let err = issue_error(&req.common_name);
    let ca_key = KeyPair::from_pem(&ca.key.0).map_err(&err)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(&err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "pgmetal");
    dn.push(DnType::CommonName, req.common_name.clone());
    params.distinguished_name = dn;
    for name in &req.names {
        // An address is also written as a DNS name: pgBackRest (2.45) matches only dNSName
        // entries once a certificate has any, where libpq, Python and HAProxy read the address.
        if let Ok(ip) = name.parse::<IpAddr>() {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
        let dns = SanType::DnsName(name.clone().try_into().map_err(&err)?);
        params.subject_alt_names.push(dns);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match req.usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Peer => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, lifetime);
    let key = KeyPair::generate().map_err(&err)?;
    let cert = params.signed_by(&key, &issuer).map_err(&err)?;
    Ok(CertKey {
        cert: cert.pem(),
        key: KeyPem(key.serialize_pem()),
    })
}

/// What pgmetal reads back from a certificate to decide whether to reissue it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Its DNS and IP subject alternative names, as text, sorted, each once.
    pub names: Vec<String>,
    /// Whether the CA it was checked against signed it.
    pub by_ca: bool,
    /// Whether it may authenticate a client too (pgBackRest's hosts are client and server).
    pub client_auth: bool,
}

fn parse_pem(pem: &str) -> Result<x509_parser::pem::Pem, TlsError> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map(|(_, p)| p)
        .map_err(|e| TlsError::Parse(e.to_string()))
}

/// Reads the end of validity and the names of a PEM certificate, and whether `ca_pem` signed it.
pub fn inspect(cert_pem: &str, ca_pem: &str) -> Result<Seen, TlsError> {
    let (pem, ca_pem) = (parse_pem(cert_pem)?, parse_pem(ca_pem)?);
    let parse =
        |e: x509_parser::nom::Err<x509_parser::error::X509Error>| TlsError::Parse(e.to_string());
    let cert = pem.parse_x509().map_err(parse)?;
    let ca = ca_pem.parse_x509().map_err(parse)?;
    let by_ca =
        cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok();
    let not_after = cert.validity().not_after.to_datetime();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let ip: Option<IpAddr> = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|i| i.to_string()));
                }
                _ => {}
            }
        }
    }
    let client_auth = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|e| e.value.client_auth);
    names.sort();
    names.dedup();
    Ok(Seen {
        not_after,
        names,
        by_ca,
        client_auth,
    })
}

/// The SHA-256 fingerprint of the first certificate in `pem`, as `openssl x509 -fingerprint
/// -sha256` prints it (`AB:CD:…`); None when `pem` holds no certificate.
pub fn fingerprint(pem: &str) -> Option<String> {
    use sha2::Digest;
    let der = parse_pem(pem).ok()?.contents;
    let hex = hex::encode_upper(sha2::Sha256::digest(der));
    let pairs: Vec<&str> = (0..hex.len()).step_by(2).map(|i| &hex[i..i + 2]).collect();
    Some(pairs.join(":"))
}

/// Checks that `ca` (a CA someone else keeps, `spec.tls.mode: Provided`) can issue the
/// cluster's certificates: a self-signed CA certificate, and the key that belongs to it.
pub fn check_ca(ca: &CertKey) -> Result<(), TlsError> {
    let bad = |why: &str| TlsError::Parse(format!("not a CA pgmetal can issue from: {why}"));
    let pem = parse_pem(&ca.cert)?;
    let cert = pem
        .parse_x509()
        .map_err(|e| TlsError::Parse(e.to_string()))?;
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|b| b.value.ca);
    if !is_ca {
        return Err(bad(
            "tls.crt is not a CA certificate (basicConstraints CA:TRUE)",
        ));
    }
    if cert.issuer() != cert.subject() || cert.verify_signature(None).is_err() {
        return Err(bad(
            "tls.crt is not self-signed (an intermediate CA is not supported yet)",
        ));
    }
    let key = KeyPair::from_pem(&ca.key.0).map_err(|_| bad("tls.key is not a private key"))?;
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(bad("tls.key is not the key of tls.crt"));
    }
    Ok(())
}

/// Why a certificate must be reissued now, if it must: another CA signed it, it serves only as
/// a server (certificates issued before backups existed), it expires within
/// `renew_before`, or its names differ from `want` (a host or an HAProxy address changed).
pub fn renewal_due(
    seen: &Seen,
    want: &[String],
    now: OffsetDateTime,
    renew_before: Duration,
) -> Option<String> {
    if !seen.by_ca {
        return Some("the cluster's CA did not sign it".into());
    }
    if !seen.client_auth {
        return Some("it cannot authenticate a client (pgBackRest's hosts are both)".into());
    }
    if seen.not_after - renew_before <= now {
        return Some(format!("it expires at {}", seen.not_after));
    }
    let (mut have, mut wanted) = (seen.names.clone(), want.to_vec());
    have.sort();
    wanted.sort();
    (have != wanted).then(|| format!("its names {have:?} are not {wanted:?}"))
}

#[cfg(test)]
mod tests;
