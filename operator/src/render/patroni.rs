//! Patroni 3.x configuration (YAML) for one PostgreSQL member, built from typed structs.

use std::collections::BTreeMap;

use serde::Serialize;

use super::check::check_patroni_inputs;
use super::{Layout, RenderError, host_port, invalid, member_name};
use crate::api::PostgresClusterSpec;
use crate::model::{ClusterSecrets, DesiredFile, OsFamily};

/// First line of every Patroni config pgmetal writes.
const HEADER: &str = "# Managed by pgmetal: local changes are overwritten.\n";

/// postgresql.conf defaults for every member; `spec.postgres.parameters` overrides them.
/// `password_encryption` matters for PostgreSQL 13, whose default is still md5 while pg_hba
/// below asks for scram-sha-256.
const DEFAULT_PARAMETERS: &[(&str, &str)] = &[
    ("hot_standby", "on"),
    ("max_replication_slots", "10"),
    ("max_wal_senders", "10"),
    ("password_encryption", "scram-sha-256"),
    ("wal_level", "replica"),
    ("wal_log_hints", "on"),
];

#[derive(Serialize)]
struct PatroniConfig {
    scope: String,
    namespace: String,
    name: String,
    restapi: RestApi,
    etcd3: Etcd3,
    bootstrap: Bootstrap,
    postgresql: Postgresql,
    tags: Tags,
}

#[derive(Serialize)]
struct RestApi {
    listen: String,
    connect_address: String,
    authentication: Credentials,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    tls: Option<RestTls>,
}

/// The start of the line that only a configuration serving the REST API over HTTPS has: how
/// pgmetal reads back over SSH which scheme it configured a member with.
pub const REST_TLS_LINE: &str = "  verify_client:";

/// HTTPS for the REST API (`spec.tls`): the member's server certificate (the one PostgreSQL
/// serves, with its key in the same file), the cluster's CA for clients' certificates, and a
/// client certificate required for unsafe methods (switchover, restart, config changes).
/// Reads (`GET`: HAProxy's checks, the members' leader race, metrics) need none.
#[derive(Serialize)]
struct RestTls {
    certfile: &'static str,
    keyfile: &'static str,
    cafile: &'static str,
    verify_client: &'static str,
}

impl RestTls {
    fn of(spec: &PostgresClusterSpec) -> Option<Self> {
        spec.tls.enabled().then_some(Self {
            certfile: super::tls::POSTGRES_PEM,
            keyfile: super::tls::POSTGRES_PEM,
            cafile: super::tls::CA_CERT,
            verify_client: "optional",
        })
    }
}

#[derive(Serialize)]
struct Credentials {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Etcd3 {
    hosts: Vec<String>,
    /// Always true: Patroni speaks only to `hosts`, in its own scheme, never to the client
    /// URLs the members advertise (which name the other scheme while a cluster moves between
    /// plain text and TLS). A changed list is loaded by a restart (see `PATRONI_ETCD`).
    use_proxies: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    tls: Option<Etcd3Tls>,
}

/// TLS to etcd (`spec.tls`): the cluster's CA, and the member's certificate (the one
/// PostgreSQL serves; it carries client authentication) as Patroni's client certificate.
#[derive(Serialize)]
struct Etcd3Tls {
    protocol: &'static str,
    cacert: &'static str,
    cert: &'static str,
    key: &'static str,
}

impl Etcd3Tls {
    fn of(spec: &PostgresClusterSpec) -> Option<Self> {
        spec.tls.enabled().then_some(Etcd3Tls {
            protocol: "https",
            cacert: super::CA_CERT,
            cert: super::POSTGRES_PEM,
            key: super::POSTGRES_PEM,
        })
    }
}

#[derive(Serialize)]
struct Bootstrap {
    dcs: Dcs,
    initdb: Vec<InitdbOption>,
    /// `pgbackrest` when the cluster starts from another's backup (`spec.bootstrap.recovery`).
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pgbackrest: Option<CustomBootstrap>,
}

/// A bootstrap method that restores a backup: Patroni runs `command` on the first member and
/// keeps the recovery settings it wrote (pgBackRest's, with the target and the promotion).
#[derive(Serialize)]
struct CustomBootstrap {
    command: String,
    keep_existing_recovery_conf: bool,
    no_params: bool,
}

#[derive(Serialize)]
struct Dcs {
    ttl: u32,
    loop_wait: u32,
    retry_timeout: u32,
    maximum_lag_on_failover: u64,
    /// Always true: a replica whose timeline is behind the last one the DCS's history records
    /// takes no part in the leader race (a replica still on the old timeline just after a
    /// switchover would otherwise be promoted on a timeline number already taken).
    check_timeline: bool,
    synchronous_mode: bool,
    postgresql: DcsPostgresql,
}

#[derive(Serialize)]
struct DcsPostgresql {
    use_pg_rewind: bool,
    use_slots: bool,
    parameters: BTreeMap<String, String>,
}

/// One entry of Patroni's `bootstrap.initdb` list: a bare flag or a `{option: value}` map.
#[derive(Serialize)]
#[serde(untagged)]
enum InitdbOption {
    Flag(&'static str),
    Value(BTreeMap<&'static str, String>),
}

#[derive(Serialize)]
struct Postgresql {
    listen: String,
    connect_address: String,
    data_dir: String,
    bin_dir: String,
    pgpass: String,
    authentication: Authentication,
    parameters: BTreeMap<&'static str, String>,
    pg_hba: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pg_ident: Vec<String>,
    create_replica_methods: Vec<&'static str>,
    basebackup: Vec<BTreeMap<&'static str, &'static str>>,
}

#[derive(Serialize)]
struct Authentication {
    superuser: Credentials,
    replication: Credentials,
    rewind: Credentials,
}

#[derive(Serialize)]
struct Tags {
    nofailover: bool,
    noloadbalance: bool,
    clonefrom: bool,
    nosync: bool,
}

/// Patroni's config file for PostgreSQL member `host` (mode 0600, owned by postgres).
pub fn patroni_config(
    spec: &PostgresClusterSpec,
    secrets: &ClusterSecrets,
    host: &str,
    os: OsFamily,
) -> Result<DesiredFile, RenderError> {
    check_patroni_inputs(spec, secrets, host)?;
    let layout = Layout::new(spec, os);
    let pg = &spec.postgres;
    let pa = &spec.patroni;
    let cred = |u: &str, p: &str| Credentials {
        username: u.to_string(),
        password: p.to_string(),
    };

    let listen_addrs = if host == "127.0.0.1" {
        host.to_string()
    } else {
        format!("{host},127.0.0.1")
    };
    let config = PatroniConfig {
        scope: pa.scope.clone(),
        namespace: pa.namespace.clone(),
        name: member_name(host),
        restapi: RestApi {
            listen: format!("0.0.0.0:{}", pa.rest_api_port),
            connect_address: host_port(host, pa.rest_api_port),
            authentication: cred("patroni", &secrets.restapi),
            tls: RestTls::of(spec),
        },
        etcd3: Etcd3 {
            hosts: spec
                .etcd
                .hosts
                .iter()
                .map(|h| host_port(h, spec.etcd.client_port))
                .collect(),
            use_proxies: true,
            tls: Etcd3Tls::of(spec),
        },
        bootstrap: Bootstrap {
            dcs: dcs(spec),
            initdb: initdb_options(spec),
            method: super::backup::restore_command(spec).map(|_| "pgbackrest"),
            pgbackrest: super::backup::restore_command(spec).map(|command| CustomBootstrap {
                command,
                keep_existing_recovery_conf: true,
                no_params: true,
            }),
        },
        postgresql: Postgresql {
            listen: format!("{listen_addrs}:{}", pg.port),
            connect_address: host_port(host, pg.port),
            data_dir: layout.data_dir.clone(),
            bin_dir: layout.bin_dir.clone(),
            pgpass: layout.pgpass.clone(),
            authentication: Authentication {
                superuser: cred(&pg.superuser.name, &secrets.superuser),
                replication: cred(&pg.replication.name, &secrets.replication),
                rewind: cred(&pg.rewind.name, &secrets.rewind),
            },
            parameters: std::iter::once((
                "unix_socket_directories",
                layout.unix_socket_dir.clone(),
            ))
            .chain(super::tls::postgres_parameters(spec))
            .collect(),
            pg_hba: super::pg_hba::pg_hba(spec),
            pg_ident: super::monitoring::pg_ident(spec),
            create_replica_methods: vec!["basebackup"],
            basebackup: vec![BTreeMap::from([("checkpoint", "fast")])],
        },
        tags: Tags {
            nofailover: false,
            noloadbalance: false,
            clonefrom: false,
            nosync: false,
        },
    };
    let yaml = super::yaml::to_yaml(&config)
        .map_err(|e| invalid("patroni", host, format!("YAML serialization failed: {e}")))?;
    Ok(DesiredFile {
        path: layout.patroni_config,
        content: format!("{HEADER}{yaml}").into_bytes(),
        mode: 0o600,
        owner: layout.postgres_user.clone(),
        group: layout.postgres_user,
    })
}

/// The cluster-wide settings Patroni keeps in the DCS: `bootstrap.dcs` of the config file, and
/// the desired state for `PATCH /config` later (the key `pause` is not included).
/// Parameters are pgmetal's defaults (`wal_level: replica`, ...) overridden by
/// `spec.postgres.parameters`.
pub fn dcs_config(spec: &PostgresClusterSpec) -> serde_json::Value {
    serde_json::to_value(dcs(spec)).unwrap_or_default()
}

fn dcs(spec: &PostgresClusterSpec) -> Dcs {
    let pa = &spec.patroni;
    let mut parameters: BTreeMap<String, String> = DEFAULT_PARAMETERS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parameters.extend(
        spec.postgres
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    // Archiving to the backup repository wins over the same keys in postgres.parameters.
    parameters.extend(
        super::backup::archive_parameters(spec)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
    );
    Dcs {
        ttl: pa.ttl,
        loop_wait: pa.loop_wait,
        retry_timeout: pa.retry_timeout,
        maximum_lag_on_failover: pa.maximum_lag_on_failover,
        check_timeline: true,
        synchronous_mode: pa.synchronous_mode,
        postgresql: DcsPostgresql {
            use_pg_rewind: true,
            use_slots: true,
            parameters,
        },
    }
}

/// Patroni's list form of initdb options. `auth-host: scram-sha-256` makes initdb of
/// PostgreSQL 13 hash the superuser password with SCRAM too; Patroni replaces pg_hba anyway.
fn initdb_options(spec: &PostgresClusterSpec) -> Vec<InitdbOption> {
    let one = |k: &'static str, v: &str| InitdbOption::Value(BTreeMap::from([(k, v.to_string())]));
    vec![
        one("encoding", &spec.postgres.encoding),
        one("locale", &spec.postgres.locale),
        one("auth-host", "scram-sha-256"),
        one("auth-local", "peer"),
        InitdbOption::Flag("data-checksums"),
    ]
}
