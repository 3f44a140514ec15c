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

const ENSURE: &str = r#"unit="$1"; changed="$2"; action="$3"; noblock="$4"
systemctl is-enabled --quiet "$unit" 2>/dev/null || { systemctl enable --quiet "$unit" && echo enabled; }
if ! systemctl is-active --quiet "$unit"; then
  systemctl start $noblock "$unit" && echo started
elif [ "$changed" = yes ]; then
  systemctl "$action" $noblock "$unit" && echo "${action}ed"
fi"#;

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
    let action = match on_change {
        OnChange::Restart => "restart",
        OnChange::Reload => "reload",
    };
    let cmd = Cmd::script(ENSURE).args([
        unit,
        if changed { "yes" } else { "no" },
        action,
        if no_block { "--no-block" } else { "--quiet" },
    ]);
    engine
        .step(host, &format!("unit {unit}"), async {
            let out = ex.run_ok(&cmd, &format!("unit {unit}")).await?;
            let did: Vec<String> = out
                .stdout_str()
                .lines()
                .map(|l| format!("{unit} {l}"))
                .collect();
            Ok(((), !did.is_empty(), did))
        })
        .await
}
