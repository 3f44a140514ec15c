//! etcd 3.4 settings as a systemd EnvironmentFile (`/etc/default/etcd`, `/etc/etcd/etcd.conf`).
//!
//! `ETCD_ENABLE_V2` is deliberately not set: etcd 3.4 leaves the v2 API off by default and
//! Patroni's `etcd3:` DCS speaks only the v3 API (python3-etcd is imported for its exceptions).

use super::{
    Layout, RenderError, check_all_hosts, check_text, host_port, invalid, is_ip, member_name,
};
use crate::api::PostgresClusterSpec;
use crate::model::{DesiredFile, OsFamily};

/// `ETCD_INITIAL_CLUSTER_STATE`: `new` when the cluster is bootstrapped, `existing` when a
/// member joins (or re-joins) a running cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialClusterState {
    /// Bootstrapping a brand-new cluster: all members start together.
    New,
    /// Joining a running cluster (after a member add).
    Existing,
}

impl InitialClusterState {
    fn as_str(self) -> &'static str {
        match self {
            InitialClusterState::New => "new",
            InitialClusterState::Existing => "existing",
        }
    }
}

/// What a member starts with the first time (etcd reads it only while its data directory is
/// empty): the state and the members by name and peer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialCluster {
    /// `new` or `existing`.
    pub state: InitialClusterState,
    /// `(member name, peer URL)`, in order.
    pub members: Vec<(String, String)>,
}

impl InitialCluster {
    /// A brand-new cluster of the spec's etcd hosts.
    pub fn bootstrap(spec: &PostgresClusterSpec) -> Self {
        let port = spec.etcd.peer_port;
        InitialCluster {
            state: InitialClusterState::New,
            members: spec
                .etcd
                .hosts
                .iter()
                .map(|h| (member_name(h), etcd_url(h, port)))
                .collect(),
        }
    }
}

/// An EnvironmentFile: ordered `NAME="value"` assignments with constant names; each value
/// carries the spec field it comes from, for error messages.
pub(super) struct EnvFile {
    pub(super) vars: Vec<(&'static str, &'static str, String)>,
}

impl EnvFile {
    /// Every value double-quoted with `\`, `"`, `$` and backtick backslash-escaped: read the
    /// same by systemd's EnvironmentFile= parser and by a POSIX shell sourcing the file.
    /// Values with control characters are rejected (systemd would join or split lines).
    pub(super) fn serialize(&self, host: &str) -> Result<String, RenderError> {
        let mut out = String::from("# Managed by pgmetal: local changes are overwritten.\n");
        for (name, field, value) in &self.vars {
            check_text(field, host, value, false)?;
            out.push_str(name);
            out.push_str("=\"");
            for c in value.chars() {
                if matches!(c, '\\' | '"' | '$' | '`') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push_str("\"\n");
        }
        Ok(out)
    }
}

/// The URL etcd serves at `host:port`: a client URL (`client_port`) or a peer URL
/// (`peer_port`), as members advertise them and as pgmetal reaches and compares them.
pub fn etcd_url(host: &str, port: u16) -> String {
    format!("http://{}", host_port(host, port))
}

/// The host of an etcd URL (`http://10.0.0.1:2380` → `10.0.0.1`, `http://[fd00::1]:2380` →
/// `fd00::1`): the inverse of [`etcd_url`].
pub fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The etcd EnvironmentFile for etcd member `host` (mode 0644, root-owned, no secrets); its
/// first start's settings are in [`etcd_initial_config`], so that a membership change does not
/// change (and restart) the members that run.
///
/// Listen URLs use the host's address; etcd cannot bind to a DNS name, so a member named by
/// DNS listens on `0.0.0.0` and advertises its name.
pub fn etcd_config(
    spec: &PostgresClusterSpec,
    host: &str,
    os: OsFamily,
) -> Result<DesiredFile, RenderError> {
    check_all_hosts(spec, host)?;
    let etcd = &spec.etcd;
    if !etcd.hosts.iter().any(|h| h == host) {
        return Err(invalid(
            "etcd.hosts",
            host,
            "the host is not an etcd member".into(),
        ));
    }
    let bind = if is_ip(host) { host } else { "0.0.0.0" };
    let mut listen_client = vec![etcd_url(bind, etcd.client_port)];
    if bind != "127.0.0.1" && bind != "0.0.0.0" {
        listen_client.push(etcd_url("127.0.0.1", etcd.client_port));
    }
    let env = EnvFile {
        vars: vec![
            ("ETCD_NAME", "etcd.hosts", member_name(host)),
            ("ETCD_DATA_DIR", "etcd.dataDir", etcd.data_dir.clone()),
            (
                "ETCD_LISTEN_PEER_URLS",
                "etcd.hosts",
                etcd_url(bind, etcd.peer_port),
            ),
            (
                "ETCD_LISTEN_CLIENT_URLS",
                "etcd.hosts",
                listen_client.join(","),
            ),
            (
                "ETCD_INITIAL_ADVERTISE_PEER_URLS",
                "etcd.hosts",
                etcd_url(host, etcd.peer_port),
            ),
            (
                "ETCD_ADVERTISE_CLIENT_URLS",
                "etcd.hosts",
                etcd_url(host, etcd.client_port),
            ),
            // A member that was cut off must not force an election when it returns (etcd 3.4
            // leaves pre-vote off): the election left Patroni reading that member's stale
            // leader key, and a healed old primary took the cluster back.
            ("ETCD_PRE_VOTE", "etcd pre-vote", "true".into()),
        ],
    };
    let content = env.serialize(host)?;
    Ok(DesiredFile {
        path: Layout::new(spec, os).etcd_env_file,
        content: content.into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    })
}

/// The second EnvironmentFile of etcd member `host`: `ETCD_INITIAL_CLUSTER`, its state and
/// token, which etcd reads only while its data directory is empty. Writing it never restarts
/// a running member.
pub fn etcd_initial_config(
    spec: &PostgresClusterSpec,
    host: &str,
    os: OsFamily,
    initial: &InitialCluster,
) -> Result<DesiredFile, RenderError> {
    check_all_hosts(spec, host)?;
    let members: Vec<String> = initial
        .members
        .iter()
        .map(|(name, url)| format!("{name}={url}"))
        .collect();
    let env = EnvFile {
        vars: vec![
            ("ETCD_INITIAL_CLUSTER", "etcd.hosts", members.join(",")),
            (
                "ETCD_INITIAL_CLUSTER_STATE",
                "initial cluster state",
                initial.state.as_str().to_string(),
            ),
            (
                "ETCD_INITIAL_CLUSTER_TOKEN",
                "etcd.clusterToken",
                spec.etcd.cluster_token.clone(),
            ),
        ],
    };
    Ok(DesiredFile {
        path: Layout::new(spec, os).etcd_initial_file,
        content: env.serialize(host)?.into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    })
}
