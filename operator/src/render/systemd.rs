//! systemd units pgmetal installs where the distro's packages ship none.
//!
//! Debian ships units for patroni, etcd (etcd-server) and haproxy: nothing is rendered. On the
//! RHEL family PGDG's patroni and haproxy ship units, but an etcd package may not (or may ship
//! one reading another file), so pgmetal writes `/etc/systemd/system/etcd.service` reading the
//! EnvironmentFile of [`Layout`](super::Layout). After writing a unit, run `systemctl daemon-reload`.

use super::Roles;
use super::layout::{ETCD_ENV_FILE_RHEL, ETCD_USER};
use crate::model::{DesiredFile, OsFamily};

/// A unit file: sections of `Key=Value` lines. Keys and values are constants, never user input.
struct Unit {
    sections: Vec<(&'static str, Vec<(&'static str, &'static str)>)>,
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
pub fn systemd_units(os: OsFamily, roles: Roles) -> Vec<DesiredFile> {
    if os != OsFamily::RedHat || !roles.etcd {
        return Vec::new();
    }
    let unit = Unit {
        sections: vec![
            (
                "Unit",
                vec![
                    (
                        "Description",
                        "etcd key-value store (Patroni DCS, managed by pgmetal)",
                    ),
                    ("After", "network-online.target"),
                    ("Wants", "network-online.target"),
                ],
            ),
            (
                "Service",
                vec![
                    ("Type", "notify"),
                    ("User", ETCD_USER),
                    ("EnvironmentFile", ETCD_ENV_FILE_RHEL),
                    ("ExecStart", "/usr/bin/etcd"),
                    ("Restart", "on-failure"),
                    ("RestartSec", "5"),
                    ("LimitNOFILE", "65536"),
                ],
            ),
            ("Install", vec![("WantedBy", "multi-user.target")]),
        ],
    };
    vec![DesiredFile {
        path: "/etc/systemd/system/etcd.service".into(),
        content: unit.render().into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    }]
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
