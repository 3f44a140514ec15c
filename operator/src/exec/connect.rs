//! Establishing SSH connections: `SshConfig`, host key verification and authentication.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::Preferred;
use russh::client::{self, Handle};
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};

use super::ExecError;
use super::known_hosts::{KnownHosts, Verdict, fingerprint};

/// How to reach and log in to hosts over SSH.
#[derive(Clone)]
pub struct SshConfig {
    /// Login user (e.g. `root`, or `pgadmin` with `sudo`).
    pub user: String,
    /// SSH port.
    pub port: u16,
    /// The parsed private key.
    pub private_key: Arc<PrivateKey>,
    /// How the server's host key is verified.
    pub known_hosts: KnownHosts,
    /// Limit for TCP connect, handshake and authentication together.
    pub connect_timeout: Duration,
    /// Send a keepalive after this much silence; 3 unanswered ones drop the connection.
    pub keepalive_interval: Duration,
    /// Wrap every command in `sudo -n --`.
    pub sudo: bool,
}

/// A bad SSH configuration.
#[derive(Debug, thiserror::Error)]
pub enum SshConfigError {
    /// The private key could not be parsed (or is encrypted).
    #[error("cannot parse the SSH private key: {0}")]
    PrivateKey(String),
}

impl SshConfig {
    /// A config for `user` with an unencrypted OpenSSH private key (PEM text); port 22,
    /// 15 s connect timeout, 15 s keepalive, no sudo.
    pub fn new(
        user: &str,
        private_key_pem: &str,
        known_hosts: KnownHosts,
    ) -> Result<Self, SshConfigError> {
        let key = russh::keys::decode_secret_key(private_key_pem, None)
            .map_err(|e| SshConfigError::PrivateKey(e.to_string()))?;
        Ok(SshConfig {
            user: user.to_string(),
            port: 22,
            private_key: Arc::new(key),
            known_hosts,
            connect_timeout: Duration::from_secs(15),
            keepalive_interval: Duration::from_secs(15),
            sudo: false,
        })
    }
}

/// Never prints the private key, only its public fingerprint.
impl fmt::Debug for SshConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshConfig")
            .field("user", &self.user)
            .field("port", &self.port)
            .field("private_key", &fingerprint(self.private_key.public_key()))
            .field("known_hosts", &self.known_hosts)
            .field("connect_timeout", &self.connect_timeout)
            .field("sudo", &self.sudo)
            .finish()
    }
}

/// What `check_server_key` saw: the fingerprint and the verdict.
type Seen = Arc<Mutex<Option<(String, Verdict)>>>;

/// The russh handler: verifies the host key and stashes what it saw for error reporting.
pub(super) struct Client {
    host: String,
    port: u16,
    policy: KnownHosts,
    seen: Seen,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let (fp, verdict) = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => (
                fingerprint(key),
                self.policy.check(&self.host, self.port, key),
            ),
            // We never advertise certificate algorithms; refuse if one shows up anyway.
            PublicKeyOrCertificate::Certificate(c) => (
                fingerprint(&c.public_key().clone().into()),
                Verdict::Unknown,
            ),
        };
        let trusted = verdict == Verdict::Trusted;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((fp, verdict));
        }
        Ok(trusted)
    }
}

/// Connect, verify the host key and authenticate, all within `connect_timeout`.
pub(super) async fn establish(
    host: &str,
    cfg: &SshConfig,
) -> Result<(Handle<Client>, String), ExecError> {
    let seen: Seen = Arc::default();
    let handler = Client {
        host: host.to_string(),
        port: cfg.port,
        policy: cfg.known_hosts.clone(),
        seen: seen.clone(),
    };
    let config = Arc::new(client::Config {
        keepalive_interval: Some(cfg.keepalive_interval),
        keepalive_max: 3,
        nodelay: true,
        preferred: Preferred {
            key: preferred_keys(&cfg.known_hosts.algorithms_for(host, cfg.port)),
            ..Preferred::DEFAULT
        },
        ..Default::default()
    });
    let attempt = async {
        let mut handle = match client::connect(config, (host, cfg.port), handler).await {
            Ok(h) => h,
            Err(e) => return Err(connect_error(host, e, &seen)),
        };
        authenticate(&mut handle, host, cfg).await?;
        Ok(handle)
    };
    let handle = tokio::time::timeout(cfg.connect_timeout, attempt)
        .await
        .map_err(|_| ExecError::Timeout {
            host: host.to_string(),
            what: format!("SSH connect to {}@{host}:{}", cfg.user, cfg.port),
            secs: cfg.connect_timeout.as_secs(),
        })??;
    let fp = seen
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .map(|(fp, _)| fp)
        .unwrap_or_default();
    Ok((handle, fp))
}

/// Turn a failed connect into a host key error if the handler refused the key.
fn connect_error(host: &str, e: russh::Error, seen: &Seen) -> ExecError {
    let host = host.to_string();
    match seen.lock().ok().and_then(|s| s.clone()) {
        Some((got, Verdict::Mismatch { expected })) => ExecError::HostKeyMismatch {
            host,
            expected,
            got,
        },
        Some((got, Verdict::Unknown)) => ExecError::UnknownHostKey { host, got },
        _ => ExecError::Connect {
            host,
            source: Box::new(e),
        },
    }
}

async fn authenticate(
    handle: &mut Handle<Client>,
    host: &str,
    cfg: &SshConfig,
) -> Result<(), ExecError> {
    let proto = |e: russh::Error| ExecError::Protocol {
        host: host.to_string(),
        message: format!("authentication: {e}"),
    };
    let hash = if cfg.private_key.algorithm().is_rsa() {
        // `None`: the server did not say; any OpenSSH >= 7.2 takes rsa-sha2-256.
        handle
            .best_supported_rsa_hash()
            .await
            .map_err(proto)?
            .unwrap_or(Some(HashAlg::Sha256))
    } else {
        None
    };
    let key = PrivateKeyWithHashAlg::new(cfg.private_key.clone(), hash);
    let result = handle
        .authenticate_publickey(cfg.user.as_str(), key)
        .await
        .map_err(proto)?;
    if result.success() {
        Ok(())
    } else {
        Err(ExecError::Auth {
            host: host.to_string(),
            user: cfg.user.clone(),
        })
    }
}

/// russh's default host key algorithms, those of the keys we know for the host first, so
/// the server proves the key we can check.
fn preferred_keys(known: &[Algorithm]) -> Cow<'static, [Algorithm]> {
    if known.is_empty() {
        return Preferred::DEFAULT.key;
    }
    let family = |a: &Algorithm| match a {
        Algorithm::Rsa { .. } => Algorithm::Rsa { hash: None },
        other => other.clone(),
    };
    let (mut first, rest): (Vec<_>, Vec<_>) = Preferred::DEFAULT
        .key
        .iter()
        .cloned()
        .partition(|a| known.iter().any(|k| family(k) == family(a)));
    first.extend(rest);
    Cow::Owned(first)
}
