//! First contact refuses what pgmetal did not make, adoption is explicit and recorded, and a
//! CA read back from a host is trusted only when pgmetal pinned it.

use super::*;

/// Three fresh hosts, but c holds someone's PostgreSQL in dataDir (the first-contact probe's
/// answer there).
fn someones_data_on_c() -> (
    PostgresClusterSpec,
    BTreeMap<String, FakeExecutor>,
    FakePatroni,
    FakeEtcd,
) {
    let spec = spec();
    let (hosts, etcd) = (hosts(), FakeEtcd::new(true));
    let api = patroni(&spec, "a", &["b", "c"]);
    let answer = "pg /data/pg_data 7300000000000000001 PostgreSQL data\n";
    hosts["c"].on_contains("pristine_main()", 0, answer);
    (spec, hosts, api, etcd)
}

#[tokio::test]
async fn an_unclaimed_host_holding_someones_postgres_is_refused_before_anything_is_written() {
    let (spec, hosts, api, etcd) = someones_data_on_c();
    let r = converge(&spec, &hosts, &api, &etcd).await;
    let err = r.hosts["c"].error.as_ref().expect("c refused");
    assert_eq!(err.kind, HostErrorKind::NotFree);
    let text = err.to_string();
    assert!(
        text.contains("c is not free")
            && text.contains(
                "PostgreSQL data in /data/pg_data (system identifier 7300000000000000001)"
            )
            && text.contains("pgmetal.io/adopt=c=7300000000000000001"),
        "{text}"
    );
    assert_eq!(claim_written(&hosts["c"]), None, "no claim on c");
    assert!(hosts["c"].uploads().is_empty(), "nothing written on c");
    let cmds = hosts["c"].commands();
    assert_eq!(cmds.len(), 3, "facts, claim, probe: {cmds:?}");
}

#[tokio::test]
async fn adopted_data_is_claimed_with_its_system_identifier_recorded() {
    let (spec, hosts, api, etcd) = someones_data_on_c();
    let asked = requests::Asked {
        adopt: BTreeMap::from([("c".into(), "7300000000000000001".into())]),
        ..Default::default()
    };
    let conns = connected(&hosts);
    let secrets = secrets();
    let r = engine(&spec, &secrets, conns, (&api, &etcd))
        .with_requests(asked)
        .converge()
        .await;
    assert!(r.hosts["c"].error.is_none(), "{:?}", r.hosts["c"].error);
    assert_eq!(claim_written(&hosts["c"]), Some(owner()));
    let up = hosts["c"].uploads();
    let adopted = up.iter().find(|u| u.path == first_contact::ADOPTED_PATH);
    assert_eq!(
        adopted.map(|u| u.content.clone()),
        Some(b"7300000000000000001\n".to_vec())
    );
}

/// The etcd trust file uploaded to `host`, as text.
fn etcd_trust(host: &FakeExecutor) -> String {
    let up = host.uploads();
    let f = up.iter().rfind(|u| u.path == crate::render::ETCD_TRUST);
    String::from_utf8_lossy(&f.expect("etcd trust written").content).into_owned()
}

#[tokio::test]
async fn a_ca_planted_on_a_host_is_never_trusted_a_pinned_former_one_is() {
    let spec = spec();
    let now = time::OffsetDateTime::now_utc();
    let planted = crate::tls::new_ca("planted", now, crate::tls::CA_LIFETIME).unwrap();
    let facts = format!("{DEBIAN}@@postgres-cert\n@@ca\n{}", planted.cert);
    let run = |pins: Vec<String>| {
        let spec = spec.clone();
        let facts = facts.clone();
        async move {
            let (hosts, api, etcd) = (
                hosts(),
                patroni(&spec, "a", &["b", "c"]),
                FakeEtcd::new(true),
            );
            // Root on c wrote its own CA where pgmetal keeps the cluster's.
            hosts["c"].on_contains("/etc/os-release", 0, &facts);
            let secrets = secrets();
            engine(&spec, &secrets, connected(&hosts), (&api, &etcd))
                .with_pins(pins)
                .converge()
                .await;
            etcd_trust(&hosts["a"])
        }
    };
    let trust = run(Vec::new()).await;
    assert!(trust.contains(test_ca().cert.trim()), "{trust}");
    assert!(
        !trust.contains(planted.cert.trim()),
        "a CA read back from a host is no trust anchor"
    );
    // The same CA pinned by pgmetal as a former CA of this cluster: trusted during the move.
    let pinned = crate::tls::fingerprint(&planted.cert).unwrap();
    assert!(run(vec![pinned]).await.contains(planted.cert.trim()));
}

/// The test CA with a key that is not a key: nothing can be issued from it (a damaged Secret).
fn ca_that_cannot_issue() -> crate::tls::CertKey {
    let mut ca = test_ca();
    ca.key = crate::tls::KeyPem("not a key".into());
    ca
}

#[tokio::test]
async fn a_ca_that_cannot_issue_is_an_error_never_plain_text() {
    // Before: the Patroni and etcd clients went plain text, silently.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut spec = spec();
    assert!(spec.tls.enabled(), "TLS is on by default");
    spec.patroni.rest_api_port = listener.local_addr().unwrap().port();
    let ca = ca_that_cannot_issue();
    let api = PatroniApi::for_cluster(&spec, &secrets(), Some(&ca)).trusting(["127.0.0.1".into()]);
    let e = api.cluster("127.0.0.1").await.unwrap_err();
    assert!(
        e.message
            .contains("cannot issue pgmetal's client certificate"),
        "{e}"
    );
    let e = api
        .patch_config("127.0.0.1", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(e.message.contains("cannot issue"), "{e}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(listener.accept().is_err(), "a request was sent");

    let etcd = etcd_api::EtcdClient::for_cluster(&spec, Some(&ca));
    let hosts = ["127.0.0.1".to_string()];
    let e = etcd.get_key(&spec, &hosts, "/k").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot issue pgmetal's client certificate"),
        "{e}"
    );
    assert!(etcd.members(&spec, &hosts).await.is_none());
}
