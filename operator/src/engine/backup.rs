//! Backups (`spec.backup`): pgBackRest's configuration and TLS server on the members and the
//! repository host, the repository host's certificate and backup timers, and the stanza.

use super::error::{Failure, HostErrorKind};
use super::{Engine, HostError, units};
use crate::api::BackupType;
use crate::exec::Cmd;
use crate::render::{self, Layout, backup, roles};

/// Creates the stanza unless the repository already has it, then checks that the primary's
/// WAL reaches it (`pgbackrest check` switches WAL, which also wakes PostgreSQL's archiver to
/// retry what failed before the stanza existed); prints what it did. pgBackRest
/// refuses (and nothing is changed) when the repository holds another cluster's stanza of
/// that name: its system identifier differs.
/// With S3 the marker is a file on the member (the repository holds no host's files), written
/// last: a new leader runs this once more, and stanza-create finds the stanza in place.
const STANZA: &str = r#"set -e
stanza="$1"; marker="$2"; user="$3"
[ -f "$marker" ] && exit 0
runuser -u "$user" -- pgbackrest --stanza="$stanza" stanza-create >&2
echo "stanza $stanza created or found in place"
runuser -u "$user" -- pgbackrest --stanza="$stanza" check >&2
echo "archiving to it checked"
[ -f "$marker" ] || : >"$marker""#;

/// Runs one backup of type `$1` now and waits for it, through the timers' own service: a
/// scheduled and an asked-for backup never run at once. With S3, the service's condition
/// skips it where the member does not lead (the leader changed since this converge saw it).
const BACKUP_NOW: &str = r#"systemctl start "pgmetal-backup@$1.service" || exit 1
if [ "$(systemctl show -P Result "pgmetal-backup@$1.service")" = exec-condition ]; then
  echo "no backup taken: this member no longer leads" >&2; exit 1
fi
echo "$1 backup taken""#;

impl Engine<'_> {
    /// pgBackRest on `host`, a member or the repository host: its configuration, its TLS
    /// server (restarted when its configuration or certificate changed) and, on the repository
    /// host, its directory, certificate and backup timers.
    pub(super) async fn backup_host(&self, host: &str) -> Result<(), HostError> {
        let Some(b) = &self.spec.backup else {
            return Ok(());
        };
        let ex = self.exec(host)?;
        let layout = Layout::new(self.spec, self.host_facts(host)?.os);
        let r = roles(self.spec, host);
        let mut want = backup::host_files(self.spec, host, &layout, self.secrets)
            .map_err(|e| HostError::new(host, None, e))?;
        if r.backup {
            let user = &layout.postgres_user;
            self.ensure_dir(host, &*ex, &b.repository.path, user)
                .await?;
            want.extend(self.postgres_tls(host, &layout).await?);
        }
        let takes = backup::takes_backups(self.spec, host);
        let written = self.write(host, &*ex, &want).await?;
        let changed = !written.is_empty() || self.reissued(host);
        let server = backup::SERVER_UNIT;
        units::ensure(
            self,
            host,
            &*ex,
            server,
            changed,
            units::OnChange::Restart,
            false,
        )
        .await?;
        if takes {
            let timers: Vec<String> = backup::schedules(b)
                .map_err(|e| HostError::new(host, None, e))?
                .into_iter()
                .map(|(kind, _)| backup::timer_name(kind))
                .collect();
            let timers: Vec<(&str, bool)> = timers.iter().map(|t| (t.as_str(), changed)).collect();
            units::ensure_all(self, host, &*ex, &timers, units::OnChange::Restart, false).await?;
        }
        Ok(())
    }

    /// The stanza in the repository, created once the leader archives to it.
    pub(super) async fn backup_stanza(&self, host: &str) -> Result<(), HostError> {
        let Some(b) = &self.spec.backup else {
            return Ok(());
        };
        let stanza = backup::stanza(self.spec);
        let marker = backup::stanza_marker(b, stanza);
        if self.file_present(host, &marker) {
            return self
                .step(host, "stanza", async { Ok(((), false, vec![])) })
                .await;
        }
        let ex = self.exec(host)?;
        let user = Layout::new(self.spec, self.host_facts(host)?.os).postgres_user;
        let cmd = Cmd::script(STANZA).args([stanza, marker.as_str(), user.as_str()]);
        self.script_step(host, &*ex, "stanza", &cmd).await
    }
}

/// The query that answers when recovery settings a restore wrote are still in
/// `postgresql.auto.conf` on a primary.
pub(super) const RESTORE_LEFT_SQL: &str = "SELECT 1 WHERE NOT pg_is_in_recovery() AND EXISTS (SELECT FROM pg_file_settings WHERE sourcefile LIKE '%/postgresql.auto.conf' AND (name LIKE 'recovery_target%' OR name = 'restore_command'))";

/// Removes the recovery settings pgBackRest's restore wrote into `postgresql.auto.conf`, once
/// the restored member is a primary. Left there they would outlive the restore: a replica
/// cloned from it (the file travels with `pg_basebackup`) would stop replaying at the restore's
/// target and promote itself.
const CLEAR_RESTORE: &str = r#"psql="$1/psql"; sock="$2"; port="$3"
q() { runuser -u postgres -- "$psql" -X -At -h "$sock" -p "$port" -d postgres -c "$1"; }
[ "$(q 'SELECT pg_is_in_recovery()')" = f ] || exit 0
left=$(q "SELECT string_agg(name, ' ') FROM pg_file_settings WHERE sourcefile LIKE '%/postgresql.auto.conf' AND (name LIKE 'recovery_target%' OR name = 'restore_command')")
[ -z "$left" ] && exit 0
for n in $left; do q "ALTER SYSTEM RESET $n" >/dev/null || exit 1; done
q 'SELECT pg_reload_conf()' >/dev/null
echo "restore settings removed: $left""#;

/// Stops Patroni (`$1`) after a failed restore and moves the data directory `$2` aside as
/// `$2.failed-<UTC time>`, unless `pg_controldata` (in `$3`) says it left recovery (a cluster
/// that ran as a primary); says where it is.
const KEEP_FAILED_RESTORE: &str = r#"systemctl stop "$1" 2>/dev/null
d="$2"
if [ ! -d "$d" ] || [ -z "$(ls -A "$d" 2>/dev/null)" ]; then
  echo "the restore left no data directory"; exit 0
fi
state=$(LC_ALL=C "$3/pg_controldata" "$d" 2>/dev/null | sed -n 's/^Database cluster state: *//p')
case "$state" in
  "in archive recovery"|"shut down in recovery"|"") ;;
  *) echo "the data directory $d stays where it is (its state: $state)"; exit 0 ;;
esac
to="$d.failed-$(date -u +%Y%m%dT%H%M%SZ)"
mv -- "$d" "$to" && echo "the data directory the restore left is kept at $to; the next apply restores into an empty one"
"#;

/// Stops and disables pgmetal's backup units once backups are turned off; the repository and
/// pgBackRest's configuration stay.
const BACKUP_OFF: &str = r#"for u in "$@"; do
  if systemctl is-enabled --quiet "$u" 2>/dev/null; then systemctl disable --now --quiet "$u" && echo "$u stopped and disabled"; fi
done"#;

impl Engine<'_> {
    /// The backup phases: pgBackRest on the members and the repository host, then the stanza
    /// (created where backups run: the repository host, or with S3 the `leader`); or, with
    /// backups off, their units stopped where they still run.
    pub(super) async fn backup_phases(&self, all: &[String], leader: &str) {
        if self.spec.backup.is_none() {
            let on: Vec<String> = all
                .iter()
                .filter(|h| self.backup_units_enabled(h))
                .cloned()
                .collect();
            self.phase("backups off", &on, |h| self.backup_off(h)).await;
            return;
        }
        let repo = repository(self.spec);
        let hosts: Vec<String> = self
            .spec
            .postgres
            .hosts()
            .cloned()
            .chain(repo.clone())
            .collect();
        self.phase("backup", &hosts, |h| self.backup_host(h)).await;
        let runner = self.backup_runner(Some(leader)).map(String::from);
        let runner: Vec<String> = runner.into_iter().collect();
        self.phase("backup stanza", &runner, |h| self.backup_stanza(h))
            .await;
    }

    /// A host where backup units are still enabled after backups were turned off stops and
    /// disables them.
    pub(super) async fn backup_off(&self, host: &str) -> Result<(), HostError> {
        let ex = self.exec(host)?;
        let cmd = Cmd::script(BACKUP_OFF).args(backup::UNITS);
        self.script_step(host, &*ex, "backups off", &cmd).await
    }

    /// After a restore: the restored primary forgets the restore's recovery settings (see
    /// [`CLEAR_RESTORE`]). Runs when this converge bootstrapped it, or the probe saw them.
    pub(super) async fn clear_restore_settings(
        &self,
        host: &str,
        bootstrapped: bool,
    ) -> Result<(), HostError> {
        if backup::recovery(self.spec).is_none()
            || !(bootstrapped || self.restore_settings_seen(host))
        {
            return Ok(());
        }
        let ex = self.exec(host)?;
        let layout = Layout::new(self.spec, self.host_facts(host)?.os);
        let port = self.spec.postgres.port.to_string();
        let cmd = Cmd::script(CLEAR_RESTORE).args([
            layout.bin_dir.as_str(),
            &layout.unix_socket_dir,
            &port,
        ]);
        self.script_step(host, &*ex, "restore settings", &cmd).await
    }

    /// After Patroni gave up a restore (the target not reached, no backup before it): Patroni
    /// stays stopped, and the data directory the restore left, which no one else's data ever
    /// was (first contact proved the host free, and pgBackRest restores only into an empty
    /// directory), moves aside as a dated copy a person can inspect; the next apply restores
    /// into an empty one again. A directory that ever ran as a primary stays where it is.
    /// Returns what happened, for the resource.
    pub(super) async fn keep_failed_restore(&self, host: &str) -> String {
        let aside = async {
            let ex = self.exec(host).ok()?;
            let layout = Layout::new(self.spec, self.host_facts(host).ok()?.os);
            let args = [
                layout.patroni_unit.as_str(),
                &layout.data_dir,
                &layout.bin_dir,
            ];
            let cmd = Cmd::script(KEEP_FAILED_RESTORE).args(args);
            let out = ex.run_ok(&cmd, "keep the failed restore").await.ok()?;
            Some(out.stdout_str().trim().to_string())
        };
        aside
            .await
            .unwrap_or_else(|| "the data directory it left could not be moved aside".into())
    }

    /// What a member of a cluster that starts from another's backup needs before Patroni
    /// bootstraps it: pgBackRest's configuration naming the source's stanza and repository,
    /// the S3 endpoints' CAs, and the restore certificate (issued once, from the CA both
    /// clusters share).
    pub(super) async fn restore_files(
        &self,
        host: &str,
        layout: &Layout,
    ) -> Result<Vec<crate::model::DesiredFile>, HostError> {
        if backup::recovery(self.spec).is_none() {
            return Ok(Vec::new());
        }
        let conf = backup::member_conf(self.spec, host, layout, self.secrets)
            .map_err(|e| HostError::new(host, None, e))?;
        // Only a repository host's TLS server asks for the restore certificate.
        let from_host = backup::recovery(self.spec).is_some_and(|r| r.host.is_some());
        let present = !from_host || self.file_present(host, backup::RESTORE_PEM);
        let user = layout.postgres_user.clone();
        let pem = self
            .step(host, "restore certificate", async {
                if present {
                    return Ok((None, false, vec![]));
                }
                let ca = self.ca.as_ref().ok_or_else(|| {
                    Failure::new(
                        HostErrorKind::Tls,
                        "bootstrap.recovery needs the cluster's CA",
                    )
                })?;
                let req = crate::tls::Request {
                    common_name: backup::RESTORE_CN.into(),
                    names: Vec::new(),
                    usage: crate::tls::Usage::Client,
                };
                let (lifetime, _) = super::tls::durations(self.spec)?;
                let now = time::OffsetDateTime::now_utc();
                let issued = crate::tls::issue(ca, &req, now, lifetime)?;
                let mut file = render::postgres_file(&issued, &user);
                file.path = backup::RESTORE_PEM.into();
                Ok((Some(file), true, vec!["issued".into()]))
            })
            .await?;
        let ca = backup::s3_ca_file(self.spec);
        Ok(std::iter::once(conf).chain(ca).chain(pem).collect())
    }

    /// `status.backup`, through this converge's connections (see [`super::backup_look`]).
    pub(super) async fn look_at_backups(
        &self,
        status: &crate::api::PostgresClusterStatus,
    ) -> Option<crate::api::BackupStatus> {
        let host = self.backup_runner(status.primary.as_deref())?;
        let repo = self.exec(host).map_err(|e| e.to_string());
        let leader = status.primary.as_deref().and_then(|p| {
            let ex = self.exec(p).ok()?;
            Some((ex, Layout::new(self.spec, self.host_facts(p).ok()?.os)))
        });
        let leader = leader.as_ref().map(|(ex, l)| (&**ex, l));
        let id = status.system_identifier.as_deref();
        super::backup_look::look(self.spec, repo.as_deref().map_err(Clone::clone), leader, id).await
    }

    /// Where pgBackRest reaches the repository to back up and to read it: the repository
    /// host, or with S3 the `leader`.
    fn backup_runner<'s>(&'s self, leader: Option<&'s str>) -> Option<&'s str> {
        match backup::s3(self.spec) {
            Some(_) => leader,
            None => backup::repository_host(self.spec),
        }
    }

    /// Takes a backup of type `kind` now, where backups run (the `leader` with S3), and waits
    /// for it.
    pub(super) async fn backup_now(
        &self,
        kind: BackupType,
        leader: Option<&str>,
    ) -> Result<(), Failure> {
        if self.spec.backup.is_none() {
            let why = "pgmetal.io/backup-now asks for a backup, but spec.backup is not set: nothing was done";
            return Err(Failure::new(HostErrorKind::Refused, why));
        }
        let Some(host) = self.backup_runner(leader) else {
            let why = "pgmetal.io/backup-now: no Patroni leader to take the backup on; it is carried out by a later converge";
            return Err(Failure::new(HostErrorKind::Patroni, why));
        };
        let failed = |e: HostError| Failure::new(e.kind.clone(), e.to_string());
        let ex = self.exec(host).map_err(failed)?;
        let cmd = Cmd::script(BACKUP_NOW).args([kind.as_str()]);
        self.script_step(host, &*ex, &format!("{} backup", kind.as_str()), &cmd)
            .await
            .map_err(failed)
    }
}

/// The repository host, if `spec.backup` is set, as a phase's host list.
pub(super) fn repository(spec: &crate::api::PostgresClusterSpec) -> Vec<String> {
    render::backup::repository_host(spec)
        .map(String::from)
        .into_iter()
        .collect()
}
