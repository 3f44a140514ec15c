//! etcd moving from plain text to TLS, with fakes: every member's peers go plain text with its
//! client port still in Patroni's scheme, then, paused, the first member moves alone, ahead of
//! the Patroni restarts; nothing moves while Patroni still speaks the old scheme.

use super::*;

/// The last `/etc/default/etcd` uploaded to `f`.
fn etcd_env(f: &FakeExecutor) -> String {
    let last = f
        .uploads()
        .into_iter()
        .rfind(|u| u.path == "/etc/default/etcd");
    String::from_utf8(last.expect("an etcd configuration").content).unwrap()
}

#[tokio::test]
async fn a_plain_text_etcd_moves_its_first_member_ahead_of_patroni_under_pause() {
    let spec = spec();
    let hosts = hosts();
    for f in hosts.values() {
        f.on_contains("s=pending", 0, "http\n"); // every Patroni still speaks plain text
    }
    let api = patroni(&spec, "a", &["b", "c"]);
    let etcd = FakeEtcd::new(true).with_plain_members(&["a", "b", "c"]);
    converge(&spec, &hosts, &api, &etcd).await;
    assert_eq!(
        etcd.changes(),
        ["update https://a:2380"],
        "only the first member's peer URL moves"
    );
    let first = etcd_env(&hosts["a"]);
    assert!(
        first.contains("ETCD_LISTEN_CLIENT_URLS=\"https://0.0.0.0:2379\"")
            && first.contains("ETCD_CLIENT_CERT_AUTH=\"true\"")
            && first.contains("ETCD_PEER_CLIENT_CERT_AUTH=\"true\""),
        "{first}"
    );
    for h in ["b", "c"] {
        let e = etcd_env(&hosts[h]);
        assert!(
            e.contains("ETCD_LISTEN_CLIENT_URLS=\"http://0.0.0.0:2379\"")
                && e.contains(&format!("ETCD_ADVERTISE_CLIENT_URLS=\"http://{h}:2379\""))
                && e.contains("ETCD_PEER_CERT_FILE=")
                && !e.contains("CLIENT_CERT_AUTH"),
            "{h}: plain text to clients and peers, ready to dial a TLS peer: {e}"
        );
    }
    let calls = api.calls();
    let pause = calls.iter().position(|c| c.contains(r#"{"pause":true}"#));
    let resume = calls.iter().position(|c| c.contains(r#"{"pause":false}"#));
    assert!(
        matches!((pause, resume), (Some(p), Some(r)) if p < r),
        "paused, then resumed: {calls:?}"
    );
}

#[tokio::test]
async fn a_member_that_does_not_answer_moves_nothing() {
    let spec = spec();
    let hosts = hosts();
    let mut conns = connected(&hosts);
    let e = crate::exec::ExecError::Connect {
        host: "c".into(),
        source: "no route to host".into(),
    };
    conns.insert("c".into(), Err(HostError::connect("c", &e)));
    let api = patroni(&spec, "a", &["b", "c"]);
    let etcd = FakeEtcd::new(true);
    let secrets = secrets();
    engine(&spec, &secrets, conns, (&api, &etcd))
        .converge()
        .await;
    assert!(etcd.changes().is_empty(), "{:?}", etcd.changes());
    for h in ["a", "b"] {
        let e = etcd_env(&hosts[h]);
        assert!(e.contains("ETCD_CLIENT_CERT_AUTH=\"true\""), "{h}: {e}");
    }
    let calls = api.calls();
    assert!(!calls.iter().any(|c| c.contains("pause")), "{calls:?}");
}
