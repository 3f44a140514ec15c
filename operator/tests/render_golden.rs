//! Golden files: the reference deployment rendered byte for byte.
//! `UPDATE_GOLDEN=1 cargo test -p pgmetal --test render_golden` rewrites them; review the diff.

use std::path::PathBuf;

use pgmetal::api::{PostgresCluster, PostgresClusterSpec};
use pgmetal::model::{ClusterSecrets, DesiredFile, OsFamily};
use pgmetal::render::{self, InitialCluster, Roles};
use pretty_assertions::assert_eq;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn reference_spec() -> PostgresClusterSpec {
    let yaml = std::fs::read_to_string(golden_dir().join("reference-spec.yaml")).unwrap();
    serde_saphyr::from_str::<PostgresCluster>(&yaml)
        .unwrap()
        .spec
}

fn secrets() -> ClusterSecrets {
    ClusterSecrets {
        superuser: "superuser-password".into(),
        replication: "replication-password".into(),
        rewind: "rewind-password".into(),
        restapi: "restapi-password".into(),
        haproxy_stats: "stats".into(),
        s3: Default::default(),
    }
}

/// Compares `file` with the golden file `name`, or rewrites it when UPDATE_GOLDEN=1.
fn check_golden(name: &str, file: &DesiredFile) {
    let path = golden_dir().join(name);
    let actual = String::from_utf8(file.content.clone()).unwrap();
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        expected, actual,
        "golden file {name} differs (UPDATE_GOLDEN=1 rewrites it)"
    );
}

#[test]
fn patroni_primary_debian() {
    let f = render::patroni_config(
        &reference_spec(),
        &secrets(),
        "192.168.10.85",
        OsFamily::Debian,
    )
    .unwrap();
    assert_eq!(f.path, "/etc/patroni/config.yml");
    check_golden("patroni-192.168.10.85.yml", &f);
}

#[test]
fn etcd_member_debian() {
    let f = render::etcd_config(
        &reference_spec(),
        "192.168.10.64",
        OsFamily::Debian,
        render::Transport::Tls,
    )
    .unwrap();
    assert_eq!(f.path, "/etc/default/etcd");
    check_golden("etcd-192.168.10.64.env", &f);
    let boot = InitialCluster::bootstrap(&reference_spec());
    let f =
        render::etcd_initial_config(&reference_spec(), "192.168.10.64", OsFamily::Debian, &boot)
            .unwrap();
    assert_eq!(f.path, "/etc/default/etcd-initial");
    check_golden("etcd-initial-192.168.10.64.env", &f);
}

#[test]
fn haproxy_cfg() {
    let f = render::haproxy_config(&reference_spec(), &secrets()).unwrap();
    assert_eq!(f.path, "/etc/haproxy/haproxy.cfg");
    check_golden("haproxy.cfg", &f);
}

#[test]
fn etcd_unit_rhel_and_pip_patroni_unit() {
    let units = render::systemd_units(
        &reference_spec(),
        OsFamily::RedHat,
        Roles {
            postgres: true,
            etcd: true,
            haproxy: false,
            backup: false,
        },
    );
    assert_eq!(units.len(), 2);
    assert_eq!(units[0].path, "/etc/systemd/system/etcd.service");
    check_golden("etcd.service.rhel", &units[0]);
    assert_eq!(units[1].path, "/etc/systemd/system/patroni.service");
    check_golden("patroni.service.rhel", &units[1]);
}

#[test]
fn golden_patroni_is_what_patroni_expects() {
    // Spot checks on the parsed golden file, so a careless UPDATE_GOLDEN cannot bless a
    // structurally broken config.
    let text = std::fs::read_to_string(golden_dir().join("patroni-192.168.10.85.yml")).unwrap();
    let y: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(y["scope"], "postgres");
    assert_eq!(y["namespace"], "/db/");
    assert_eq!(y["name"], "192-168-10-85");
    assert_eq!(y["etcd3"]["hosts"][2], "192.168.10.72:2379");
    assert_eq!(y["postgresql"]["listen"], "192.168.10.85,127.0.0.1:5432");
    assert_eq!(y["postgresql"]["data_dir"], "/data/pg_data");
    assert_eq!(y["postgresql"]["bin_dir"], "/usr/lib/postgresql/15/bin");
    assert_eq!(
        y["postgresql"]["authentication"]["replication"]["username"],
        "replicator"
    );
    assert_eq!(y["bootstrap"]["initdb"][4], "data-checksums");
    assert_eq!(y["bootstrap"]["dcs"]["postgresql"]["use_pg_rewind"], true);
    assert_eq!(y["tags"]["nofailover"], false);
}
