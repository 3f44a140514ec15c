//! Opening one SSH connection per host, concurrently, from the spec's `ssh` settings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::Connection;
use crate::api::SshSpec;
use crate::exec::{Executor, KnownHosts, SshConfig, SshConfigError, SshExecutor};

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

/// A connection attempt's result plus the host key fingerprint that was verified.
pub struct Connected {
    /// The executor, or the error (naming host and cause).
    pub conn: Connection,
    /// SHA256 fingerprint of the verified host key.
    pub fingerprint: Option<String>,
}

/// Connects to every host at once; failures are kept per host so the others go on.
pub async fn connect_all(hosts: &[String], cfg: &SshConfig) -> BTreeMap<String, Connected> {
    let jobs = hosts.iter().map(|h| async move {
        let c = match SshExecutor::connect(h, cfg).await {
            Ok(ex) => {
                let fp = ex.host_key_fingerprint().to_string();
                Connected {
                    conn: Ok(Arc::new(ex) as Arc<dyn Executor>),
                    fingerprint: Some(fp),
                }
            }
            Err(e) => Connected {
                conn: Err(e.to_string()),
                fingerprint: None,
            },
        };
        (h.clone(), c)
    });
    futures::future::join_all(jobs).await.into_iter().collect()
}
