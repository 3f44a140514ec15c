//! Unit tests of the render module: names, roles, layouts, and the shape of each file.

use super::*;
use crate::api::PostgresCluster;

/// The reference deployment's spec (3 PostgreSQL+etcd hosts, 1 HAProxy host).
pub(crate) fn spec() -> PostgresClusterSpec {
    let yaml = include_str!("../../tests/golden/reference-spec.yaml");
    serde_saphyr::from_str::<PostgresCluster>(yaml)
        .expect("reference spec parses")
        .spec
}

pub(crate) fn secrets() -> ClusterSecrets {
    ClusterSecrets {
        superuser: "su".into(),
        replication: "re".into(),
        rewind: "rw".into(),
        restapi: "ra".into(),
        haproxy_stats: "stats".into(),
        s3: Default::default(),
    }
}

pub(crate) fn text(f: &DesiredFile) -> String {
    String::from_utf8(f.content.clone()).unwrap()
}

pub(crate) fn yaml(f: &DesiredFile) -> serde_json::Value {
    serde_saphyr::from_slice(&f.content).unwrap()
}

#[test]
fn member_names() {
    assert_eq!(member_name("10.213.0.11"), "10-213-0-11");
    assert_eq!(member_name("db1.example.com"), "db1-example-com");
    assert_eq!(member_name("DB1.Example.COM"), "db1-example-com");
    assert_eq!(member_name("fd00::1"), "fd00--1");
    assert_eq!(member_name("a_b c"), "a-b-c");
}

#[test]
fn roles_and_hosts() {
    let s = spec();
    let all = Roles {
        postgres: true,
        etcd: true,
        haproxy: false,
        backup: false,
    };
    assert_eq!(roles(&s, "192.168.10.85"), all);
    assert_eq!(roles(&s, "192.168.10.72"), all);
    assert_eq!(
        roles(&s, "192.168.10.69"),
        Roles {
            postgres: false,
            etcd: false,
            haproxy: true,
            backup: false,
        }
    );
    assert!(roles(&s, "192.168.10.1").is_empty());
    assert_eq!(
        all_hosts(&s),
        [
            "192.168.10.85",
            "192.168.10.64",
            "192.168.10.72",
            "192.168.10.69"
        ]
    );

    let mut s = spec();
    s.etcd.hosts = vec!["e1".into(), "192.168.10.64".into(), "e2".into()];
    s.haproxy.hosts = vec!["e2".into(), "192.168.10.85".into(), "h1".into()];
    assert_eq!(
        all_hosts(&s),
        [
            "192.168.10.85",
            "192.168.10.64",
            "192.168.10.72",
            "e1",
            "e2",
            "h1"
        ]
    );
    assert_eq!(
        roles(&s, "e2"),
        Roles {
            postgres: false,
            etcd: true,
            haproxy: true,
            backup: false,
        }
    );
}

#[test]
fn layouts() {
    let mut s = spec();
    let d = Layout::new(&s, OsFamily::Debian);
    assert_eq!(d.patroni_config, "/etc/patroni/config.yml");
    assert_eq!(d.bin_dir, "/usr/lib/postgresql/15/bin");
    assert_eq!(d.etcd_env_file, "/etc/default/etcd");
    assert_eq!(d.haproxy_config, "/etc/haproxy/haproxy.cfg");
    assert_eq!(d.pgpass, "/var/lib/postgresql/.pgpass_patroni");
    assert_eq!(d.unix_socket_dir, "/var/run/postgresql");
    assert_eq!(d.data_dir, "/data/pg_data");
    assert_eq!(
        (d.postgres_user.as_str(), d.etcd_user.as_str()),
        ("postgres", "etcd")
    );
    assert_eq!(
        (
            d.patroni_unit.as_str(),
            d.etcd_unit.as_str(),
            d.haproxy_unit.as_str()
        ),
        ("patroni", "etcd", "haproxy")
    );

    s.postgres.version = 16;
    let r = Layout::new(&s, OsFamily::RedHat);
    assert_eq!(r.patroni_config, "/etc/patroni/patroni.yml");
    assert_eq!(r.bin_dir, "/usr/pgsql-16/bin");
    assert_eq!(r.etcd_env_file, "/etc/etcd/etcd.conf");
    assert_eq!(r.pgpass, "/var/lib/pgsql/.pgpass_patroni");
    assert_eq!(r.unix_socket_dir, "/run/postgresql");

    s.postgres.bin_dir = Some("/opt/pg/bin".into());
    assert_eq!(Layout::new(&s, OsFamily::RedHat).bin_dir, "/opt/pg/bin");
    assert_eq!(Layout::new(&s, OsFamily::Debian).bin_dir, "/opt/pg/bin");
}

#[test]
fn host_files_follow_roles() {
    let s = spec();
    let paths = |h: &str, os| -> Vec<String> {
        host_files(&s, &secrets(), h, os)
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect()
    };
    assert_eq!(
        paths("192.168.10.85", OsFamily::Debian),
        [
            "/etc/patroni/config.yml",
            "/etc/pgmetal/patroni-etcd",
            "/etc/default/etcd",
            "/etc/default/etcd-initial",
            "/etc/systemd/system/etcd.service.d/pgmetal.conf",
            "/etc/systemd/system/patroni.service"
        ]
    );
    assert_eq!(
        paths("192.168.10.69", OsFamily::Debian),
        ["/etc/haproxy/haproxy.cfg"]
    );
    assert_eq!(
        paths("192.168.10.64", OsFamily::RedHat),
        [
            "/etc/patroni/patroni.yml",
            "/etc/pgmetal/patroni-etcd",
            "/etc/etcd/etcd.conf",
            "/etc/etcd/etcd-initial.conf",
            "/etc/systemd/system/etcd.service",
            "/etc/systemd/system/patroni.service"
        ]
    );
    assert_eq!(
        paths("192.168.10.69", OsFamily::RedHat),
        ["/etc/haproxy/haproxy.cfg"]
    );
    let err = host_files(&s, &secrets(), "10.0.0.1", OsFamily::Debian).unwrap_err();
    assert_eq!(
        err,
        RenderError::UnknownHost {
            host: "10.0.0.1".into()
        }
    );
}

#[test]
fn file_modes_and_owners() {
    let s = spec();
    let p = patroni_config(&s, &secrets(), "192.168.10.85", OsFamily::Debian).unwrap();
    assert_eq!(
        (p.mode, p.owner.as_str(), p.group.as_str()),
        (0o600, "postgres", "postgres")
    );
    let e = etcd_config(&s, "192.168.10.85", OsFamily::Debian, Transport::Tls).unwrap();
    assert_eq!(
        (e.mode, e.owner.as_str(), e.group.as_str()),
        (0o644, "root", "root")
    );
    let h = haproxy_config(&s, &secrets()).unwrap();
    assert_eq!(
        (h.mode, h.owner.as_str(), h.group.as_str()),
        (0o644, "root", "root")
    );
}
