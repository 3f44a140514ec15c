//! etcd 3.4 settings as a systemd EnvironmentFile (`/etc/default/etcd`, `/etc/etcd/etcd.conf`).
//!
//! With `spec.tls`, clients and peers speak TLS and must present a certificate of the cluster's
//! CA; a running plain-text cluster gets there (or back) through [`Transport::Opening`].
//!
//! `ETCD_ENABLE_V2` is deliberately not set: etcd 3.4 leaves the v2 API off by default and
//! Patroni's `etcd3:` DCS speaks only the v3 API (python3-etcd is imported for its exceptions).

use super::{
    Layout, RenderError, check_all_hosts, check_text, host_port, invalid, is_ip, member_name,
};
use crate::api::PostgresClusterSpec;
use crate::model::{DesiredFile, OsFamily};
use crate::tls::Scheme;

/// The port etcd serves `/metrics` and `/health` on, in plain HTTP and without a client
/// certificate, so that Prometheus scrapes it while the client port requires one.
pub const METRICS_PORT: u16 = 2381;

/// How an etcd member speaks to its clients and peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain text everywhere (`spec.tls.mode: Disabled`).
    Plain,
    /// Between the two, while a running cluster moves either way: peers in plain text, each
    /// member able to dial a TLS peer, and the client port still in the scheme the clients
    /// speak (etcd 3.4 cannot serve both on one port: its JSON gateway, which Patroni uses,
    /// fails in plain text when TLS shares the port).
    Opening(Scheme),
    /// TLS everywhere; clients and peers must present a certificate of the cluster's CA.
    Tls,
}

impl Transport {
    /// The end state `spec.tls` asks for.
    pub fn wanted(spec: &PostgresClusterSpec) -> Self {
        if spec.tls.enabled() {
            Transport::Tls
        } else {
            Transport::Plain
        }
    }

    /// The scheme of the member's peer URL.
    pub fn peer_scheme(self) -> Scheme {
        Scheme::when(self == Transport::Tls)
    }

    /// The scheme of the member's client port.
    pub fn client_scheme(self) -> Scheme {
        match self {
            Transport::Plain => Scheme::Http,
            Transport::Opening(s) => s,
            Transport::Tls => Scheme::Https,
        }
    }

    /// Whether the member needs its certificate files.
    pub fn uses_tls(self) -> bool {
        self != Transport::Plain
    }
}

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
    /// A brand-new cluster of the spec's etcd hosts, speaking as `spec.tls` asks.
    pub fn bootstrap(spec: &PostgresClusterSpec) -> Self {
        let port = spec.etcd.peer_port;
        let scheme = Transport::wanted(spec).peer_scheme();
        InitialCluster {
            state: InitialClusterState::New,
            members: spec
                .etcd
                .hosts
                .iter()
                .map(|h| (member_name(h), etcd_url(scheme, h, port)))
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

/// The start of the line that only an etcd configuration serving its clients over TLS has: how
/// pgmetal reads back over SSH which scheme it configured a member with.
pub const ETCD_CLIENT_TLS_LINE: &str = "ETCD_LISTEN_CLIENT_URLS=\"https://";

/// The URL etcd serves at `host:port` in `scheme`: a client URL (`client_port`) or a peer URL
/// (`peer_port`), as members advertise them and as pgmetal reaches and compares them.
pub fn etcd_url(scheme: Scheme, host: &str, port: u16) -> String {
    format!("{}://{}", scheme.as_str(), host_port(host, port))
}

/// The host of an etcd URL (`http://10.0.0.1:2380` → `10.0.0.1`, `http://[fd00::1]:2380` →
/// `fd00::1`): the inverse of [`etcd_url`].
pub fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The etcd EnvironmentFile for etcd member `host` speaking `transport` (mode 0644,
/// root-owned, no secrets: the key is in [`super::ETCD_PEM`]); its first start's settings are
/// in [`etcd_initial_config`], so that a membership change does not change (and restart) the
/// members that run.
///
/// Listen URLs use the host's address; etcd cannot bind to a DNS name, so a member named by
/// DNS listens on `0.0.0.0` and advertises its name.
pub fn etcd_config(
    spec: &PostgresClusterSpec,
    host: &str,
    os: OsFamily,
    transport: Transport,
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
    let peer = transport.peer_scheme();
    let client = transport.client_scheme();
    let mut listen_client = vec![etcd_url(client, bind, etcd.client_port)];
    if bind != "127.0.0.1" && bind != "0.0.0.0" {
        listen_client.push(etcd_url(client, "127.0.0.1", etcd.client_port));
    }
    let mut vars = vec![
        ("ETCD_NAME", "etcd.hosts", member_name(host)),
        ("ETCD_DATA_DIR", "etcd.dataDir", etcd.data_dir.clone()),
        (
            "ETCD_LISTEN_PEER_URLS",
            "etcd.hosts",
            etcd_url(peer, bind, etcd.peer_port),
        ),
        (
            "ETCD_LISTEN_CLIENT_URLS",
            "etcd.hosts",
            listen_client.join(","),
        ),
        (
            "ETCD_LISTEN_METRICS_URLS",
            "etcd.hosts",
            etcd_url(Scheme::Http, bind, METRICS_PORT),
        ),
        (
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            "etcd.hosts",
            etcd_url(peer, host, etcd.peer_port),
        ),
        (
            "ETCD_ADVERTISE_CLIENT_URLS",
            "etcd.hosts",
            etcd_url(client, host, etcd.client_port),
        ),
        // A member that was cut off must not force an election when it returns (etcd 3.4
        // leaves pre-vote off): the election left Patroni reading that member's stale
        // leader key, and a healed old primary took the cluster back.
        ("ETCD_PRE_VOTE", "etcd pre-vote", "true".into()),
    ];
    if transport.uses_tls() {
        vars.extend(tls_vars(client, peer));
    }
    let content = EnvFile { vars }.serialize(host)?;
    Ok(DesiredFile {
        path: Layout::new(spec, os).etcd_env_file,
        content: content.into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    })
}

/// etcd's certificate settings: its certificate (with the key in the same file) for clients
/// and peers, the cluster's CA for theirs, and a certificate asked of every client and peer
/// that speaks TLS.
fn tls_vars(client: Scheme, peer: Scheme) -> Vec<(&'static str, &'static str, String)> {
    let file = |name| (name, "spec.tls", super::ETCD_PEM.to_string());
    let ca = |name| (name, "spec.tls", super::ETCD_TRUST.to_string());
    let mut vars = vec![
        file("ETCD_CERT_FILE"),
        file("ETCD_KEY_FILE"),
        ca("ETCD_TRUSTED_CA_FILE"),
        file("ETCD_PEER_CERT_FILE"),
        file("ETCD_PEER_KEY_FILE"),
        ca("ETCD_PEER_TRUSTED_CA_FILE"),
    ];
    if client == Scheme::Https {
        vars.push(("ETCD_CLIENT_CERT_AUTH", "spec.tls", "true".into()));
    }
    if peer == Scheme::Https {
        vars.push(("ETCD_PEER_CLIENT_CERT_AUTH", "spec.tls", "true".into()));
    }
    vars
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
