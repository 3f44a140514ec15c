//! Opening one SSH connection per host, concurrently, from the spec's `ssh` settings: the one
//! path the operator's converge, its cleanup and the CLI all take to reach hosts.
//!
//! Host keys: with a `known_hosts` file every host is verified against it; without one, a host
//! whose fingerprint is pinned (`status.hosts[].hostKeyFingerprint`) must present that key, and
//! only a host with nothing pinned is trusted on first use.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::Connection;
use super::error::{Failure, HostError, HostErrorKind};
use crate::api::{HostStatus, SshSpec};
use crate::exec::{ExecError, Executor, KnownHosts, SshConfig, SshConfigError, SshExecutor};

/// The SSH settings for every host of a cluster.
pub fn ssh_config(
    ssh: &SshSpec,
    private_key_pem: &str,
    known_hosts: KnownHosts,
) -> Result<SshConfig, SshConfigError> {
    let mut cfg = SshConfig::new(&ssh.user, private_key_pem, known_hosts)?;
    cfg.port = ssh.port;
    cfg.sudo = ssh.sudo.unwrap_or(ssh.user != "root");
    cfg.connect_timeout = Duration::from_secs(u64::from(ssh.connect_timeout_seconds));
    Ok(cfg)
}

/// The policy for a `known_hosts` text, or trust on first use without one.
pub fn known_hosts(text: Option<&str>) -> KnownHosts {
    text.map_or(KnownHosts::TrustFirstUse, KnownHosts::parse)
}

/// The fingerprints pinned in status, by host.
pub fn pinned(hosts: &[HostStatus]) -> BTreeMap<String, String> {
    hosts
        .iter()
        .filter_map(|h| Some((h.host.clone(), h.host_key_fingerprint.clone()?)))
        .collect()
}

/// How one host's key is verified: the base policy (a `known_hosts` file) when it is not trust
/// on first use; otherwise the host's pinned fingerprint when there is one.
pub fn host_policy(base: &KnownHosts, pinned: Option<&str>) -> KnownHosts {
    match (base, pinned) {
        (KnownHosts::TrustFirstUse, Some(fp)) => KnownHosts::Pinned(fp.to_string()),
        (base, _) => base.clone(),
    }
}

/// A connection attempt's result plus the host key fingerprint that was verified.
pub struct Connected {
    /// The executor, or the error (step `connect`, naming host and cause).
    pub conn: Connection,
    /// SHA256 fingerprint of the verified host key.
    pub fingerprint: Option<String>,
}

/// One connection being opened: the executor and the fingerprint of the host key it accepted.
pub type Connecting = BoxFuture<'static, Result<(Arc<dyn Executor>, String), ExecError>>;

/// Opens one connection to a host with a config.
pub type Connector = fn(String, SshConfig) -> Connecting;

/// The [`Connector`] over SSH.
pub fn over_ssh(host: String, cfg: SshConfig) -> Connecting {
    Box::pin(async move {
        let ex = SshExecutor::connect(&host, &cfg).await?;
        let fp = ex.host_key_fingerprint().to_string();
        Ok((Arc::new(ex) as Arc<dyn Executor>, fp))
    })
}

/// Connects to every host at once over SSH, each host's key verified by [`host_policy`] with
/// `pinned` (see [`pinned`]); failures are kept per host so the others go on.
pub async fn connect_all(
    hosts: &[String],
    base: &SshConfig,
    pinned: &BTreeMap<String, String>,
) -> BTreeMap<String, Connected> {
    connect_all_with(hosts, base, pinned, over_ssh).await
}

async fn connect_all_with(
    hosts: &[String],
    base: &SshConfig,
    pinned: &BTreeMap<String, String>,
    connect: Connector,
) -> BTreeMap<String, Connected> {
    let jobs = hosts.iter().map(|h| {
        let mut cfg = base.clone();
        cfg.known_hosts = host_policy(&base.known_hosts, pinned.get(h).map(String::as_str));
        async move {
            let c = match connect(h.clone(), cfg).await {
                Ok((ex, fp)) => Connected {
                    conn: Ok(ex),
                    fingerprint: Some(fp),
                },
                Err(e) => Connected {
                    conn: Err(HostError::connect(h, &e)),
                    fingerprint: None,
                },
            };
            (h.clone(), c)
        }
    });
    futures::future::join_all(jobs).await.into_iter().collect()
}

/// A cluster's connections from its SSH material: the spec's settings, the private key, the
/// `known_hosts` text if any, and the fingerprints pinned in status. A private key that does
/// not parse fails every host. `connect` is [`over_ssh`] but in tests.
pub async fn connect_cluster(
    ssh: &SshSpec,
    private_key_pem: &str,
    known_hosts_text: Option<&str>,
    status_hosts: &[HostStatus],
    hosts: &[String],
    connect: Connector,
) -> BTreeMap<String, Connected> {
    match ssh_config(ssh, private_key_pem, known_hosts(known_hosts_text)) {
        Ok(base) => connect_all_with(hosts, &base, &pinned(status_hosts), connect).await,
        Err(e) => hosts
            .iter()
            .map(|h| {
                let message = format!("spec.ssh.privateKeySecret: {e}");
                let failure = Failure::new(HostErrorKind::Unreachable, message);
                let conn = Err(HostError::new(h, Some("connect"), failure));
                (
                    h.clone(),
                    Connected {
                        conn,
                        fingerprint: None,
                    },
                )
            })
            .collect(),
    }
}

#[cfg(test)]
#[path = "connect_tests.rs"]
pub(crate) mod tests;
