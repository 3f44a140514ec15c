//! Where things live on a host, per OS family: config paths, binaries, users, unit names.

use crate::api::{PatroniSource, PostgresClusterSpec};
use crate::model::OsFamily;

/// etcd's EnvironmentFile on the RHEL family (read by the unit pgmetal installs there).
pub(crate) const ETCD_ENV_FILE_RHEL: &str = "/etc/etcd/etcd.conf";
/// etcd's second EnvironmentFile on the RHEL family: its first start's settings.
pub(crate) const ETCD_INITIAL_FILE_RHEL: &str = "/etc/etcd/etcd-initial.conf";
/// etcd's second EnvironmentFile on Debian (read through a drop-in of the package's unit).
pub(crate) const ETCD_INITIAL_FILE_DEBIAN: &str = "/etc/default/etcd-initial";
/// The OS user running etcd (created by the Debian and RHEL etcd packages).
pub(crate) const ETCD_USER: &str = "etcd";
/// Where pip-installed Patroni releases live, one virtualenv per release.
pub(crate) const PATRONI_VENV_DIR: &str = "/opt/pgmetal";
/// HAProxy's configuration file, the same on every OS family.
pub(crate) const HAPROXY_CONFIG: &str = "/etc/haproxy/haproxy.cfg";

/// Resolved paths and names for one OS family and spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Patroni's YAML config: the path the distro's `patroni.service` passes to `patroni`.
    pub patroni_config: String,
    /// PostgreSQL binaries (`spec.postgres.binDir` or the distro default for the version).
    pub bin_dir: String,
    /// PostgreSQL data directory (`spec.postgres.dataDir`).
    pub data_dir: String,
    /// Unix socket directory of PostgreSQL.
    pub unix_socket_dir: String,
    /// Home directory of the `postgres` OS user (exists after the package install).
    pub postgres_home: String,
    /// The pgpass file Patroni writes for pg_basebackup/pg_rewind (in `postgres_home`).
    pub pgpass: String,
    /// The OS user (and group) running PostgreSQL and Patroni.
    pub postgres_user: String,
    /// The etcd EnvironmentFile read by the etcd unit.
    pub etcd_env_file: String,
    /// HAProxy's configuration file.
    pub haproxy_config: String,
    /// The EnvironmentFile with etcd's first-start settings (`ETCD_INITIAL_CLUSTER`, ...).
    pub etcd_initial_file: String,
    /// The OS user running etcd (owner of its data directory).
    pub etcd_user: String,
    /// systemd unit of Patroni.
    pub patroni_unit: String,
    /// The virtualenv holding a pip-installed Patroni (`packages.patroni.source: Pip`).
    pub patroni_venv: Option<String>,
    /// systemd unit of etcd.
    pub etcd_unit: String,
    /// systemd unit of HAProxy.
    pub haproxy_unit: String,
}

impl Layout {
    /// The layout for `os`, honouring `spec.postgres.binDir` and `dataDir`.
    pub fn new(spec: &PostgresClusterSpec, os: OsFamily) -> Self {
        let v = spec.postgres.version;
        let (patroni_config, default_bin, socket, home, etcd_env) = match os {
            OsFamily::Debian => (
                "/etc/patroni/config.yml",
                format!("/usr/lib/postgresql/{v}/bin"),
                "/var/run/postgresql",
                "/var/lib/postgresql",
                "/etc/default/etcd",
            ),
            OsFamily::RedHat => (
                "/etc/patroni/patroni.yml",
                format!("/usr/pgsql-{v}/bin"),
                "/run/postgresql",
                "/var/lib/pgsql",
                ETCD_ENV_FILE_RHEL,
            ),
        };
        Layout {
            patroni_config: patroni_config.into(),
            bin_dir: spec.postgres.bin_dir.clone().unwrap_or(default_bin),
            data_dir: spec.postgres.data_dir.clone(),
            unix_socket_dir: socket.into(),
            postgres_home: home.into(),
            pgpass: format!("{home}/.pgpass_patroni"),
            postgres_user: "postgres".into(),
            etcd_env_file: etcd_env.into(),
            etcd_initial_file: match os {
                OsFamily::Debian => ETCD_INITIAL_FILE_DEBIAN,
                OsFamily::RedHat => ETCD_INITIAL_FILE_RHEL,
            }
            .into(),
            haproxy_config: HAPROXY_CONFIG.into(),
            etcd_user: ETCD_USER.into(),
            patroni_unit: "patroni".into(),
            patroni_venv: (spec.packages.patroni.source == PatroniSource::Pip).then(|| {
                format!(
                    "{PATRONI_VENV_DIR}/patroni-{}",
                    spec.packages.patroni.version
                )
            }),
            etcd_unit: "etcd".into(),
            haproxy_unit: "haproxy".into(),
        }
    }
}
