//! systemd units: enable, start when stopped, restart or reload only when their inputs changed.

use super::Engine;
use crate::exec::{Cmd, Executor};

/// What a changed configuration needs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    /// Restart the unit (etcd).
    Restart,
    /// Reload it (Patroni re-reads its YAML on SIGHUP; HAProxy reloads seamlessly).
    Reload,
}

/// Where a unit's "written, not loaded yet" marker lives (see [`pending_marker`]).
pub const PENDING_DIR: &str = "/var/lib/pgmetal/pending";

/// The marker written before a unit's new configuration and removed once the unit was
/// restarted or reloaded: a converge interrupted between the two leaves it, and the next one
/// (which finds the files already in place) restarts or reloads the unit all the same.
pub fn pending_marker(unit: &str) -> String {
    format!("{PENDING_DIR}/{unit}")
}

/// The pseudo-unit whose pending marker says that `unit` owes a restart (a reload does not
/// do): a setting it reads only when it starts changed (see [`restart_marker`]).
pub fn restart_owed(unit: &str) -> String {
    format!("{unit}.restart")
}

/// Where [`restart_owed`]'s marker lives: a start or restart of the unit removes it.
pub fn restart_marker(unit: &str) -> String {
    pending_marker(&restart_owed(unit))
}

/// Arguments: the action on change, `--no-block` or `--quiet`, [`PENDING_DIR`], then
/// `UNIT CHANGED` pairs. A unit started or restarted/reloaded loses its pending marker; a
/// start or restart also its [`restart_marker`].
const ENSURE: &str = r#"action="$1"; noblock="$2"; pending="$3"; shift 3
while [ $# -ge 2 ]; do
  unit="$1"; changed="$2"; shift 2
  systemctl is-enabled --quiet "$unit" 2>/dev/null || { systemctl enable --quiet "$unit" && echo "$unit enabled"; }
  if ! systemctl is-active --quiet "$unit"; then
    systemctl start $noblock "$unit" && echo "$unit started" && rm -f "$pending/$unit" "$pending/$unit.restart"
  elif [ "$changed" = yes ]; then
    systemctl "$action" $noblock "$unit" && echo "$unit ${action}ed" && rm -f "$pending/$unit"
    if [ "$action" = restart ]; then rm -f "$pending/$unit.restart"; fi
  fi
done"#;

/// Makes `unit` enabled and running; restarts/reloads it when `changed`. Records the step.
pub async fn ensure(
    engine: &Engine<'_>,
    host: &str,
    ex: &dyn Executor,
    unit: &str,
    changed: bool,
    on_change: OnChange,
    no_block: bool,
) -> Result<(), super::HostError> {
    ensure_all(engine, host, ex, &[(unit, changed)], on_change, no_block).await
}

/// [`ensure`] for several units in one round trip, each with whether its inputs changed.
pub async fn ensure_all(
    engine: &Engine<'_>,
    host: &str,
    ex: &dyn Executor,
    units: &[(&str, bool)],
    on_change: OnChange,
    no_block: bool,
) -> Result<(), super::HostError> {
    if units.is_empty() {
        return Ok(());
    }
    let action = match on_change {
        OnChange::Restart => "restart",
        OnChange::Reload => "reload",
    };
    let mut args = vec![
        action.to_string(),
        if no_block { "--no-block" } else { "--quiet" }.to_string(),
        PENDING_DIR.to_string(),
    ];
    let pending = engine
        .host_facts(host)
        .map(|f| f.pending)
        .unwrap_or_default();
    let units: Vec<(&str, bool)> = units
        .iter()
        .map(|(u, changed)| (*u, *changed || pending.contains(*u)))
        .collect();
    for (unit, changed) in &units {
        args.push(unit.to_string());
        args.push(if *changed { "yes" } else { "no" }.to_string());
    }
    let names: Vec<&str> = units.iter().map(|(u, _)| *u).collect();
    let name = match names.len() {
        1 => format!("unit {}", names[0]),
        _ => format!("units {}", names.join(", ")),
    };
    let running = units.iter().all(|(_, changed)| !changed) && engine.units_running(host, &names);
    engine
        .step(host, &name, async {
            if running {
                return Ok(((), false, vec![]));
            }
            let out = ex.run_ok(&Cmd::script(ENSURE).args(args), &name).await?;
            let did: Vec<String> = out.stdout_str().lines().map(String::from).collect();
            Ok(((), !did.is_empty(), did))
        })
        .await
}
