//! systemd units pgmetal installs where the distro's packages ship none.
//!
//! Debian ships units for patroni, etcd (etcd-server) and haproxy. On the RHEL family PGDG's
//! patroni and haproxy ship units, but an etcd package may not (or may ship one reading another
//! file), so pgmetal writes `/etc/systemd/system/etcd.service` reading the EnvironmentFile of
//! [`Layout`](super::Layout). A pip-installed Patroni gets `/etc/systemd/system/patroni.service`
//! (it takes precedence over a distro unit of the same name). After writing a unit, run
//! `systemctl daemon-reload`.

use super::layout::{
    ETCD_ENV_FILE_RHEL, ETCD_INITIAL_FILE_DEBIAN, ETCD_INITIAL_FILE_RHEL, ETCD_USER,
};
use super::{Layout, Roles};
use crate::api::PostgresClusterSpec;
use crate::model::{DesiredFile, OsFamily};

/// A unit file: sections of `Key=Value` lines. Keys are constants; values are constants or
/// paths built from validated fields (a release number, fixed directories).
struct Unit {
    sections: Vec<(&'static str, Vec<(&'static str, String)>)>,
}

impl Unit {
    fn render(&self) -> String {
        let mut out = String::from("# Managed by pgmetal: local changes are overwritten.\n");
        for (i, (name, entries)) in self.sections.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&format!("[{name}]\n"));
            for (k, v) in entries {
                out.push_str(&format!("{k}={v}\n"));
            }
        }
        out
    }
}

/// Units a host with `roles` needs on `os` beyond what the distro's packages ship.
pub fn systemd_units(spec: &PostgresClusterSpec, os: OsFamily, roles: Roles) -> Vec<DesiredFile> {
    let layout = Layout::new(spec, os);
    let mut out = Vec::new();
    if os == OsFamily::RedHat && roles.etcd {
        out.push(unit_file("etcd", &etcd_unit()));
    }
    if os == OsFamily::Debian && roles.etcd {
        out.push(etcd_drop_in());
    }
    if roles.postgres
        && let Some(venv) = &layout.patroni_venv
    {
        out.push(unit_file("patroni", &patroni_unit(&layout, venv)));
    }
    out
}

fn unit_file(name: &str, unit: &Unit) -> DesiredFile {
    DesiredFile {
        path: format!("/etc/systemd/system/{name}.service"),
        content: unit.render().into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    }
}

impl Unit {
    /// A service unit started at boot after the network is up: `[Unit]` with `description`,
    /// `[Service]` with `service`, `[Install]` into multi-user.target.
    fn service(description: &str, service: Vec<(&'static str, String)>) -> Unit {
        let kv = |k: &'static str, v: &str| (k, v.to_string());
        Unit {
            sections: vec![
                (
                    "Unit",
                    vec![
                        kv("Description", description),
                        kv("After", "network-online.target"),
                        kv("Wants", "network-online.target"),
                    ],
                ),
                ("Service", service),
                ("Install", vec![kv("WantedBy", "multi-user.target")]),
            ],
        }
    }
}

fn kv(k: &'static str, v: &str) -> (&'static str, String) {
    (k, v.to_string())
}

/// Debian's etcd unit reads `/etc/default/etcd`; this drop-in adds the first-start file.
fn etcd_drop_in() -> DesiredFile {
    let unit = Unit {
        sections: vec![(
            "Service",
            vec![kv(
                "EnvironmentFile",
                &format!("-{ETCD_INITIAL_FILE_DEBIAN}"),
            )],
        )],
    };
    DesiredFile {
        path: "/etc/systemd/system/etcd.service.d/pgmetal.conf".into(),
        content: unit.render().into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    }
}

fn etcd_unit() -> Unit {
    Unit::service(
        "etcd key-value store (Patroni DCS, managed by pgmetal)",
        vec![
            kv("Type", "notify"),
            kv("User", ETCD_USER),
            kv("EnvironmentFile", ETCD_ENV_FILE_RHEL),
            kv("EnvironmentFile", &format!("-{ETCD_INITIAL_FILE_RHEL}")),
            kv("ExecStart", "/usr/bin/etcd"),
            kv("Restart", "on-failure"),
            kv("RestartSec", "5"),
            kv("LimitNOFILE", "65536"),
        ],
    )
}

/// Patroni from its virtualenv, as upstream's and Debian's units run it: stopping the unit
/// stops Patroni only (`KillMode=process`), and a crashed Patroni is not restarted behind the
/// DBA's back (`Restart=no`, upstream's choice).
fn patroni_unit(layout: &Layout, venv: &str) -> Unit {
    Unit::service(
        "Patroni, PostgreSQL high availability (managed by pgmetal)",
        vec![
            kv("Type", "simple"),
            kv("User", &layout.postgres_user),
            kv("Group", &layout.postgres_user),
            kv(
                "ExecStart",
                &format!("{venv}/bin/patroni {}", layout.patroni_config),
            ),
            kv("ExecReload", "/bin/kill -s HUP $MAINPID"),
            kv("KillMode", "process"),
            kv("TimeoutSec", "30"),
            kv("Restart", "no"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Layout;

    #[test]
    fn unit_matches_layout() {
        let spec = crate::render::tests::spec();
        let l = Layout::new(&spec, OsFamily::RedHat);
        assert_eq!(l.etcd_env_file, ETCD_ENV_FILE_RHEL);
        assert_eq!(l.etcd_user, ETCD_USER);
    }
}
