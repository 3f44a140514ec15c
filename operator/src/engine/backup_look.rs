//! A look at backups (`status.backup`): what the repository holds (`pgbackrest info` on the
//! repository host), how the primary's archiving goes (`pg_stat_archiver`), and whether that
//! is in order (the BackupReady condition). One SSH round trip to each of the two hosts.

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api::{
    ArchiveStatus, BackupRecord, BackupSpec, BackupStatus, PostgresClusterSpec, RecoveryWindow,
};
use crate::exec::{Cmd, Executor};
use crate::render::{Layout, backup, cron};

/// How long after its scheduled time a backup may still be running before it counts as
/// overdue.
const GRACE: time::Duration = time::Duration::hours(1);

const INFO: &str = r#"runuser -u "$2" -- pgbackrest --stanza="$1" --output=json info"#;

/// How long a WAL segment may wait for archiving before archiving counts as behind (it is
/// archived within seconds when the repository answers; pgBackRest retries a refused
/// connection for minutes before it reports a failure).
const ARCHIVE_BEHIND: i64 = 60;

/// The archiver's statistics and the segments waiting for it (`.ready` files).
const ARCHIVER: &str = r#"runuser -u postgres -- "$1/psql" -X -At -h "$2" -p "$3" -d postgres -c "SELECT json_build_object('wal', last_archived_wal, 'at', extract(epoch FROM last_archived_time)::bigint, 'failed_wal', last_failed_wal, 'failed_at', extract(epoch FROM last_failed_time)::bigint, 'waiting', (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'), 'waiting_since', (SELECT extract(epoch FROM min(modification))::bigint FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready')) FROM pg_stat_archiver""#;

#[derive(Deserialize)]
struct Stanza {
    #[serde(default)]
    backup: Vec<Backup>,
    #[serde(default)]
    db: Vec<Db>,
    status: Code,
}

#[derive(Deserialize)]
struct Code {
    code: i64,
    message: String,
}

#[derive(Deserialize)]
struct Db {
    #[serde(rename = "system-id")]
    system_id: u64,
}

#[derive(Deserialize)]
struct Backup {
    label: String,
    #[serde(rename = "type")]
    kind: String,
    timestamp: Stamps,
    info: Sizes,
}

#[derive(Deserialize)]
struct Stamps {
    start: i64,
    stop: i64,
}

#[derive(Deserialize)]
struct Sizes {
    size: i64,
    repository: RepoSize,
}

#[derive(Deserialize)]
struct RepoSize {
    delta: i64,
}

#[derive(Deserialize, Default)]
struct Archiver {
    wal: Option<String>,
    at: Option<i64>,
    failed_wal: Option<String>,
    failed_at: Option<i64>,
    #[serde(default)]
    waiting: i64,
    waiting_since: Option<i64>,
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn record(b: &Backup) -> BackupRecord {
    BackupRecord {
        label: b.label.clone(),
        started: rfc3339(b.timestamp.start),
        finished: rfc3339(b.timestamp.stop),
        duration_seconds: b.timestamp.stop - b.timestamp.start,
        size_bytes: b.info.size,
        repository_bytes: b.info.repository.delta,
    }
}

/// What `pgbackrest info` said, as status (without the verdict).
#[derive(Debug)]
struct Seen {
    status: BackupStatus,
    code: (i64, String),
    system_id: Option<u64>,
    /// The start of the newest backup of each type (full, diff, incr).
    newest: [Option<i64>; 3],
    archived_at: Option<i64>,
    failed_at: Option<i64>,
    /// Segments waiting for the archiver, and since when the oldest has.
    waiting: (i64, Option<i64>),
}

fn parse(info: &str, archiver: Option<&str>) -> Result<Seen, String> {
    let stanzas: Vec<Stanza> =
        serde_json::from_str(info).map_err(|e| format!("pgbackrest info: {e}"))?;
    let st = stanzas
        .into_iter()
        .next()
        .ok_or("pgbackrest info: no stanza")?;
    let mut status = BackupStatus {
        count: st.backup.len() as u32,
        ..BackupStatus::default()
    };
    let mut newest = [None; 3];
    for b in &st.backup {
        let (slot, i) = match b.kind.as_str() {
            "full" => (&mut status.full, 0),
            "diff" => (&mut status.differential, 1),
            _ => (&mut status.incremental, 2),
        };
        *slot = Some(record(b));
        newest[i] = Some(b.timestamp.start);
    }
    let a: Archiver = archiver
        .and_then(|t| serde_json::from_str(t.trim()).ok())
        .unwrap_or_default();
    status.archive = archiver.map(|_| ArchiveStatus {
        last_archived_wal: a.wal.clone(),
        last_archived_time: a.at.map(rfc3339),
        last_failed_wal: a.failed_wal.clone(),
        last_failed_time: a.failed_at.map(rfc3339),
    });
    if let (Some(oldest), Some(at)) = (st.backup.first(), a.at) {
        status.recovery_window = Some(RecoveryWindow {
            earliest: rfc3339(oldest.timestamp.stop),
            latest: rfc3339(at.max(oldest.timestamp.stop)),
        });
    }
    Ok(Seen {
        status,
        code: (st.status.code, st.status.message),
        system_id: st.db.last().map(|d| d.system_id),
        newest,
        archived_at: a.at,
        failed_at: a.failed_at,
        waiting: (a.waiting, a.waiting_since),
    })
}

/// Whether backups are in order, and why not: the stanza's state, its database, archiving
/// and the schedule (a backup is overdue an hour after its scheduled time).
fn verdict(
    b: &BackupSpec,
    seen: &Seen,
    system_id: Option<&str>,
    now: OffsetDateTime,
) -> (bool, String) {
    let (code, message) = &seen.code;
    if *code != 0 && *code != 2 {
        return (
            false,
            format!("the repository's stanza is not usable: {message} (pgBackRest status {code})"),
        );
    }
    if let (Some(theirs), Some(ours)) = (seen.system_id, system_id)
        && theirs.to_string() != ours
    {
        return (
            false,
            format!(
                "the repository's stanza belongs to another database (system identifier {theirs}, this cluster's is {ours}): give this cluster its own repository path"
            ),
        );
    }
    if let (Some(failed), ok) = (seen.failed_at, seen.archived_at)
        && ok.is_none_or(|ok| failed > ok)
    {
        let wal = seen
            .status
            .archive
            .as_ref()
            .and_then(|a| a.last_failed_wal.clone())
            .unwrap_or_default();
        return (
            false,
            format!(
                "WAL archiving fails: {wal} could not be archived at {} (see the PostgreSQL log on the primary)",
                rfc3339(failed)
            ),
        );
    }
    if let (n, Some(since)) = seen.waiting
        && now.unix_timestamp() - since > ARCHIVE_BEHIND
    {
        return (
            false,
            format!(
                "WAL archiving is behind: {n} segment(s) waiting since {} (is {} reachable{}?)",
                rfc3339(since),
                b.repository.describe(),
                match b.repository.host {
                    Some(_) => format!(" on port {}", b.port),
                    None => String::new(),
                }
            ),
        );
    }
    let Some(full) = seen.newest[0] else {
        return (false, "no full backup yet: one runs at backup.schedule.full, or ask for one now (annotation pgmetal.io/backup-now, or `pgmetal backup`)".into());
    };
    let schedules = [
        (&b.schedule.full, full, "full"),
        (
            &b.schedule.differential,
            seen.newest.iter().flatten().copied().max().unwrap_or(full),
            "differential",
        ),
    ];
    for (cron_text, newest, what) in schedules {
        let Some(due) = cron::previous(cron_text, now) else {
            continue;
        };
        if newest < due.unix_timestamp() && now - due > GRACE {
            return (
                false,
                format!(
                    "the {what} backup scheduled at {} did not run: see `journalctl -u {}{}.service` on {}",
                    rfc3339(due.unix_timestamp()),
                    backup::BACKUP_UNIT,
                    if what == "full" { "full" } else { "diff" },
                    b.repository
                        .host
                        .as_deref()
                        .unwrap_or("the member that led then")
                ),
            );
        }
    }
    let last = seen
        .status
        .full
        .as_ref()
        .map(|f| f.finished.clone())
        .unwrap_or_default();
    (
        true,
        format!(
            "{} backups; the last full one finished at {last}; WAL archiving works",
            seen.status.count
        ),
    )
}

/// Looks at the repository (through `repo`) and the primary's archiver (through `leader`, when
/// there is one). A repository that cannot be read is a status with `ready: false` saying why.
pub async fn look(
    spec: &PostgresClusterSpec,
    repo: Result<&dyn Executor, String>,
    leader: Option<(&dyn Executor, &Layout)>,
    system_id: Option<&str>,
) -> Option<BackupStatus> {
    let b = spec.backup.as_ref()?;
    let now = OffsetDateTime::now_utc();
    let checked_at = now.format(&Rfc3339).ok();
    let stanza = backup::stanza(spec);
    let info = match repo {
        Ok(ex) => {
            let cmd = Cmd::script(INFO)
                .args([stanza, "postgres"])
                .max_output(4 << 20); // many backups
            ex.run_ok(&cmd, "pgbackrest info")
                .await
                .map(|o| o.stdout_str().to_string())
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    let archiver = match leader {
        Some((ex, l)) => {
            let port = spec.postgres.port.to_string();
            let cmd = Cmd::script(ARCHIVER).args([l.bin_dir.as_str(), &l.unix_socket_dir, &port]);
            ex.run_ok(&cmd, "pg_stat_archiver")
                .await
                .ok()
                .map(|o| o.stdout_str().to_string())
        }
        None => None,
    };
    let unreadable = |why: String| BackupStatus {
        checked_at: checked_at.clone(),
        ready: false,
        message: format!(
            "cannot read the repository {}: {why}",
            b.repository.describe()
        ),
        ..BackupStatus::default()
    };
    let seen = match info.and_then(|i| parse(&i, archiver.as_deref())) {
        Ok(seen) => seen,
        Err(why) => return Some(unreadable(why)),
    };
    let (ready, message) = verdict(b, &seen, system_id, now);
    Some(BackupStatus {
        checked_at,
        ready,
        message,
        ..seen.status
    })
}

/// The hosts a look at backups connects to: the repository host, then the primary (with S3,
/// the primary alone reads the bucket too).
pub fn hosts(spec: &PostgresClusterSpec, primary: Option<&str>) -> Vec<String> {
    let repo = backup::repository_host(spec).map(String::from);
    repo.into_iter().chain(primary.map(String::from)).collect()
}

/// [`look`] through `conns`, the connections to [`hosts`] (how the CLI and the operator look
/// between converges): a failed connection to the repository host is the status's message.
pub async fn look_through(
    spec: &PostgresClusterSpec,
    mut conns: std::collections::BTreeMap<String, super::connect::Connected>,
    status: &crate::api::PostgresClusterStatus,
) -> Option<BackupStatus> {
    spec.backup.as_ref()?;
    let leader = status.primary.as_ref().and_then(|p| conns.remove(p));
    let leader = leader.and_then(|c| c.conn.ok());
    let repo_conn = match backup::repository_host(spec) {
        Some(repo) => conns.remove(repo).map(|c| c.conn),
        None => leader.clone().map(Ok),
    };
    let repo_ex = match &repo_conn {
        Some(Ok(ex)) => Ok(&**ex),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no connection".to_string()),
    };
    // Backups are on Debian hosts only (the distribution's pgBackRest and paths).
    let layout = Layout::new(spec, crate::model::OsFamily::Debian);
    let leader = leader.as_ref().map(|ex| (&**ex, &layout));
    look(spec, repo_ex, leader, status.system_identifier.as_deref()).await
}

#[cfg(test)]
#[path = "backup_look_tests.rs"]
mod tests;
