//! Monitoring on the hosts: the exporters' settings and units, and the PostgreSQL role the
//! PostgreSQL exporter logs in as (created once, on the leader).

use super::{Engine, HostError, units};
use crate::exec::Cmd;
use crate::model::OsFamily;
use crate::render::{self, EXPORTER_UNITS, Layout, MONITOR_ROLE};

/// Creates [`MONITOR_ROLE`] (LOGIN, member of `pg_monitor`) when it is missing or lacks either;
/// prints what it did. Nothing is written when the role is in place.
const MONITOR_ROLE_SCRIPT: &str = r#"set -e
psql="$1/psql"; sock="$2"; port="$3"; role="$4"; check="$5"
q() { runuser -u postgres -- "$psql" -X -At -h "$sock" -p "$port" -d postgres -c "$1"; }
ok=$(q "$check")
[ "$ok" = 1 ] && exit 0
q "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN CREATE ROLE $role; END IF; END \$\$; ALTER ROLE $role LOGIN; GRANT pg_monitor TO $role" >/dev/null
echo "role $role: LOGIN, member of pg_monitor""#;

/// The query that answers `1` when [`MONITOR_ROLE`] is in place (LOGIN, member of
/// `pg_monitor`): the role step's check, and the facts probe's.
pub(super) fn monitor_role_in_place_sql() -> String {
    format!(
        "SELECT 1 FROM pg_roles r WHERE r.rolname = '{MONITOR_ROLE}' AND r.rolcanlogin \
         AND pg_has_role(r.oid, 'pg_monitor', 'MEMBER')"
    )
}

/// Stops and disables the exporters pgmetal started, when monitoring was turned off.
const EXPORTERS_OFF: &str = r#"for u in "$@"; do
  if systemctl is-enabled --quiet "$u" 2>/dev/null; then systemctl disable --now --quiet "$u" && echo "$u stopped and disabled"; fi
done"#;

impl Engine<'_> {
    /// The exporters of `host`: settings written, units enabled and running (restarted when
    /// their settings changed); stopped and disabled when monitoring is off.
    pub(super) async fn monitoring(&self, host: &str) -> Result<(), HostError> {
        let ex = self.exec(host)?;
        let os = self.host_facts(host)?.os;
        let exporters =
            render::exporters(self.spec, host, os).map_err(|e| HostError::new(host, None, e))?;
        if !self.spec.monitoring.enabled && os == OsFamily::Debian {
            let off = Cmd::script(EXPORTERS_OFF).args(EXPORTER_UNITS);
            return self.script_step(host, &*ex, "exporters off", &off).await;
        }
        if exporters.is_empty() {
            return Ok(()); // the RHEL family: pgmetal installs no exporters there
        }
        let files: Vec<_> = exporters.iter().map(|e| e.file.clone()).collect();
        let written = self.write(host, &*ex, &files).await?;
        let units: Vec<(&str, bool)> = exporters
            .iter()
            .map(|e| (e.unit, written.contains(&e.file.path)))
            .collect();
        units::ensure_all(self, host, &*ex, &units, units::OnChange::Restart, false).await
    }

    /// The PostgreSQL exporter's role, on the leader (a replica is read-only).
    pub(super) async fn monitor_role(&self, leader: &str) -> Result<(), HostError> {
        let ex = self.exec(leader)?;
        let layout = Layout::new(self.spec, self.host_facts(leader)?.os);
        let port = self.spec.postgres.port.to_string();
        if self.monitor_role_seen(leader) {
            return self
                .step(leader, "monitoring role", async { Ok(((), false, vec![])) })
                .await;
        }
        let cmd = Cmd::script(MONITOR_ROLE_SCRIPT).args([
            layout.bin_dir.as_str(),
            &layout.unix_socket_dir,
            &port,
            MONITOR_ROLE,
            &monitor_role_in_place_sql(),
        ]);
        self.script_step(leader, &*ex, "monitoring role", &cmd)
            .await
    }
}
