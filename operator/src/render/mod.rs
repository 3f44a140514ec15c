//! Pure rendering of every configuration file pgmetal puts on a host (no I/O).
//!
//! Each renderer takes the [`PostgresClusterSpec`] (plus secrets, host and OS family where
//! needed) and returns [`DesiredFile`]s. Files are built from small typed models and serialized
//! by code that escapes or rejects every user string, never by formatting user strings into a
//! file format. Strings with control characters (newline, CR, NUL, ...) are rejected with a
//! [`RenderError`] naming the field, since none of the target formats (postgresql.conf via
//! Patroni, pgpass, pg_hba.conf, systemd EnvironmentFile) can carry them safely.

pub mod backup;
mod check;
pub mod cron;
mod etcd;
mod haproxy;
mod layout;
mod monitoring;
mod patroni;
mod pg_hba;
mod systemd;
mod tls;
mod yaml;

pub use etcd::{
    ETCD_CLIENT_TLS_LINE, InitialCluster, InitialClusterState, METRICS_PORT as ETCD_METRICS_PORT,
    Transport, etcd_config, etcd_initial_config, etcd_url, url_host,
};
pub use haproxy::{RestChecks, STATS_USER, haproxy_config, haproxy_config_with, stats_hash};
pub use layout::Layout;
pub use monitoring::{
    EXPORTER_UNITS, Exporter, Job, MONITOR_ROLE, TargetGroup, exporters, file_sd, pg_ident,
    scrape_targets,
};
pub use patroni::{REST_TLS_LINE, dcs_config, patroni_config};

/// The pg_hba lines Patroni writes into every member's `pg_hba.conf`.
pub fn pg_hba_lines(spec: &PostgresClusterSpec) -> Vec<String> {
    pg_hba::pg_hba(spec)
}
pub use systemd::systemd_units;
pub use tls::{
    CA_CERT, ETCD_PEM, ETCD_TRUST, EXPIRY_METRICS, PATRONI_ETCD, POSTGRES_PEM, TLS_DIR, ca_file,
    etcd_file, etcd_names, etcd_trust_file, expiry_metrics, patroni_etcd, postgres_file,
    postgres_names,
};

use crate::api::PostgresClusterSpec;
use crate::model::{ClusterSecrets, DesiredFile, OsFamily};
pub(crate) use check::{check_all_hosts, check_text, invalid};

/// Why a file could not be rendered. Every variant names the offending spec field and host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A string field holds a character the target file format cannot represent safely.
    #[error("{field} (for host {host}): {reason}")]
    InvalidValue {
        /// Spec path of the field, e.g. `postgres.parameters.work_mem`.
        field: String,
        /// The host the file was rendered for (`*` for cluster-wide files).
        host: String,
        /// What is wrong, without echoing secret values.
        reason: String,
    },
    /// The host is not part of the cluster (no PostgreSQL, etcd or HAProxy role).
    #[error("host {host} has no role in this cluster")]
    UnknownHost {
        /// The host asked for.
        host: String,
    },
}

/// The roles a host plays in the cluster; a host may play several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    /// PostgreSQL + Patroni member (the primary or a replica).
    pub postgres: bool,
    /// etcd member.
    pub etcd: bool,
    /// HAProxy entry point.
    pub haproxy: bool,
    /// The backup repository host (`spec.backup.repository.host`).
    pub backup: bool,
}

impl Roles {
    /// True when the host plays no role at all.
    pub fn is_empty(&self) -> bool {
        !(self.postgres || self.etcd || self.haproxy || self.backup)
    }
}

/// The Patroni member name and etcd member name of a host: lower case, every character
/// outside `[a-z0-9-]` replaced by `-` ("10.213.0.11" -> "10-213-0-11").
pub fn member_name(host: &str) -> String {
    host.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The roles `host` plays according to `spec`.
pub fn roles(spec: &PostgresClusterSpec, host: &str) -> Roles {
    Roles {
        postgres: spec.postgres.hosts().any(|h| h == host),
        etcd: spec.etcd.hosts.iter().any(|h| h == host),
        haproxy: spec.haproxy.hosts.iter().any(|h| h == host),
        backup: backup::repository_host(spec) == Some(host),
    }
}

/// Every host of the cluster once, in a stable order: primary, replicas, etcd, HAProxy, the
/// backup repository.
pub fn all_hosts(spec: &PostgresClusterSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let candidates = spec
        .postgres
        .hosts()
        .chain(&spec.etcd.hosts)
        .chain(&spec.haproxy.hosts)
        .chain(
            spec.backup
                .iter()
                .filter_map(|b| b.repository.host.as_ref()),
        );
    for h in candidates {
        if !out.iter().any(|o| o == h) {
            out.push(h.clone());
        }
    }
    out
}

/// Every file `host` needs for its roles (etcd's first start as a bootstrap): Patroni config,
/// etcd env files, haproxy.cfg and any
/// systemd units the distro does not ship.
pub fn host_files(
    spec: &PostgresClusterSpec,
    secrets: &ClusterSecrets,
    host: &str,
    os: OsFamily,
) -> Result<Vec<DesiredFile>, RenderError> {
    let r = roles(spec, host);
    if r.is_empty() {
        return Err(RenderError::UnknownHost {
            host: host.to_string(),
        });
    }
    let mut files = Vec::new();
    if r.postgres {
        files.push(patroni_config(spec, secrets, host, os)?);
        files.push(patroni_etcd(spec));
    }
    if r.etcd {
        files.push(etcd_config(spec, host, os, Transport::wanted(spec))?);
        let initial = InitialCluster::bootstrap(spec);
        files.push(etcd_initial_config(spec, host, os, &initial)?);
    }
    if r.haproxy {
        files.push(haproxy_config(spec, secrets)?);
    }
    files.extend(systemd_units(spec, os, r));
    files.extend(backup::host_files(
        spec,
        host,
        &Layout::new(spec, os),
        secrets,
    )?);
    Ok(files)
}

/// `host:port`, with an IPv6 address in brackets.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// True for a literal IPv4 or IPv6 address (as opposed to a DNS name).
pub(crate) fn is_ip(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_files;
