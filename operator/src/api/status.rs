//! The observed state of a PostgresCluster: what pgmetal last saw on the hosts (`status`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What pgmetal observed. Written only by the operator, through the status subresource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresClusterStatus {
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: Ready, Progressing, Degraded, EtcdHealthy, PatroniHealthy,
    /// RoutingReady, ReconciliationPaused, BackupReady (with `spec.backup`); and Reconciling and
    /// Stalled for GitOps tools (kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The host running the Patroni leader (the actual primary). May differ from
    /// `spec.postgres.primary` after a failover; the Degraded/Ready conditions say why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// The preferred primary (`spec.postgres.primary`) the operator last enacted. When the spec
    /// names another host, the operator performs a switchover; when only the actual primary
    /// differs, a failover happened (fail-back follows `spec.patroni.failback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_primary: Option<String>,
    /// Running members over desired members, e.g. `3/3` (the Members column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_members: Option<String>,
    /// Patroni members as `patronictl list` shows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// The etcd cluster as `etcdctl member list` / `endpoint health` show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdStatus>,
    /// HAProxy routing as its statistics report it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub haproxy: Vec<HaproxyStatus>,
    /// Per-host connection and convergence state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostStatus>,
    /// Whether Patroni is paused (maintenance mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patroni_paused: Option<bool>,
    /// The highest PostgreSQL timeline a leader was seen on, and that leader. A leader on a
    /// lower timeline, or another leader on the same one, means the history forked: Degraded
    /// says `TimelineRegressed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_timeline: Option<LeaderTimeline>,
    /// The PostgreSQL system identifier of this cluster's data (`pg_controldata`), recorded
    /// when the leader first reports it and kept from then on. `deletionPolicy: Wipe` deletes
    /// only a data directory whose identifier is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// The etcd cluster ID (hex) of this cluster's DCS, recorded when etcd first reports it and
    /// kept from then on. `deletionPolicy: Wipe` deletes an etcd data directory only when the
    /// member running on it reports this ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_cluster_id: Option<String>,
    /// The clocks of automatic fail-back (`spec.patroni.failbackDelaySeconds` and
    /// `failbackMinIntervalSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback: Option<FailbackStatus>,
    /// The last failover (the primary moved without pgmetal asking), as the operator saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<Failover>,
    /// The topology steps of the running converge, in order (empty when none runs or the
    /// topology matches the spec): what `kubectl pgmetal plan` shows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedStep>,
    /// The member operations asked for by annotation that were carried out, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestsStatus>,
    /// Backups and WAL archiving (`spec.backup`), as last looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<super::backup::BackupStatus>,
}

/// Operations asked for by annotation (`pgmetal.io/restart-at`, `pgmetal.io/reinit`,
/// `pgmetal.io/backup-now`),
/// as last carried out. A value is carried out once; re-applying it does nothing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestsStatus {
    /// The `pgmetal.io/restart-at` value whose rolling restart was carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<String>,
    /// When that rolling restart finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    /// The `pgmetal.io/reinit` value (a replica's host) whose reinitialization was carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reinit: Option<String>,
    /// When that reinitialization finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reinitialized_at: Option<String>,
    /// The `pgmetal.io/backup-now` value whose backup was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_now: Option<String>,
    /// When that backup finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backed_up_at: Option<String>,
}

/// One step of the running converge's plan.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    /// What the step does, e.g. `adding etcd member 10.0.0.15`.
    pub description: String,
    /// Whether it disturbs clients or the DCS (a switchover, an etcd membership change).
    pub disruptive: bool,
    /// Whether it has been carried out (`false`: pending or running).
    pub done: bool,
}

/// A failover: the primary moved from one host to another without a switchover.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// When the operator first saw the new primary.
    pub at: Option<Time>,
    /// The host that was the primary.
    pub from: String,
    /// The host that became the primary.
    pub to: String,
    /// At most this many seconds passed between the operator's last sight of the old primary
    /// and its first sight of the new one (unset when the operator restarted in between).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes_unavailable_seconds: Option<i64>,
    /// How far the new primary lagged behind the old one when last observed before the
    /// failover, in bytes: what asynchronous replication may have lost (unset when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes_at_failover: Option<i64>,
}

/// When the preferred primary became a healthy replica, and when the last fail-back was.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailbackStatus {
    /// Since when the preferred primary has been a healthy, caught-up replica (unset while it
    /// is not, or while it leads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_healthy_since: Option<Time>,
    /// When the last automatic fail-back started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<Time>,
}

/// A timeline and the host that led it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaderTimeline {
    /// The PostgreSQL timeline.
    pub timeline: i64,
    /// The host whose Patroni leader was on it.
    pub leader: String,
}

/// One Patroni member.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// The member's host, as named in the spec.
    pub host: String,
    /// Patroni member name.
    pub name: String,
    /// `leader`, `replica`, `sync_standby` or `standby_leader`.
    pub role: String,
    /// `running`, `streaming`, `starting`, `stopped`, `crashed`, ...
    pub state: String,
    /// PostgreSQL timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<i64>,
    /// Replication lag in bytes behind the leader (replicas only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// True when this member has a pending restart (a parameter that needs one changed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
}

/// The etcd cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdStatus {
    /// Members the cluster reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<EtcdMemberStatus>,
    /// Name of the Raft leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Count of members whose endpoint answers a health check.
    pub healthy: i32,
    /// Count of members desired in the spec.
    pub desired: i32,
    /// The cluster ID (hex) the answering members report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// One etcd member.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdMemberStatus {
    /// Member name (pgmetal names members after their host).
    pub name: String,
    /// Client URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_url: Option<String>,
    /// Whether the member answered a health check.
    pub healthy: bool,
    /// The cluster ID (hex) this member reports; all members of one cluster report the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// Routing of one HAProxy host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HaproxyStatus {
    /// The HAProxy host.
    pub host: String,
    /// Members HAProxy marks UP on the read-write port (should be exactly the leader).
    #[serde(default)]
    pub primary_backends: Vec<String>,
    /// Members HAProxy marks UP on the read-only port (the streaming replicas).
    #[serde(default)]
    pub replica_backends: Vec<String>,
}

/// One host pgmetal manages.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    /// The host, as named in the spec.
    pub host: String,
    /// Whether the last SSH connection succeeded.
    pub reachable: bool,
    /// SHA256 fingerprint of the host key pgmetal verified (or pinned on first contact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_fingerprint: Option<String>,
    /// Hash of every file pgmetal manages on this host, as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// When this host last converged without error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_converged: Option<Time>,
    /// The last error on this host (step and message), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
