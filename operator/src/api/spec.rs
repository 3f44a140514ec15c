//! The desired state of a PostgresCluster: the `spec` the user writes (`pgmetal.io/v1alpha1`).

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::defaults::*;
use super::status::PostgresClusterStatus;

/// A DNS name, IPv4 or IPv6 address (CEL/RE2 syntax). Numeric-only names must be real IPv4 addresses.
pub const HOST_RE: &str = r"^([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)([.][A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$|^[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*[0-9A-Fa-f]$";
/// Dotted-quad IPv4 with every octet 0-255.
pub const IPV4_RE: &str = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$";
/// An absolute path without whitespace, shell metacharacters or `.`/`..` segments.
pub const PATH_RE: &str = r"^(/[A-Za-z0-9_+@-][A-Za-z0-9._+@-]*)+/?$";
/// Safe names (Patroni scope, etcd token, user names).
pub const NAME_RE: &str = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$";

/// A highly-available PostgreSQL cluster (Patroni + etcd + HAProxy) on hosts that pgmetal reaches over SSH.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pgmetal.io",
    version = "v1alpha1",
    kind = "PostgresCluster",
    plural = "postgresclusters",
    shortname = "pgc",
    namespaced,
    status = "PostgresClusterStatus",
    doc = "A highly-available PostgreSQL cluster (Patroni + etcd + HAProxy) on bare-metal hosts or VMs reached over SSH.",
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.primary","description":"The host that runs the Patroni leader now"}"#,
    printcolumn = r#"{"name":"Members","type":"string","jsonPath":".status.readyMembers","description":"Running members / desired members"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("!(self.postgres.primary in self.postgres.replicas)").message("postgres.primary must not also be listed in postgres.replicas").field_path(".postgres.primary"),
    validation = Rule::new("self.postgres.port != self.patroni.restApiPort").message("postgres.port and patroni.restApiPort run on the same hosts and must differ").field_path(".patroni.restApiPort"),
    validation = Rule::new("!self.etcd.hosts.exists(h, h == self.postgres.primary || h in self.postgres.replicas) || !(self.etcd.clientPort in [self.postgres.port, self.patroni.restApiPort] || self.etcd.peerPort in [self.postgres.port, self.patroni.restApiPort])").message("etcd shares hosts with PostgreSQL: etcd.clientPort and etcd.peerPort must differ from postgres.port and patroni.restApiPort").field_path(".etcd"),
    validation = Rule::new("!self.haproxy.hosts.exists(h, h == self.postgres.primary || h in self.postgres.replicas) || !([self.haproxy.primaryPort, self.haproxy.replicaPort, self.haproxy.statsPort].exists(p, p in [self.postgres.port, self.patroni.restApiPort]))").message("HAProxy shares hosts with PostgreSQL: haproxy.primaryPort, replicaPort and statsPort must differ from postgres.port and patroni.restApiPort").field_path(".haproxy"),
    validation = Rule::new("!self.monitoring.enabled || ![self.monitoring.nodeExporterPort, self.monitoring.postgresExporterPort].exists(p, p in [self.postgres.port, self.patroni.restApiPort, self.etcd.clientPort, self.etcd.peerPort, self.haproxy.primaryPort, self.haproxy.replicaPort, self.haproxy.statsPort])").message("monitoring.nodeExporterPort and postgresExporterPort must differ from every PostgreSQL, Patroni, etcd and HAProxy port").field_path(".monitoring"),
    validation = Rule::new("!has(self.bootstrap) || !has(self.bootstrap.recovery) || !has(self.bootstrap.recovery.host) || self.tls.mode != 'Disabled'").message("bootstrap.recovery needs tls.mode Managed or Provided: the source's pgBackRest server authenticates the restore with the CA both clusters share").field_path(".bootstrap.recovery"),
    validation = Rule::new("!has(self.backup) || self.tls.mode != 'Disabled'").message("backup needs tls.mode Managed or Provided: pgBackRest's TLS server authenticates every exchange with the cluster's CA").field_path(".backup"),
    validation = Rule::new("!has(self.backup) || !has(self.backup.repository.host) || !(self.backup.repository.host == self.postgres.primary || self.backup.repository.host in self.postgres.replicas)").message("backup.repository.host must not run PostgreSQL for this cluster: a backup kept beside the data it protects is lost with it").field_path(".backup.repository.host"),
    validation = Rule::new("!has(self.backup) || !(self.backup.port in [self.postgres.port, self.patroni.restApiPort, self.etcd.clientPort, self.etcd.peerPort, self.haproxy.primaryPort, self.haproxy.replicaPort, self.haproxy.statsPort])").message("backup.port must differ from every PostgreSQL, Patroni, etcd and HAProxy port").field_path(".backup.port"),
    validation = Rule::new("!self.haproxy.hosts.exists(h, h in self.etcd.hosts) || !([self.haproxy.primaryPort, self.haproxy.replicaPort, self.haproxy.statsPort].exists(p, p in [self.etcd.clientPort, self.etcd.peerPort]))").message("HAProxy shares hosts with etcd: haproxy.primaryPort, replicaPort and statsPort must differ from etcd.clientPort and etcd.peerPort").field_path(".haproxy")
)]
#[serde(rename_all = "camelCase")]
pub struct PostgresClusterSpec {
    /// How pgmetal logs in to every host (replaces the Ansible inventory's SSH settings).
    pub ssh: SshSpec,
    /// Where the packages come from: the distro's repositories or an internal/offline mirror.
    #[serde(default)]
    pub packages: PackagesSpec,
    /// PostgreSQL: version, data directory, parameters, and the hosts that run it.
    pub postgres: PostgresSpec,
    /// Patroni, the HA manager on every PostgreSQL host.
    #[serde(default)]
    pub patroni: PatroniSpec,
    /// The etcd cluster that stores Patroni's leader key (the DCS).
    pub etcd: EtcdSpec,
    /// HAProxy: read-write and read-only entry points that follow the Patroni leader.
    #[serde(default)]
    pub haproxy: HaproxySpec,
    /// Monitoring: exporters on the hosts and the scrape targets the operator publishes.
    #[serde(default)]
    pub monitoring: super::MonitoringSpec,
    /// Encryption: the cluster's CA and the certificates it signs (PostgreSQL first).
    #[serde(default)]
    pub tls: super::TlsSpec,
    /// How the cluster starts: an empty database (default), or another cluster's backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<super::BootstrapSpec>,
    /// Backups and WAL archiving with pgBackRest. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<super::BackupSpec>,
    /// Maintenance mode: when true pgmetal stops converging the hosts and puts Patroni in pause
    /// (no automatic failover), like `patronictl pause`. Set back to false to resume.
    #[serde(default)]
    pub paused: bool,
    /// What happens on the hosts when this resource is deleted: `Retain` stops the services and
    /// keeps all data; `Wipe` also removes the PostgreSQL and etcd data directories.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// What deleting the resource does to the hosts.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    /// Stop the services; keep data directories and packages.
    #[default]
    Retain,
    /// Stop the services and delete the PostgreSQL and etcd data directories.
    Wipe,
}

/// A key in a Secret in the same namespace as the PostgresCluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// SSH access to the hosts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshSpec {
    /// The login user on every host. Default `root`, as in the reference deployment.
    #[serde(default = "default_ssh_user")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z_][a-z0-9_-]{0,31}$')").message("ssh.user must be a plain Unix user name (lower case letters, digits, _ and -)"))]
    #[schemars(length(max = 32))]
    pub user: String,
    /// SSH port on every host. Default 22.
    #[serde(default = "default_ssh_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Secret key holding the OpenSSH private key (unencrypted) that logs in as `user`.
    /// Required by the API server; the CLI takes the key from `--ssh-key` and ignores this.
    // `Option` only so that the CLI reads manifests without it; `schemars(required)` keeps the
    // CRD schema as for a plain field (required, not nullable).
    #[schemars(required)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_secret: Option<SecretKeyRef>,
    /// Secret key holding an OpenSSH known_hosts file with every host's public key. Host keys are
    /// always verified: without this, the key seen on first contact is recorded in
    /// `status.hosts[].hostKeyFingerprint` and any later change is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_secret: Option<SecretKeyRef>,
    /// Run commands through `sudo -n` (passwordless). Defaults to true when `user` is not root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<bool>,
    /// Seconds to wait for a TCP connection and SSH handshake. Default 10.
    #[serde(default = "default_connect_timeout")]
    #[schemars(range(min = 1, max = 300))]
    pub connect_timeout_seconds: u32,
}

/// Package sources.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackagesSpec {
    /// An internal or offline mirror (the reference deployment's "offline packages"). When unset
    /// the distro's configured repositories are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositorySpec>,
    /// Package-name overrides, for mirrors that name packages differently.
    #[serde(default)]
    pub names: PackageNames,
    /// Where Patroni comes from: a pinned release from a PyPI index (default), or the distro.
    #[serde(default)]
    pub patroni: PatroniPackage,
}

/// How Patroni is installed on the PostgreSQL hosts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatroniPackage {
    /// `Pip` (default): Patroni `version` from `indexUrl` into a virtualenv
    /// (`/opt/pgmetal/patroni-<version>`), run by pgmetal's own `patroni.service`; only
    /// `python3-venv` and `python3-psycopg2` come from the distro. `Distro`: the distro's
    /// package (`packages.names.patroni`). Debian 12 ships Patroni 3.0.2, which can let a
    /// partitioned old primary take the cluster back after the partition heals and discard the
    /// new primary's acknowledged writes (fixed upstream in 3.0.3 and 4.0.6).
    #[serde(default)]
    pub source: PatroniSource,
    /// The Patroni release pip installs (`Pip` only): 4.0.6 or later.
    #[serde(default = "default_patroni_version")]
    #[schemars(pattern(r"^[0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}$"))]
    pub version: String,
    /// A PyPI index (simple API, e.g. a mirror's `https://mirror.internal/pypi/simple/`), the
    /// reference deployment's "PyPI mirror". When unset, pip's own configuration on the host
    /// applies (`/etc/pip.conf`, else pypi.org). An `http://` index is trusted as given
    /// (pip's `--trusted-host`), like an apt line with `[trusted=yes]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^(https?|file)://[!-~]+$')").message("packages.patroni.indexUrl must be an http(s) or file URL without spaces"))]
    #[schemars(length(max = 1024))]
    pub index_url: Option<String>,
}

impl Default for PatroniPackage {
    fn default() -> Self {
        Self {
            source: PatroniSource::default(),
            version: default_patroni_version(),
            index_url: None,
        }
    }
}

/// Where Patroni comes from.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum PatroniSource {
    /// A pinned release from a PyPI index, in a virtualenv.
    #[default]
    Pip,
    /// The distribution's package.
    Distro,
}

/// A package repository for apt (Debian/Ubuntu) or yum/dnf (RHEL family) hosts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.apt) || has(self.yumBaseUrl)").message("packages.repository needs apt or yumBaseUrl"))]
pub struct RepositorySpec {
    /// One apt sources.list line, written to /etc/apt/sources.list.d/pgmetal.list, e.g.
    /// `deb [trusted=yes] http://mirror.internal/debian ./`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^deb(-src)? [ -~]+$')").message("packages.repository.apt must be a single sources.list line starting with 'deb '"))]
    #[schemars(length(max = 1024))]
    pub apt: Option<String>,
    /// A yum/dnf baseurl, written to /etc/yum.repos.d/pgmetal.repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^(https?|file|ftp)://[!-~]+$')").message("packages.repository.yumBaseUrl must be an http(s), ftp or file URL without spaces"))]
    #[schemars(length(max = 1024))]
    pub yum_base_url: Option<String>,
    /// Check package signatures on yum/dnf (`gpgcheck`). Default false for internal mirrors.
    #[serde(default)]
    pub yum_gpg_check: bool,
}

/// Package names; each defaults to the distro's name for the major version.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageNames {
    /// PostgreSQL server packages (Debian default `postgresql-<version>`, RHEL `postgresql<version>-server`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(max = 128), pattern(r"^[A-Za-z0-9][A-Za-z0-9.+_:-]*$"))
    )]
    pub postgres: Vec<String>,
    /// Patroni packages (default `patroni` plus its etcd client library).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(max = 128), pattern(r"^[A-Za-z0-9][A-Za-z0-9.+_:-]*$"))
    )]
    pub patroni: Vec<String>,
    /// etcd packages (Debian default `etcd-server etcd-client`, RHEL `etcd`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(max = 128), pattern(r"^[A-Za-z0-9][A-Za-z0-9.+_:-]*$"))
    )]
    pub etcd: Vec<String>,
    /// HAProxy packages (default `haproxy`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(length(max = 128), pattern(r"^[A-Za-z0-9][A-Za-z0-9.+_:-]*$"))
    )]
    pub haproxy: Vec<String>,
}

/// PostgreSQL settings and members.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// PostgreSQL major version. Supported: 13, 14, 15, 16, 17. Default 15 (Debian 12's).
    #[serde(default = "default_pg_version")]
    #[x_kube(validation = Rule::new("self in [13, 14, 15, 16, 17]").message("postgres.version must be one of 13, 14, 15, 16, 17"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("postgres.version is immutable: a major upgrade needs pg_upgrade, not a spec change"))]
    pub version: u32,
    /// Port PostgreSQL listens on, on every member. Default 5432.
    #[serde(default = "default_pg_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Data directory (the reference's `pg_data_dir`). Immutable: moving data needs a migration.
    #[serde(default = "default_pg_data_dir")]
    #[x_kube(validation = Rule::new(path_rule()).message("postgres.dataDir must be an absolute path of letters, digits and ._+@- only (no . or .. segments)"))]
    #[x_kube(validation = Rule::new(data_dir_rule()).message(data_dir_message!("postgres.dataDir", "/data/pg_data")))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("postgres.dataDir is immutable"))]
    #[schemars(length(max = 255))]
    pub data_dir: String,
    /// Directory of the PostgreSQL binaries (the reference's `pg_bin_dir`). Default: Debian
    /// `/usr/lib/postgresql/<version>/bin`, RHEL `/usr/pgsql-<version>/bin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(path_rule()).message("postgres.binDir must be an absolute path of letters, digits and ._+@- only (no . or .. segments)"))]
    #[schemars(length(max = 255))]
    pub bin_dir: Option<String>,
    /// Database encoding for initdb (the reference's `postgresql_encoding`). Default UTF8.
    #[serde(default = "default_encoding")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_]{1,32}$')").message("postgres.encoding must be an encoding name such as UTF8"))]
    pub encoding: String,
    /// Locale for initdb. Default `C.UTF-8` (present on every modern distro).
    #[serde(default = "default_locale")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_.@-]{1,64}$')").message("postgres.locale must be a locale name such as C.UTF-8 or en_US.UTF-8"))]
    pub locale: String,
    /// postgresql.conf settings, applied to every member through Patroni's DCS configuration
    /// (like `patronictl edit-config`). Values are strings: quote numbers, e.g. `max_connections: "200"`.
    /// Settings that need a restart are applied with a rolling restart.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[a-z][a-z0-9_.]{0,62}$'))").message("postgres.parameters keys must be PostgreSQL setting names (lower case letters, digits, _ and .)"))]
    #[schemars(extend("maxProperties" = 200))]
    pub parameters: BTreeMap<String, String>,
    /// The preferred primary host (the reference's `pg_master` group). Patroni bootstraps the
    /// cluster here; changing it performs a switchover to the new host.
    #[x_kube(validation = Rule::new(host_rule()).message("postgres.primary must be a DNS name or an IP address"))]
    #[schemars(length(min = 1, max = 253))]
    pub primary: String,
    /// The replica hosts (the reference's `pg_slave` group), streaming from the primary.
    #[serde(default)]
    #[x_kube(validation = Rule::new(hosts_rule()).message("postgres.replicas: every host must be a DNS name or an IP address"))]
    #[x_kube(validation = Rule::new(unique_rule()).message("postgres.replicas must not list a host twice"))]
    #[schemars(length(max = 15), inner(length(min = 1, max = 253)))]
    pub replicas: Vec<String>,
    /// Extra pg_hba.conf lines, added after pgmetal's own (replication among members, HAProxy
    /// hosts, local superuser), e.g. `host all all 10.0.0.0/8 scram-sha-256`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(l, l.matches('^(local|host|hostssl|hostnossl|hostgssenc|hostnogssenc) ') && !l.contains('\\n'))").message("postgres.pgHba entries must be single pg_hba.conf lines starting with local, host, hostssl or hostnossl"))]
    #[schemars(length(max = 64), inner(length(max = 512)))]
    pub pg_hba: Vec<String>,
    /// The superuser (default name `postgres`).
    #[serde(default = "default_superuser")]
    pub superuser: PgUser,
    /// The replication user (default name `replicator`).
    #[serde(default = "default_replication_user")]
    pub replication: PgUser,
    /// The pg_rewind user (default name `rewind_user`), used to rejoin a former primary.
    #[serde(default = "default_rewind_user")]
    pub rewind: PgUser,
}

impl PostgresSpec {
    /// The PostgreSQL member hosts: the primary, then the replicas.
    pub fn hosts(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.primary).chain(&self.replicas)
    }
}

/// A PostgreSQL role managed by Patroni.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PgUser {
    /// Role name.
    #[x_kube(validation = Rule::new("self.matches('^[a-z_][a-z0-9_]{0,62}$')").message("user names must be lower case letters, digits and _"))]
    pub name: String,
    /// Secret key holding the password. When unset, the operator generates a strong password
    /// into the Secret `<cluster>-passwords` (keys `superuser`, `replication`, `rewind`,
    /// `restapi`; `haproxyStats` is always there), which the PostgresCluster owns; the CLI uses
    /// its `--secrets` file instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeyRef>,
}

/// Patroni settings (the reference's `patroni_*` variables and bootstrap DCS settings).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.loopWait + 2 * self.retryTimeout <= self.ttl").message("patroni: loopWait + 2 * retryTimeout must not exceed ttl, or the leader key can expire while the leader is healthy"))]
pub struct PatroniSpec {
    /// Cluster name in the DCS (the reference's `patroni_scope`). Immutable.
    #[serde(default = "default_scope")]
    #[x_kube(validation = Rule::new(name_rule()).message("patroni.scope must be 1-63 letters, digits, _ . or -"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("patroni.scope is immutable: the running cluster's keys live under it"))]
    pub scope: String,
    /// Key prefix in etcd (the reference's `patroni_namespace`). Immutable.
    #[serde(default = "default_namespace")]
    #[x_kube(validation = Rule::new("self.matches('^/([A-Za-z0-9_-][A-Za-z0-9_.-]*/)+$')").message("patroni.namespace must look like /name/ (letters, digits, _ . -, starting and ending with /)"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("patroni.namespace is immutable"))]
    #[schemars(length(max = 128))]
    pub namespace: String,
    /// Port of Patroni's REST API on every PostgreSQL host. HAProxy checks it. Default 8008.
    #[serde(default = "default_restapi_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub rest_api_port: u16,
    /// Leader key time-to-live in seconds: a failed leader is replaced about this long after it
    /// stopped renewing. Default 20, the shortest Patroni allows.
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 20, max = 3600))]
    pub ttl: u32,
    /// Seconds between Patroni's HA loop runs. Default 2.
    #[serde(default = "default_loop_wait")]
    #[schemars(range(min = 1, max = 600))]
    pub loop_wait: u32,
    /// Seconds Patroni retries DCS and PostgreSQL operations before demoting. Default 8.
    #[serde(default = "default_retry_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub retry_timeout: u32,
    /// A replica lagging more than this many bytes is not promoted on failover. Default 1 MiB.
    #[serde(default = "default_max_lag")]
    #[schemars(range(min = 0))]
    pub maximum_lag_on_failover: u64,
    /// Synchronous replication: commits wait for one replica. Default false.
    #[serde(default)]
    pub synchronous_mode: bool,
    /// After an automatic failover: `Manual` leaves the new primary where it is; `Automatic`
    /// switches back to `postgres.primary` once it is healthy and caught up (the reference's fail-back).
    #[serde(default)]
    pub failback: Failback,
    /// With `failback: Automatic`: seconds the preferred primary must have been a healthy,
    /// caught-up replica before the primary moves back to it. Default 60.
    #[serde(default = "default_failback_delay")]
    #[schemars(range(min = 0, max = 86400))]
    pub failback_delay_seconds: u32,
    /// With `failback: Automatic`: at most one fail-back in this many seconds, so that an
    /// unstable preferred host cannot make the primary flap. Default 600.
    #[serde(default = "default_failback_min_interval")]
    #[schemars(range(min = 0, max = 604800))]
    pub failback_min_interval_seconds: u32,
    /// Secret key with the password for Patroni's REST API (user `patroni`), needed for
    /// switchover, restart and reload (with `spec.tls`, Patroni also asks for a client
    /// certificate the cluster's CA signed). Generated into `<cluster>-passwords` (key
    /// `restapi`) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_api_password_secret: Option<SecretKeyRef>,
}

/// Fail-back behaviour after an automatic failover.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Failback {
    /// Keep the new primary; report the difference in status.
    #[default]
    Manual,
    /// Switch back to the preferred primary once it is healthy and caught up.
    Automatic,
}

/// The etcd cluster (the reference's `etcd_cluster` group and `etcd_*` variables).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.clientPort != self.peerPort").message("etcd.clientPort and etcd.peerPort must differ"))]
pub struct EtcdSpec {
    /// Hosts of the etcd members: 1, 3, 5 or 7 (an odd count keeps a majority through a failure).
    /// They may be the PostgreSQL hosts, as in the reference deployment.
    #[x_kube(validation = Rule::new("size(self) in [1, 3, 5, 7]").message("etcd.hosts must list 1, 3, 5 or 7 members (an odd count keeps a quorum)"))]
    #[x_kube(validation = Rule::new(hosts_rule()).message("etcd.hosts: every host must be a DNS name or an IP address"))]
    #[x_kube(validation = Rule::new(unique_rule()).message("etcd.hosts must not list a host twice"))]
    #[schemars(length(min = 1, max = 7), inner(length(min = 1, max = 253)))]
    pub hosts: Vec<String>,
    /// Client port (the reference's `etcd_port`). Default 2379.
    #[serde(default = "default_etcd_client_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub client_port: u16,
    /// Peer port (the reference's `etcd_initial_port`). Default 2380.
    #[serde(default = "default_etcd_peer_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub peer_port: u16,
    /// Initial cluster token (the reference's `etcd_initial_cluster_token`). Immutable.
    #[serde(default = "default_cluster_token")]
    #[x_kube(validation = Rule::new(name_rule()).message("etcd.clusterToken must be 1-63 letters, digits, _ . or -"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("etcd.clusterToken is immutable"))]
    pub cluster_token: String,
    /// Data directory (the reference's `etcd_data_dir`). Immutable.
    #[serde(default = "default_etcd_data_dir")]
    #[x_kube(validation = Rule::new(path_rule()).message("etcd.dataDir must be an absolute path of letters, digits and ._+@- only (no . or .. segments)"))]
    #[x_kube(validation = Rule::new(data_dir_rule()).message(data_dir_message!("etcd.dataDir", "/var/lib/etcd/default.etcd")))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("etcd.dataDir is immutable"))]
    #[schemars(length(max = 255))]
    pub data_dir: String,
}

/// HAProxy entry points.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.primaryPort != self.replicaPort && self.primaryPort != self.statsPort && self.replicaPort != self.statsPort").message("haproxy.primaryPort, replicaPort and statsPort must all differ"))]
pub struct HaproxySpec {
    /// HAProxy hosts. When empty, pgmetal installs no HAProxy and publishes the rendered
    /// haproxy.cfg in the operator's ConfigMap `<cluster>-haproxy` for an existing HAProxy (as
    /// the reference deployment appended its generated file to an existing one).
    #[serde(default)]
    #[x_kube(validation = Rule::new(hosts_rule()).message("haproxy.hosts: every host must be a DNS name or an IP address"))]
    #[x_kube(validation = Rule::new(unique_rule()).message("haproxy.hosts must not list a host twice"))]
    #[schemars(length(max = 8), inner(length(min = 1, max = 253)))]
    pub hosts: Vec<String>,
    /// Read-write port: routes to the Patroni leader (checked with GET /primary). Default 5000.
    #[serde(default = "default_primary_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub primary_port: u16,
    /// Read-only port: balances over streaming replicas (GET /replica). Default 5001.
    #[serde(default = "default_replica_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub replica_port: u16,
    /// HAProxy statistics page (HTTP, `/stats`, plus the CSV form pgmetal reads). Default 7000.
    #[serde(default = "default_stats_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub stats_port: u16,
}

pub(crate) fn host_rule() -> String {
    format!(
        "self.matches('{HOST_RE}') && (!self.matches('^[0-9.]+$') || self.matches('{IPV4_RE}'))"
    )
}
fn hosts_rule() -> String {
    format!(
        "self.all(h, h.matches('{HOST_RE}') && (!h.matches('^[0-9.]+$') || h.matches('{IPV4_RE}')))"
    )
}
fn unique_rule() -> &'static str {
    "self.all(h, self.exists_one(x, x == h))"
}
/// A data directory is a directory of its own, two or more levels deep, and not a system
/// directory: pgmetal creates it, and `deletionPolicy: Wipe` deletes it.
fn data_dir_rule() -> String {
    let rules = [
        r"self.matches('^/[^/]+/[^/]')",
        r"!self.matches('^/(etc|usr|bin|sbin|lib|lib32|lib64|libx32|boot|dev|proc|sys|run|tmp|root)(/|$)')",
        r"!self.matches('^/var/(lib|log|cache|tmp|spool|backups|mail|opt|local|run|lock)/?$')",
        r"!self.matches('^/var/lib/(postgresql|pgsql)/?$')",
        r"!self.matches('^/home/[^/]+/?$')",
    ];
    // A relative path gets the path rule's message alone.
    format!("!self.matches('^/') || ({})", rules.join(" && "))
}

macro_rules! data_dir_message {
    ($field:literal, $example:literal) => {
        concat!(
            $field,
            " must be a directory of its own at least two levels deep (e.g. ",
            $example,
            "), not a system or shared directory such as /, /data, /etc, /usr, /var/lib or a home directory: pgmetal creates it and deletionPolicy Wipe deletes it"
        )
    };
}
use data_dir_message;

fn path_rule() -> String {
    format!("self.matches('{PATH_RE}')")
}
fn name_rule() -> String {
    format!("self.matches('{NAME_RE}')")
}
