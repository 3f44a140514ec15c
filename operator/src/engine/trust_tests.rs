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
    let cmds = but_schemes(&hosts["c"]);
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

/// A plain-HTTP "member" on loopback that answers every request with a forged `/patroni`:
/// what an on-path attacker serves in place of a member's HTTPS.
fn forged_plain_member() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            use std::io::{Read, Write};
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            if buf[0] == 0x16 {
                // A TLS ClientHello: answer with text, as a plain-HTTP server does.
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                continue;
            }
            let body = r#"{"state":"running","role":"primary","timeline":9}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body.as_bytes());
        }
    });
    port
}

#[tokio::test]
async fn an_answer_in_plain_text_is_never_read_from_a_member_configured_for_tls() {
    // Before: a read that met non-TLS bytes was repeated in plain text, and its forged answer
    // (a second primary) believed.
    let mut spec = spec();
    spec.patroni.rest_api_port = forged_plain_member();
    let ca = test_ca();
    let api = PatroniApi::for_cluster(&spec, &secrets(), Some(&ca));
    let forged = api.node("127.0.0.1").await;
    assert!(
        forged.is_err(),
        "a forged plain-text answer was read: {forged:?}"
    );
    // A member whose configuration, read over SSH, says it serves plain text (a cluster moving
    // to TLS) is still read in plain text.
    api.allow_plain("127.0.0.1");
    let node = api.node("127.0.0.1").await.expect("read in plain text");
    assert_eq!(node.timeline, Some(9));
}

#[tokio::test]
async fn etcd_is_never_asked_in_plain_text_where_its_configuration_says_tls() {
    // Before: any TLS failure (here: the server closes on the ClientHello) was retried in
    // plain text, whatever the member's configuration.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut spec = spec();
    spec.etcd.client_port = listener.local_addr().unwrap().port();
    let plain = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = plain.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            use std::io::Read;
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf).unwrap_or(0);
            if buf[..n].starts_with(b"PRI * HTTP/2") {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let ca = test_ca();
    let etcd = etcd_api::EtcdClient::for_cluster(&spec, Some(&ca));
    let hosts = ["127.0.0.1".to_string()];
    assert!(etcd.members(&spec, &hosts).await.is_none());
    assert!(
        !plain.load(std::sync::atomic::Ordering::SeqCst),
        "a request went out in plain text"
    );
    // Allowed where the host's etcd configuration says plain text.
    etcd.allow_plain("127.0.0.1");
    assert!(etcd.members(&spec, &hosts).await.is_none());
    assert!(plain.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test]
async fn plain_text_is_allowed_only_where_the_hosts_configuration_says_so() {
    let spec = spec();
    let (hosts, api, etcd) = (
        hosts(),
        patroni(&spec, "a", &["b", "c"]),
        FakeEtcd::new(true),
    );
    // What the hosts' configuration files say, read before anything is asked of them: a is
    // configured for TLS; b's REST API for plain text; c's etcd for plain text (or a change of
    // it is not loaded yet).
    hosts["b"].on_contains("index($0, p)", 0, "rest\n");
    hosts["c"].on_contains("index($0, p)", 0, "etcd\n");
    converge(&spec, &hosts, &api, &etcd).await;
    assert_eq!(api.allowed_plain(), ["b".to_string()].into());
    assert_eq!(etcd.allowed_plain(), ["c".to_string()].into());
    let first = |h: &str| hosts[h].commands().first().cloned().unwrap_or_default();
    assert!(
        first("a").contains("index($0, p)"),
        "read before anything else: {}",
        first("a")
    );
}
