//! `spec.backup`: continuous WAL archiving and scheduled backups with pgBackRest, kept in a
//! repository on a dedicated host or in S3-compatible object storage.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Backups with pgBackRest (the distribution's package). Every member archives its WAL to the
/// repository (`archive_mode`, `archive_command` in Patroni's configuration), and systemd
/// timers take the scheduled backups, with or without the operator: on the repository host,
/// or, with S3, on every member, where only the Patroni leader acts. Between hosts,
/// pgBackRest's own TLS server carries every exchange, authenticated both ways by certificates
/// from the cluster's CA, so backups need `spec.tls` (Managed or Provided).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Where the backups and the archived WAL are kept.
    pub repository: BackupRepository,
    /// When backups are taken (cron syntax: minute hour day-of-month month day-of-week).
    #[serde(default)]
    pub schedule: BackupSchedule,
    /// How many backups are kept.
    #[serde(default)]
    pub retention: BackupRetention,
    /// Take backups from a streaming replica instead of the primary (pgBackRest's
    /// `backup-standby`): only the files that change during the backup come from the primary.
    #[serde(default)]
    pub from_standby: bool,
    /// The port of pgBackRest's TLS server on the repository host and on every member.
    /// Default 8432.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

/// A pgBackRest repository: on a dedicated host that pgmetal prepares like the cluster's other
/// hosts (SSH, its claim, the package), or in an S3-compatible bucket. Give one of the two.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.host) != has(self.s3)").message("backup.repository: give host or s3, exactly one"))]
pub struct BackupRepository {
    /// The repository host: a DNS name or an address. It must not run PostgreSQL for this
    /// cluster (a backup kept beside the data it protects is lost with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::api::spec::host_rule()).message("backup.repository.host must be a DNS name or an IP address"))]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,
    /// An S3-compatible bucket instead of a host: every member reaches it itself, and the
    /// backup timers run on every member, acting only where Patroni's local REST API says the
    /// member leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Repository>,
    /// The repository's directory on the host, or its prefix in the bucket (pgBackRest's
    /// `repo1-path`). Default `/var/lib/pgbackrest`.
    #[serde(default = "default_path")]
    #[schemars(regex(pattern = PATH_PATTERN), length(max = 1024))]
    pub path: String,
}

/// An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, versitygw, ...), reached over HTTPS with
/// a verified certificate and AWS signature version 4.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Repository {
    /// The endpoint, `host` or `host:port` (port 443 when none), e.g.
    /// `s3.eu-west-1.amazonaws.com` or `minio.internal:9000`. Always HTTPS.
    #[x_kube(validation = Rule::new(r"self.matches('^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$')").message("backup.repository.s3.endpoint must be host or host:port (HTTPS is implied, give no scheme)"))]
    #[schemars(length(min = 1, max = 259))]
    pub endpoint: String,
    /// The bucket, which must exist.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"))]
    pub bucket: String,
    /// The bucket's region (signature version 4 signs it). Default `us-east-1`.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9-]+$"))]
    pub region: String,
    /// The Secret (same namespace) with the keys `accessKeyId` and `secretAccessKey`. The
    /// CLI reads them from its secrets file, under `s3.<this name>`.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
    /// How the bucket is addressed: `Host` (`bucket.endpoint`, AWS) or `Path`
    /// (`endpoint/bucket`, most self-hosted servers). Default `Host`.
    #[serde(default)]
    pub uri_style: S3UriStyle,
    /// PEM certificates of the CAs that sign the endpoint's certificate, when the hosts' own
    /// trust store does not hold them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_bundle: Option<String>,
}

/// How an S3 bucket is addressed (pgBackRest's `repo1-s3-uri-style`).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum S3UriStyle {
    /// `https://bucket.endpoint/`: AWS's style.
    #[default]
    Host,
    /// `https://endpoint/bucket/`.
    Path,
}

impl S3UriStyle {
    /// pgBackRest's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            S3UriStyle::Host => "host",
            S3UriStyle::Path => "path",
        }
    }
}

impl S3Repository {
    /// The endpoint's host and port (443 when none is given).
    pub fn host_port(&self) -> (&str, u16) {
        match self.endpoint.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().unwrap_or(443)),
            None => (&self.endpoint, 443),
        }
    }
}

impl BackupRepository {
    /// Where the repository is, for people: the host, or `s3://bucket/path at endpoint`.
    pub fn describe(&self) -> String {
        match (&self.host, &self.s3) {
            (Some(h), _) => h.clone(),
            (None, Some(s3)) => format!("s3://{}{} at {}", s3.bucket, self.path, s3.endpoint),
            (None, None) => "nowhere".into(),
        }
    }
}

/// The backup timers, in cron syntax (five fields; `*`, numbers, ranges `a-b`, lists `a,b` and
/// steps `*/n`; day-of-week 0-7 or names). Day-of-month and day-of-week cannot both be
/// restricted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSchedule {
    /// Full backups. Default `0 1 * * 0` (Sundays at 01:00, the host's time zone).
    #[serde(default = "default_full")]
    #[schemars(length(min = 9, max = 128))]
    pub full: String,
    /// Differential backups (changes since the last full one). Default `0 1 * * 1-6` (the
    /// other days at 01:00). Empty: none.
    #[serde(default = "default_differential")]
    #[schemars(length(max = 128))]
    pub differential: String,
}

/// pgBackRest's retention. A full backup expires with its differential backups, and WAL
/// older than the oldest backup kept expires with it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRetention {
    /// Full backups kept (`repo1-retention-full`). Default 2.
    #[serde(default = "default_retention_full")]
    #[schemars(range(min = 1, max = 9999))]
    pub full: u32,
    /// Differential backups kept (`repo1-retention-diff`). Default: as many as their full
    /// backups allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9999))]
    pub differential: Option<u32>,
}

impl Default for BackupSchedule {
    fn default() -> Self {
        Self {
            full: default_full(),
            differential: default_differential(),
        }
    }
}

impl Default for BackupRetention {
    fn default() -> Self {
        Self {
            full: default_retention_full(),
            differential: None,
        }
    }
}

/// An absolute path of a repository (on its host, or its prefix in a bucket).
const PATH_PATTERN: &str = r"^(/[A-Za-z0-9_+@-][A-Za-z0-9._+@-]*)+/?$";

fn default_port() -> u16 {
    8432
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_path() -> String {
    "/var/lib/pgbackrest".into()
}
fn default_full() -> String {
    "0 1 * * 0".into()
}
fn default_differential() -> String {
    "0 1 * * 1-6".into()
}
fn default_retention_full() -> u32 {
    2
}

/// The kinds of backup pgBackRest takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BackupType {
    /// Every file.
    Full,
    /// Files changed since the last full backup.
    Differential,
}

impl BackupType {
    /// pgBackRest's name for it (`--type`), also the instance of the backup unit.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Differential => "diff",
        }
    }
}

/// What the repository holds and how archiving goes (`status.backup`), as last looked at.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// When pgmetal looked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    /// The newest full backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<BackupRecord>,
    /// The newest differential backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differential: Option<BackupRecord>,
    /// The newest incremental backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<BackupRecord>,
    /// How many backups the repository holds.
    #[serde(default)]
    pub count: u32,
    /// WAL archiving, as the primary's `pg_stat_archiver` reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveStatus>,
    /// The times a restore can reach: from the end of the oldest backup to the last WAL
    /// archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_window: Option<RecoveryWindow>,
    /// Whether backups are in order: True when the repository answers, archiving succeeds and
    /// no scheduled backup is overdue (the BackupReady condition).
    #[serde(default)]
    pub ready: bool,
    /// Why not, or what is in order.
    #[serde(default)]
    pub message: String,
}

/// One backup in the repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// pgBackRest's label (e.g. `20261130-101500F`).
    pub label: String,
    /// When it started and finished (RFC 3339).
    pub started: String,
    /// When it finished (RFC 3339).
    pub finished: String,
    /// Seconds it took.
    pub duration_seconds: i64,
    /// The database's size when it was taken, in bytes.
    pub size_bytes: i64,
    /// What it takes in the repository (compressed, changed files only), in bytes.
    pub repository_bytes: i64,
}

/// WAL archiving on the primary.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveStatus {
    /// The last WAL segment archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_wal: Option<String>,
    /// When it was archived (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_time: Option<String>,
    /// The last WAL segment whose archiving failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_wal: Option<String>,
    /// When that failed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_time: Option<String>,
}

/// The times a point-in-time restore can reach.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryWindow {
    /// The earliest: the end of the oldest backup (RFC 3339).
    pub earliest: String,
    /// The latest: when the last WAL segment was archived (RFC 3339).
    pub latest: String,
}

/// How a new cluster starts (`spec.bootstrap`). Read only when the cluster is created: once its
/// data exists, changing this does nothing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// Restore another cluster's backup instead of an empty database (`initdb`): the new
    /// primary is restored from the source's repository with pgBackRest, to a point in time,
    /// an LSN, or the end of the archived WAL. The source is only read, never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoverySpec>,
}

/// Where a restore comes from, and how far it replays.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.targetTime) && has(self.targetLsn))").message("bootstrap.recovery: give targetTime or targetLsn, not both (neither: the end of the archived WAL)"))]
#[x_kube(validation = Rule::new("has(self.host) != has(self.s3)").message("bootstrap.recovery: give the source's repository host or its s3 bucket, exactly one"))]
pub struct RecoverySpec {
    /// The source cluster's repository host (its `backup.repository.host`). Its pgBackRest
    /// server trusts this cluster's restore certificate only when both clusters share a CA:
    /// `tls.mode: Provided` with the source's `<source>-ca` Secret (the CLI: the source's CA
    /// files beside this cluster's secrets file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::api::spec::host_rule()).message("bootstrap.recovery.host must be a DNS name or an IP address"))]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,
    /// The source cluster's S3 bucket (its `backup.repository.s3`), read with the credentials
    /// this names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Repository>,
    /// The source repository's prefix in the bucket (its `backup.repository.path`), with
    /// `s3`. Default `/var/lib/pgbackrest`.
    #[serde(default = "default_path")]
    #[schemars(regex(pattern = PATH_PATTERN), length(max = 1024))]
    pub path: String,
    /// The port of that repository's pgBackRest server (the source's `backup.port`). Default
    /// 8432.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// The source's stanza: its `patroni.scope`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"))]
    pub stanza: String,
    /// Replay up to this time, e.g. `2026-11-30 15:04:19+00` (PostgreSQL's
    /// `recovery_target_time`; give the zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?( ?(Z|[+-][0-9]{2}(:?[0-9]{2})?|UTC))$"
    ))]
    pub target_time: Option<String>,
    /// Replay up to this WAL location, e.g. `0/3000060` (`recovery_target_lsn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$"))]
    pub target_lsn: Option<String>,
}
