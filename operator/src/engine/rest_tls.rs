//! How pgmetal reaches Patroni's REST API when `spec.tls` is on: over HTTPS, trusting only the
//! cluster's CA, with a client certificate of its own (Patroni asks for one on unsafe methods),
//! and which scheme a member serves while a cluster moves between plain text and TLS.

use std::error::Error as StdError;
use std::time::Duration;

use time::OffsetDateTime;

use crate::tls::{self, CertKey, Request, TlsError, Usage};

/// How long pgmetal's client certificate for Patroni lives. It is made afresh for every client
/// (each reconcile, each CLI run), kept only in memory, and never written anywhere.
pub const CLIENT_LIFETIME: Duration = Duration::from_secs(86_400);

/// The common name of pgmetal's client certificate.
pub const CLIENT_NAME: &str = "pgmetal";

pub use crate::tls::Scheme;

/// pgmetal's TLS material towards Patroni: the CA as the only root and its client identity.
#[derive(Clone)]
pub struct ClientTls {
    ca: reqwest::Certificate,
    identity: reqwest::Identity,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls(<CA and client identity>)")
    }
}

impl ClientTls {
    /// Issues pgmetal's client certificate from the cluster's `ca`, valid from `now`.
    pub fn issue(ca: &CertKey, now: OffsetDateTime) -> Result<Self, TlsError> {
        let mine = client_certificate(ca, now)?;
        let bad = |e: reqwest::Error| TlsError::Issue {
            what: CLIENT_NAME.into(),
            reason: e.to_string(),
        };
        let pem = format!("{}{}", mine.cert, mine.key.0);
        Ok(Self {
            ca: reqwest::Certificate::from_pem(ca.cert.as_bytes()).map_err(bad)?,
            identity: reqwest::Identity::from_pem(pem.as_bytes()).map_err(bad)?,
        })
    }
}

/// pgmetal's client certificate (common name [`CLIENT_NAME`], client authentication only),
/// valid from `now` for [`CLIENT_LIFETIME`]: towards Patroni and towards etcd.
pub fn client_certificate(ca: &CertKey, now: OffsetDateTime) -> Result<CertKey, TlsError> {
    let req = Request {
        common_name: CLIENT_NAME.into(),
        names: Vec::new(),
        usage: Usage::Client,
    };
    tls::issue(ca, &req, now, CLIENT_LIFETIME)
}

/// The HTTP client for Patroni: the cluster's CA as its only root and pgmetal's identity when
/// `tls` is given (plain HTTP needs neither), and `also`: CA certificates (PEM) the hosts
/// still serve certificates from while a converge replaces their CA.
pub fn client(tls: Option<&ClientTls>, also: &[String]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(15))
        .no_proxy()
        // A member answers for itself: a redirect would carry the REST password elsewhere.
        .redirect(reqwest::redirect::Policy::none());
    if tls.is_some() || !also.is_empty() {
        b = b.tls_built_in_root_certs(false);
    }
    if let Some(t) = tls {
        b = b
            .add_root_certificate(t.ca.clone())
            .identity(t.identity.clone());
    }
    for pem in also {
        if let Ok(c) = reqwest::Certificate::from_pem(pem.as_bytes()) {
            b = b.add_root_certificate(c);
        }
    }
    b.build().unwrap_or_default()
}

/// Whether a read that failed over `tried` may be repeated over the other scheme: the member
/// answered, but not in that scheme (it has not moved yet, or has already moved back). A
/// certificate that does not verify, a refused connection or a timeout never fall back.
pub fn speaks_other_scheme(e: &reqwest::Error, tried: Scheme) -> bool {
    match tried {
        // A plain-HTTP server answers a ClientHello with text: not a TLS record.
        Scheme::Https => {
            rustls_error(e).is_some_and(|r| matches!(r, rustls::Error::InvalidMessage(_)))
        }
        // A TLS server closes the connection on a plain request, without a status.
        Scheme::Http => !e.is_connect() && !e.is_timeout() && e.status().is_none(),
    }
}

/// The rustls error somewhere in `e`'s chain (an `io::Error` hides its inner error from
/// `source()`, so each one is opened; hyper wraps one `io::Error` in another).
fn rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => err.source(),
        };
    }
    None
}

#[cfg(test)]
#[path = "rest_tls_tests.rs"]
mod tests;
