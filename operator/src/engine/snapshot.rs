//! A host as the facts probe saw it before any step ran: the state of the files pgmetal keeps
//! there, which of its units are enabled and running, which of its directories exist. On a host
//! where nothing has changed yet, a step whose work is already in place skips its round trip.
//! The first change on a host (or a failed step) drops its snapshot, and every later step asks
//! the host again, as it did before snapshots existed.

use std::collections::{BTreeMap, BTreeSet};

use super::Engine;
use super::files::{FileState, differs, parse_state};
use crate::api::PostgresClusterSpec;
use crate::model::{ClusterSecrets, DesiredFile, OsFamily};
use crate::render::{self, Layout};

/// What the probe looks at: arguments `FILES... --units UNITS... --dirs DIRS...`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Targets {
    /// Files pgmetal may write on the host (for every OS family: the probe runs before the
    /// family is known).
    pub files: BTreeSet<String>,
    /// Units pgmetal keeps enabled and running there.
    pub units: BTreeSet<String>,
    /// Data directories it creates there, and the packages' directories it takes over.
    pub dirs: BTreeSet<String>,
    /// Units whose mere enablement matters (the packages' own PostgreSQL units).
    pub enabled: BTreeSet<String>,
    /// Read-only checks of the local PostgreSQL, `NAME|PSQL|SOCKET|PORT|SQL`, each once per OS
    /// family (see [`ROLE_IN_PLACE`] and [`CERT_UNLOADED`]).
    pub queries: Vec<String>,
}

impl Targets {
    /// The probe's arguments.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = self.files.iter().cloned().collect();
        a.push("--units".into());
        a.extend(self.units.iter().cloned());
        a.push("--dirs".into());
        a.extend(self.dirs.iter().cloned());
        a.push("--enabled".into());
        a.extend(self.enabled.iter().cloned());
        a.push("--queries".into());
        a.extend(self.queries.iter().cloned());
        a
    }
}

/// The query that answers when the exporter's role is in place.
pub const ROLE_IN_PLACE: &str = "role-in-place";
/// The query that answers when the PostgreSQL certificate's file is newer than the running
/// server's configuration (`pg_conf_load_time()`): written, not yet loaded.
pub const CERT_UNLOADED: &str = "cert-unloaded";
/// The query that answers when a restore's recovery settings are still in
/// `postgresql.auto.conf` (see [`super::backup`]).
pub const RESTORE_LEFT: &str = "restore-left";

/// What the probe saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    files: BTreeMap<String, FileState>,
    running: BTreeSet<String>,
    dirs: BTreeSet<String>,
    enabled: BTreeSet<String>,
    /// The names of the queries of [`Targets::queries`] that answered `1`.
    answered: BTreeSet<String>,
}

impl Snapshot {
    /// Parses the facts probe's output from its `@@files` marker on (see `facts::PROBE`).
    pub fn parse(text: &str) -> Self {
        let (files, rest) = text.split_once("@@units").unwrap_or((text, ""));
        let (units, rest) = rest.split_once("@@dirs").unwrap_or((rest, ""));
        let (dirs, rest) = rest.split_once("@@enabled").unwrap_or((rest, ""));
        let (enabled, queries) = rest.split_once("@@queries").unwrap_or((rest, ""));
        let files = files.trim_start_matches("@@files");
        let set = |t: &str| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        };
        Snapshot {
            files: parse_state(files),
            running: set(units),
            dirs: set(dirs),
            enabled: set(enabled),
            answered: set(queries),
        }
    }

    /// The query `name` answered `1`.
    pub fn answered(&self, name: &str) -> bool {
        self.answered.contains(name)
    }

    /// `path` exists on the host (whatever its content).
    pub fn has_file(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// Every file of `want` is on the host as wanted (content, mode, owner).
    pub fn files_in_place(&self, want: &[DesiredFile]) -> bool {
        want.iter().all(|f| !differs(&self.files, f))
    }
}

/// The probe's targets for `host`: what any step of a converge may check there.
pub fn targets(spec: &PostgresClusterSpec, secrets: &ClusterSecrets, host: &str) -> Targets {
    let mut t = Targets::default();
    for os in [OsFamily::Debian, OsFamily::RedHat] {
        let layout = Layout::new(spec, os);
        let mut files: Vec<DesiredFile> =
            render::host_files(spec, secrets, host, os).unwrap_or_default();
        files.extend(crate::engine::packages::repository_file(spec, os));
        files.extend(
            render::exporters(spec, host, os)
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.file),
        );
        t.files.extend(files.into_iter().map(|f| f.path));
        let marker = layout
            .patroni_venv
            .as_deref()
            .map(super::packages::installed_marker);
        t.files.extend(marker);
        t.units
            .extend([layout.etcd_unit, layout.patroni_unit, layout.haproxy_unit]);
        if render::backup::recovery(spec).is_some() {
            t.files.insert(render::backup::RESTORE_PEM.into());
        }
        if spec.backup.is_none() {
            t.enabled.extend(render::backup::UNITS.map(String::from));
        }
        if let Some(b) = &spec.backup {
            t.units.insert(render::backup::SERVER_UNIT.into());
            t.units.extend(
                render::backup::schedules(b)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(kind, _)| render::backup::timer_name(kind)),
            );
            let marker = render::backup::stanza_marker(b, render::backup::stanza(spec));
            t.files.insert(marker);
            t.dirs.insert(b.repository.path.clone());
        }
        if render::roles(spec, host).postgres {
            let port = spec.postgres.port;
            let psql = format!("{}/psql|{}|{port}", layout.bin_dir, layout.unix_socket_dir);
            if spec.monitoring.enabled {
                let sql = super::monitoring::monitor_role_in_place_sql();
                t.queries.push(format!("{ROLE_IN_PLACE}|{psql}|{sql}"));
            }
            if spec.tls.enabled() {
                let sql = format!(
                    "SELECT 1 WHERE (pg_stat_file('{}', true)).modification > pg_conf_load_time()",
                    render::POSTGRES_PEM
                );
                t.queries.push(format!("{CERT_UNLOADED}|{psql}|{sql}"));
            }
            if render::backup::recovery(spec).is_some() {
                let sql = super::backup::RESTORE_LEFT_SQL;
                t.queries.push(format!("{RESTORE_LEFT}|{psql}|{sql}"));
            }
        }
        t.dirs.insert(layout.data_dir);
    }
    t.files.insert(render::CA_CERT.into());
    t.files.insert(super::claim::PATH.into());
    t.files.insert(super::first_contact::ADOPTED_PATH.into());
    t.files.insert(render::EXPIRY_METRICS.into());
    t.units.extend(render::EXPORTER_UNITS.map(String::from));
    let markers: Vec<String> = t
        .units
        .iter()
        .map(|u| super::units::pending_marker(u))
        .collect();
    t.files.extend(markers);
    let (files, dirs, units) = super::packages::takeover_signs(spec);
    t.files.extend(files);
    t.dirs.extend(dirs);
    t.enabled.extend(units);
    t.dirs.insert(spec.etcd.data_dir.clone());
    t
}

impl Engine<'_> {
    fn snapshot_says(&self, host: &str, check: impl FnOnce(&Snapshot) -> bool) -> bool {
        self.snapshots
            .lock()
            .ok()
            .and_then(|s| s.get(host).map(check))
            .unwrap_or(false)
    }

    /// `want` is in place on `host` as its unchanged snapshot shows: nothing to write or ask.
    pub(super) fn files_in_place(&self, host: &str, want: &[DesiredFile]) -> bool {
        self.snapshot_says(host, |s| s.files_in_place(want))
    }

    /// `path` exists on unchanged `host`.
    pub(super) fn file_present(&self, host: &str, path: &str) -> bool {
        self.snapshot_says(host, |s| s.has_file(path))
    }

    /// Every one of `units` is enabled and running on unchanged `host`.
    pub(super) fn units_running(&self, host: &str, units: &[&str]) -> bool {
        self.snapshot_says(host, |s| units.iter().all(|u| s.running.contains(*u)))
    }

    /// Directory `dir` exists on unchanged `host`.
    pub(super) fn dir_present(&self, host: &str, dir: &str) -> bool {
        self.snapshot_says(host, |s| s.dirs.contains(dir))
    }

    /// Nothing the packages leave for the takeover is on unchanged `host` (see
    /// [`super::packages::takeover_signs`]).
    pub(super) fn nothing_to_take_over(&self, host: &str) -> bool {
        let (files, dirs, units) = super::packages::takeover_signs(self.spec);
        self.snapshot_says(host, |s| {
            !files.iter().any(|f| s.has_file(f))
                && !dirs.iter().any(|d| s.dirs.contains(d))
                && !units.iter().any(|u| s.enabled.contains(u))
        })
    }

    /// The exporter's role was in place when unchanged `host` was probed.
    /// Whether any backup unit is enabled on `host` (asked only while backups are off).
    pub(super) fn backup_units_enabled(&self, host: &str) -> bool {
        let units = crate::render::backup::UNITS;
        self.snapshot_says(host, |s| units.iter().any(|u| s.enabled.contains(*u)))
    }

    pub(super) fn restore_settings_seen(&self, host: &str) -> bool {
        self.snapshot_says(host, |s| s.answered(RESTORE_LEFT))
    }

    pub(super) fn monitor_role_seen(&self, host: &str) -> bool {
        self.snapshot_says(host, |s| s.answered(ROLE_IN_PLACE))
    }

    /// Keeps `host`'s snapshot for the steps to come.
    pub(super) fn keep_snapshot(&self, host: &str, snapshot: Snapshot) {
        if let Ok(mut s) = self.snapshots.lock() {
            s.insert(host.to_string(), snapshot);
        }
    }

    /// Something changed (or failed) on `host`: from now on its steps ask the host.
    pub(super) fn drop_snapshot(&self, host: &str) {
        if let Ok(mut s) = self.snapshots.lock() {
            s.remove(host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_probe_and_answers_what_is_in_place() {
        let f = DesiredFile {
            path: "/etc/a b.conf".into(),
            content: b"x".to_vec(),
            mode: 0o640,
            owner: "postgres".into(),
            group: "postgres".into(),
        };
        let text = format!(
            "@@files\n{} 640 postgres postgres /etc/a b.conf\n@@units\netcd\npatroni\n@@dirs\n/data/pg\n",
            f.sha256()
        );
        let s = Snapshot::parse(&text);
        assert!(s.files_in_place(std::slice::from_ref(&f)));
        let other = DesiredFile {
            mode: 0o600,
            ..f.clone()
        };
        assert!(!s.files_in_place(&[other]), "a mode change is a change");
        let missing = DesiredFile {
            path: "/etc/missing".into(),
            ..f
        };
        assert!(!s.files_in_place(&[missing]));
        assert!(s.running.contains("patroni") && s.dirs.contains("/data/pg"));
        assert!(!s.answered(ROLE_IN_PLACE));
        let q = Snapshot::parse("@@files\n@@units\n@@dirs\n@@enabled\n@@queries\nrole-in-place\n");
        assert!(q.answered(ROLE_IN_PLACE) && !q.answered(CERT_UNLOADED));
    }

    #[test]
    fn targets_cover_both_families_and_every_service() {
        let spec = crate::render::tests::spec();
        let t = targets(
            &spec,
            &crate::render::tests::secrets(),
            &spec.postgres.primary,
        );
        for path in [
            "/etc/patroni/config.yml",
            "/etc/patroni/patroni.yml",
            "/etc/default/etcd",
        ] {
            assert!(t.files.contains(path), "{path}: {:?}", t.files);
        }
        assert!(t.units.contains("patroni") && t.units.contains("prometheus-node-exporter"));
        assert!(
            t.files
                .contains("/opt/pgmetal/patroni-4.1.5/.pgmetal-installed"),
            "{:?}",
            t.files
        );
        assert!(t.files.contains(crate::engine::claim::PATH));
        assert!(t.dirs.contains(&spec.postgres.data_dir));
        assert!(
            t.queries
                .iter()
                .any(|q| q.contains("pgmetal_monitor") && q.ends_with("'MEMBER')")),
            "{:?}",
            t.queries
        );
        let args = t.args();
        assert!(args.contains(&"--units".to_string()) && args.contains(&"--dirs".to_string()));
    }
}
