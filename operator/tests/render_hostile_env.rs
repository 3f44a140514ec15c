//! Hostile strings in the etcd EnvironmentFile (round trip through a systemd-rules parser and
//! through `sh`), and hostile host names, which every renderer rejects.

use std::process::Command;

use pgmetal::model::OsFamily;
use pgmetal::render::{self, InitialCluster, InitialClusterState};
use pretty_assertions::assert_eq;

mod render_support;
use render_support::*;

#[test]
fn etcd_env_round_trips_through_systemd_and_sh() {
    let dir = tempfile::tempdir().unwrap();
    for s in hostile(dir.path()) {
        let mut sp = spec();
        sp.etcd.cluster_token = s.clone();
        sp.etcd.data_dir = s.clone();
        let main = render::etcd_config(
            &sp,
            "192.168.10.64",
            OsFamily::Debian,
            render::Transport::Tls,
        )
        .unwrap();
        let joining = InitialCluster {
            state: InitialClusterState::Existing,
            ..InitialCluster::bootstrap(&sp)
        };
        let initial =
            render::etcd_initial_config(&sp, "192.168.10.64", OsFamily::Debian, &joining).unwrap();
        // Both files, as systemd reads them one after the other.
        let content = [main.content.clone(), initial.content.clone()].concat();
        let text = String::from_utf8(content.clone()).unwrap();
        let vars = envfile::parse_systemd(&text);
        assert_eq!(vars["ETCD_INITIAL_CLUSTER_TOKEN"], s, "{text}");
        assert_eq!(vars["ETCD_DATA_DIR"], s, "{text}");
        assert_eq!(vars["ETCD_NAME"], "192-168-10-64");
        assert_eq!(vars["ETCD_INITIAL_CLUSTER_STATE"], "existing");
        assert_eq!(vars["ETCD_PRE_VOTE"], "true");
        assert_eq!(vars.len(), 19, "ten settings and nine for TLS");
        // A POSIX shell sourcing the file (as some init scripts do) sees the same values.
        let path = dir.path().join("etcd.env");
        std::fs::write(&path, &content).unwrap();
        let script =
            r#"set -a; . "$1"; printf '%s\0%s' "$ETCD_INITIAL_CLUSTER_TOKEN" "$ETCD_DATA_DIR""#;
        let out = Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{s}\0{s}"));
    }
    assert!(!dir.path().join("pwned").exists(), "a value was executed");

    for bad in ["a\nETCD_NAME=evil", "a\rb", "a\0b", "tab\t"] {
        let mut sp = spec();
        sp.etcd.cluster_token = bad.into();
        let boot = InitialCluster::bootstrap(&sp);
        let err =
            render::etcd_initial_config(&sp, "192.168.10.64", OsFamily::Debian, &boot).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("etcd.clusterToken (for host 192.168.10.64)"),
            "{err}"
        );
        sp = spec();
        sp.etcd.data_dir = bad.into();
        let err = render::etcd_config(
            &sp,
            "192.168.10.64",
            OsFamily::RedHat,
            render::Transport::Tls,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("etcd.dataDir (for host 192.168.10.64)"),
            "{err}"
        );
    }
}

#[test]
fn hostile_hosts_are_rejected_everywhere() {
    let bad_hosts = [
        "10.0.0.1 #",
        "h#x",
        "a b",
        "h\nbind *:22",
        "db1;",
        "h'",
        "h\"",
        "",
        "h/x",
        "h\t",
        "$(x)",
        "é.example",
    ];
    for bad in bad_hosts {
        let mut sp = spec();
        sp.haproxy.hosts = vec![bad.to_string()];
        let err = render::haproxy_config(&sp, &secrets("x")).unwrap_err();
        assert!(
            err.to_string().starts_with("haproxy.hosts (for host *)"),
            "{err}"
        );

        let mut sp = spec();
        sp.postgres.replicas[1] = bad.to_string();
        let err = render::haproxy_config(&sp, &secrets("x")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("postgres.replicas (for host *)"),
            "{err}"
        );
        let err = render::patroni_config(&sp, &secrets("ok"), HOST, OsFamily::Debian).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("postgres.replicas (for host 192.168.10.85)"),
            "{err}"
        );

        let mut sp = spec();
        sp.etcd.hosts[2] = bad.to_string();
        let err =
            render::etcd_config(&sp, HOST, OsFamily::Debian, render::Transport::Tls).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("etcd.hosts (for host 192.168.10.85)"),
            "{err}"
        );
        let err = render::patroni_config(&sp, &secrets("ok"), HOST, OsFamily::Debian).unwrap_err();
        assert!(err.to_string().starts_with("etcd.hosts "), "{err}");
    }
}

#[test]
fn envfile_parser_follows_systemd_rules() {
    let text = "# comment\n; other\n\nA=\"q\\\"b\\\\c\\$d\\`e\\qf\"\nB='lit $x \\n'\n C = plain  \nD=a\\ b\\\nc\nE=\"multi\\\nline\"\nA2=\nX=\"x\" tail \n";
    let v = envfile::parse_systemd(text);
    assert_eq!(v["A"], "q\"b\\c$d`e\\qf");
    assert_eq!(v["B"], "lit $x \\n");
    assert_eq!(v["C"], "plain");
    assert_eq!(v["D"], "a bc");
    assert_eq!(v["E"], "multiline");
    assert_eq!(v["A2"], "");
    assert_eq!(v["X"], "x tail");
    assert_eq!(v.len(), 7);
}
