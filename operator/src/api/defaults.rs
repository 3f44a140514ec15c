//! Default values of the PostgresCluster spec (serde defaults and `Default` impls).

use super::spec::*;

impl Default for PatroniSpec {
    fn default() -> Self {
        Self {
            scope: default_scope(),
            namespace: default_namespace(),
            rest_api_port: default_restapi_port(),
            ttl: default_ttl(),
            loop_wait: default_loop_wait(),
            retry_timeout: default_retry_timeout(),
            maximum_lag_on_failover: default_max_lag(),
            synchronous_mode: false,
            failback: Failback::Manual,
            failback_delay_seconds: default_failback_delay(),
            failback_min_interval_seconds: default_failback_min_interval(),
            rest_api_password_secret: None,
        }
    }
}

impl Default for HaproxySpec {
    fn default() -> Self {
        Self {
            hosts: Vec::new(),
            primary_port: default_primary_port(),
            replica_port: default_replica_port(),
            stats_port: default_stats_port(),
        }
    }
}

pub(super) fn default_ssh_user() -> String {
    "root".into()
}
pub(super) fn default_ssh_port() -> u16 {
    22
}
pub(super) fn default_connect_timeout() -> u32 {
    10
}
pub(super) fn default_pg_version() -> u32 {
    15
}
pub(super) fn default_pg_port() -> u16 {
    5432
}
pub(super) fn default_pg_data_dir() -> String {
    "/data/pg_data".into()
}
pub(super) fn default_encoding() -> String {
    "UTF8".into()
}
pub(super) fn default_locale() -> String {
    "C.UTF-8".into()
}
pub(super) fn default_superuser() -> PgUser {
    PgUser {
        name: "postgres".into(),
        password_secret: None,
    }
}
pub(super) fn default_replication_user() -> PgUser {
    PgUser {
        name: "replicator".into(),
        password_secret: None,
    }
}
pub(super) fn default_rewind_user() -> PgUser {
    PgUser {
        name: "rewind_user".into(),
        password_secret: None,
    }
}
/// The Patroni release pgmetal installs by default: it has the fixes for a healed partition
/// (conditional leader-key update, stale etcd members ignored by raft term).
pub const DEFAULT_PATRONI_VERSION: &str = "4.1.5";
pub(super) fn default_patroni_version() -> String {
    DEFAULT_PATRONI_VERSION.into()
}
pub(super) fn default_scope() -> String {
    "postgres".into()
}
pub(super) fn default_namespace() -> String {
    "/db/".into()
}
pub(super) fn default_restapi_port() -> u16 {
    8008
}
/// The shortest safe failover Patroni allows: a leader key lives 20 s.
pub(super) fn default_ttl() -> u32 {
    20
}
/// Replicas notice an expired leader key within 2 s.
pub(super) fn default_loop_wait() -> u32 {
    2
}
/// DCS or PostgreSQL trouble shorter than 8 s does not demote the leader (2 + 2 × 8 <= 20).
pub(super) fn default_retry_timeout() -> u32 {
    8
}
pub(super) fn default_max_lag() -> u64 {
    1_048_576
}
pub(super) fn default_etcd_client_port() -> u16 {
    2379
}
pub(super) fn default_etcd_peer_port() -> u16 {
    2380
}
pub(super) fn default_cluster_token() -> String {
    "etcd_cluster".into()
}
pub(super) fn default_etcd_data_dir() -> String {
    "/var/lib/etcd/default.etcd".into()
}
pub(super) fn default_primary_port() -> u16 {
    5000
}
pub(super) fn default_replica_port() -> u16 {
    5001
}
pub(super) fn default_stats_port() -> u16 {
    7000
}
pub(super) fn default_failback_delay() -> u32 {
    60
}
pub(super) fn default_failback_min_interval() -> u32 {
    600
}
