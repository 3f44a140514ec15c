//! Unit tests of file contents: Patroni listen/pg_hba, IPv6 and DNS hosts, units, errors.

use super::tests::{secrets, spec, text, yaml};
use super::*;

#[test]
fn patroni_listen_has_one_port_and_spec_parameters_win() {
    let mut s = spec();
    s.postgres
        .parameters
        .insert("max_wal_senders".into(), "20".into());
    let y = yaml(&patroni_config(&s, &secrets(), "192.168.10.64", OsFamily::Debian).unwrap());
    assert_eq!(y["postgresql"]["listen"], "192.168.10.64,127.0.0.1:5432");
    assert_eq!(y["postgresql"]["connect_address"], "192.168.10.64:5432");
    assert_eq!(y["name"], "192-168-10-64");
    let params = &y["bootstrap"]["dcs"]["postgresql"]["parameters"];
    assert_eq!(params["max_wal_senders"], "20");
    assert_eq!(params["wal_level"], "replica");
    assert_eq!(params["max_connections"], "200");
}

#[test]
fn pg_hba_order_and_user_lines_last() {
    let mut s = spec();
    s.postgres.pg_hba = vec!["host all all 10.0.0.0/8 scram-sha-256".into()];
    s.postgres.replication.name = "all".into();
    let y = yaml(&patroni_config(&s, &secrets(), "192.168.10.85", OsFamily::Debian).unwrap());
    let hba: Vec<&str> = y["postgresql"]["pg_hba"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        hba[..2],
        [
            "local all postgres peer",
            "hostssl all all 127.0.0.1/32 scram-sha-256"
        ]
    );
    assert!(hba.contains(&"hostssl replication \"all\" 192.168.10.72/32 scram-sha-256"));
    assert!(hba.contains(&"hostssl all all 192.168.10.69/32 scram-sha-256"));
    assert_eq!(hba.last(), Some(&"host all all 10.0.0.0/8 scram-sha-256"));
}

#[test]
fn ipv6_and_dns_hosts() {
    let mut s = spec();
    s.postgres.primary = "fd00::85".into();
    s.postgres.replicas = vec!["db2.example.com".into()];
    s.etcd.hosts = vec![
        "fd00::85".into(),
        "db2.example.com".into(),
        "192.168.10.72".into(),
    ];
    s.haproxy.hosts = vec![];
    let y = yaml(&patroni_config(&s, &secrets(), "fd00::85", OsFamily::Debian).unwrap());
    assert_eq!(y["postgresql"]["listen"], "fd00::85,127.0.0.1:5432");
    assert_eq!(y["postgresql"]["connect_address"], "[fd00::85]:5432");
    assert_eq!(y["restapi"]["connect_address"], "[fd00::85]:8008");
    assert_eq!(y["etcd3"]["hosts"][0], "[fd00::85]:2379");
    let hba = serde_saphyr::to_string(&y["postgresql"]["pg_hba"]).unwrap();
    assert!(
        hba.contains("hostssl replication replicator fd00::85/128 scram-sha-256"),
        "{hba}"
    );
    assert!(
        hba.contains("hostssl all all db2.example.com scram-sha-256"),
        "{hba}"
    );

    let e = text(&etcd_config(&s, "db2.example.com", OsFamily::Debian, Transport::Plain).unwrap());
    assert!(
        e.contains("ETCD_LISTEN_PEER_URLS=\"http://0.0.0.0:2380\"\n"),
        "{e}"
    );
    assert!(
        e.contains("ETCD_LISTEN_CLIENT_URLS=\"http://0.0.0.0:2379\"\n"),
        "{e}"
    );
    assert!(
        e.contains("ETCD_ADVERTISE_CLIENT_URLS=\"http://db2.example.com:2379\"\n"),
        "{e}"
    );
    let joining = InitialCluster {
        state: InitialClusterState::Existing,
        members: vec![(
            "db2-example-com".into(),
            "http://db2.example.com:2380".into(),
        )],
    };
    let i = text(&etcd_initial_config(&s, "db2.example.com", OsFamily::Debian, &joining).unwrap());
    assert!(
        i.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n")
            && i.contains("ETCD_INITIAL_CLUSTER=\"db2-example-com=http://db2.example.com:2380\"\n"),
        "{i}"
    );
    assert!(!e.contains("ETCD_INITIAL_CLUSTER"), "{e}");
    let e = text(&etcd_config(&s, "fd00::85", OsFamily::Debian, Transport::Plain).unwrap());
    assert!(
        e.contains("ETCD_LISTEN_CLIENT_URLS=\"http://[fd00::85]:2379,http://127.0.0.1:2379\"\n"),
        "{e}"
    );
    let boot = InitialCluster::bootstrap(&s);
    let e = text(&etcd_initial_config(&s, "fd00::85", OsFamily::Debian, &boot).unwrap());
    assert!(e.contains("ETCD_INITIAL_CLUSTER_STATE=\"new\"\n"), "{e}");
    assert!(e.contains("ETCD_INITIAL_CLUSTER=\"fd00--85=https://[fd00::85]:2380,db2-example-com=https://db2.example.com:2380,192-168-10-72=https://192.168.10.72:2380\"\n"), "{e}");

    let h = text(&haproxy_config(&s, &secrets()).unwrap());
    assert!(
        h.contains("    server fd00--85 [fd00::85]:5432 maxconn 100 check port 8008 check-ssl verify required ca-file /etc/pgmetal/tls/ca.crt\n"),
        "{h}"
    );
}

#[test]
fn haproxy_checks_patroni_in_the_specs_scheme_or_in_both_while_it_moves() {
    let mut s = spec();
    let servers = |h: &str| -> Vec<String> {
        h.lines()
            .filter(|l| l.trim_start().starts_with("server "))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let https = "check port 8008 check-ssl verify required ca-file /etc/pgmetal/tls/ca.crt";
    let tls = servers(&text(&haproxy_config(&s, &secrets()).unwrap()));
    assert_eq!(tls.len(), 6, "{tls:?}");
    assert!(tls.iter().all(|l| l.ends_with(https)), "{tls:?}");
    let both = servers(&text(
        &haproxy_config_with(&s, &secrets(), RestChecks::Both).unwrap(),
    ));
    assert_eq!(both.len(), 12, "{both:?}");
    assert!(both.contains(&format!(
        "server 192-168-10-85 192.168.10.85:5432 maxconn 100 {https}"
    )));
    assert!(both.contains(
        &"server 192-168-10-85-plain 192.168.10.85:5432 maxconn 100 check port 8008".to_string()
    ));

    s.tls.mode = crate::api::TlsMode::Disabled;
    let plain = servers(&text(&haproxy_config(&s, &secrets()).unwrap()));
    assert!(
        plain.iter().all(|l| l.ends_with("check port 8008")),
        "{plain:?}"
    );
    let back = servers(&text(
        &haproxy_config_with(&s, &secrets(), RestChecks::Both).unwrap(),
    ));
    assert!(back.contains(&format!(
        "server 192-168-10-85-tls 192.168.10.85:5432 maxconn 100 {https}"
    )));
    assert!(back.contains(
        &"server 192-168-10-85 192.168.10.85:5432 maxconn 100 check port 8008".to_string()
    ));
}

#[test]
fn patroni_serves_https_with_a_client_certificate_for_unsafe_methods_only_with_tls() {
    let mut s = spec();
    let yml = |s: &PostgresClusterSpec| {
        text(&patroni_config(s, &secrets(), "192.168.10.85", OsFamily::Debian).unwrap())
    };
    let on = yml(&s);
    for line in [
        "  certfile: \"/etc/pgmetal/tls/postgres.pem\"\n",
        "  keyfile: \"/etc/pgmetal/tls/postgres.pem\"\n",
        "  cafile: \"/etc/pgmetal/tls/ca.crt\"\n",
        "  verify_client: \"optional\"\n",
    ] {
        assert!(on.contains(line), "{line} in {on}");
    }
    let tls_line = |t: &str| t.lines().any(|l| l.starts_with(super::REST_TLS_LINE));
    assert!(
        tls_line(&on),
        "the probe tells HTTPS by {:?}",
        super::REST_TLS_LINE
    );
    s.tls.mode = crate::api::TlsMode::Disabled;
    let off = yml(&s);
    assert!(
        !off.contains("certfile") && !off.contains("verify_client") && !tls_line(&off),
        "{off}"
    );
}

#[test]
fn the_etcd_line_that_tells_tls_is_there_only_when_clients_speak_tls() {
    let s = spec();
    let says_tls = |t: Transport| {
        let f = etcd_config(&s, "192.168.10.85", OsFamily::Debian, t).unwrap();
        text(&f)
            .lines()
            .any(|l| l.starts_with(super::ETCD_CLIENT_TLS_LINE))
    };
    assert!(says_tls(Transport::Tls));
    assert!(!says_tls(Transport::Plain));
    assert!(!says_tls(Transport::Opening(crate::tls::Scheme::Http)));
    assert!(says_tls(Transport::Opening(crate::tls::Scheme::Https)));
}

#[test]
fn wrong_roles_are_errors() {
    let s = spec();
    assert!(patroni_config(&s, &secrets(), "192.168.10.69", OsFamily::Debian).is_err());
    assert!(etcd_config(&s, "192.168.10.69", OsFamily::Debian, Transport::Tls).is_err());
}

#[test]
fn systemd_units_for_rhel_etcd_and_pip_patroni() {
    let etcd = Roles {
        postgres: false,
        etcd: true,
        haproxy: false,
        backup: false,
    };
    let s = spec();
    // Debian's unit reads /etc/default/etcd; a drop-in adds the first-start file.
    let units = systemd_units(&s, OsFamily::Debian, etcd);
    assert_eq!(units.len(), 1);
    assert_eq!(
        units[0].path,
        "/etc/systemd/system/etcd.service.d/pgmetal.conf"
    );
    let t = text(&units[0]);
    assert!(
        t.ends_with("[Service]\nEnvironmentFile=-/etc/default/etcd-initial\n"),
        "{t}"
    );
    let units = systemd_units(&s, OsFamily::RedHat, etcd);
    assert_eq!(units.len(), 1);
    let t = text(&units[0]);
    assert!(
        t.contains(
            "\nEnvironmentFile=/etc/etcd/etcd.conf\nEnvironmentFile=-/etc/etcd/etcd-initial.conf\n"
        ),
        "{t}"
    );
    assert!(t.contains("\nExecStart=/usr/bin/etcd\n"), "{t}");

    // Patroni from pip (the default) runs from its release's virtualenv, on either family.
    let pg = Roles {
        postgres: true,
        ..Default::default()
    };
    let units = systemd_units(&s, OsFamily::Debian, pg);
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].path, "/etc/systemd/system/patroni.service");
    let t = text(&units[0]);
    assert!(
        t.contains("\nExecStart=/opt/pgmetal/patroni-4.1.5/bin/patroni /etc/patroni/config.yml\n")
            && t.contains("\nUser=postgres\n")
            && t.contains("\nKillMode=process\n"),
        "{t}"
    );
    let mut distro = spec();
    distro.packages.patroni.source = crate::api::PatroniSource::Distro;
    assert!(systemd_units(&distro, OsFamily::Debian, pg).is_empty());
}

#[test]
fn errors_name_field_and_host() {
    let mut s = spec();
    s.postgres.parameters.insert(
        "work_mem".into(),
        "4MB\nshared_preload_libraries = 'x'".into(),
    );
    let err = patroni_config(&s, &secrets(), "192.168.10.85", OsFamily::Debian)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("postgres.parameters.work_mem (for host 192.168.10.85): "),
        "{err}"
    );
    let mut sec = secrets();
    sec.superuser = "trailing-newline\n".into();
    let err = patroni_config(&spec(), &sec, "192.168.10.85", OsFamily::Debian)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("superuser password") && !err.contains("trailing-newline"),
        "{err}"
    );
}
