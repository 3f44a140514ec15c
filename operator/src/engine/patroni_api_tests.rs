//! Unit tests of the Patroni REST client: member predicates, config patches, where the password goes.
use super::*;
use serde_json::json;

/// Whether anything connected to `listener` (it is non-blocking).
fn connected(listener: &std::net::TcpListener) -> bool {
    std::thread::sleep(Duration::from_millis(100));
    listener.accept().is_ok()
}

#[tokio::test]
async fn the_password_goes_only_to_hosts_whose_key_was_verified() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let patch = json!({"pause": true});
    let untrusted = PatroniApi::new(port, "secret".into()).trusting(["10.0.0.9".into()]);
    let e = untrusted
        .patch_config("127.0.0.1", &patch)
        .await
        .unwrap_err();
    assert!(e.message.contains("not been verified"), "{e}");
    assert!(
        !connected(&listener),
        "a request reached an unverified host"
    );
    // The same call to a verified host is made (this listener never answers it).
    let trusted = untrusted.trusting(["127.0.0.1".into()]);
    let call = tokio::spawn(async move { trusted.patch_config("127.0.0.1", &patch).await });
    assert!(
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if listener.accept().is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .is_ok(),
        "no request reached the verified host"
    );
    call.abort();
}

#[test]
fn a_healthy_replica_streams_or_runs_with_a_known_lag_in_status_and_in_the_view() {
    let status = |role: &str, state: &str, lag: Option<i64>| crate::api::MemberStatus {
        role: role.into(),
        state: state.into(),
        lag_bytes: lag,
        ..Default::default()
    };
    let view = |role: &str, state: &str, lag: Value| ClusterMember {
        name: "m".into(),
        role: role.into(),
        state: state.into(),
        host: None,
        timeline: None,
        lag: Some(lag),
        pending_restart: false,
    };
    for (role, state, known, healthy) in [
        ("replica", "streaming", false, true),
        ("sync_standby", "streaming", true, true),
        ("replica", "running", true, true),
        ("replica", "running", false, false),
        ("replica", "stopped", true, false),
        ("replica", "starting", true, false),
        ("leader", "running", true, false),
    ] {
        let s = status(role, state, known.then_some(0));
        let v = view(role, state, if known { json!(0) } else { json!("unknown") });
        assert_eq!(s.is_healthy_replica(), healthy, "{role} {state} {known}");
        assert_eq!(v.is_healthy_replica(), healthy, "{role} {state} {known}");
    }
    assert!(status("leader", "running", None).is_running_leader());
    assert!(!status("leader", "starting", None).is_running_leader());
    assert!(!status("standby_leader", "running", None).is_running_leader());
}

#[test]
fn patch_is_empty_when_equal_and_minimal_otherwise() {
    let cur = json!({"ttl": 30, "loop_wait": 10, "postgresql": {"use_pg_rewind": true, "parameters": {"max_connections": 100, "work_mem": "4MB"}}});
    let same = json!({"ttl": 30, "postgresql": {"use_pg_rewind": true, "parameters": {"max_connections": "100", "work_mem": "4MB"}}});
    assert_eq!(config_patch(&cur, &same), None);
    let want = json!({"ttl": 40, "postgresql": {"use_pg_rewind": true, "parameters": {"max_connections": "200"}}});
    assert_eq!(
        config_patch(&cur, &want),
        Some(
            json!({"ttl": 40, "postgresql": {"parameters": {"max_connections": "200", "work_mem": null}}})
        )
    );
}

#[test]
fn cluster_view_parses_patroni_output() {
    let v: ClusterView = serde_json::from_value(json!({"members": [
        {"name": "a", "role": "leader", "state": "running", "host": "10.0.0.1", "port": 5432, "timeline": 1},
        {"name": "b", "role": "replica", "state": "streaming", "host": "10.0.0.2", "timeline": 1, "lag": 0},
        {"name": "c", "role": "replica", "state": "running", "lag": "unknown", "pending_restart": true}
    ], "pause": true})).unwrap();
    assert_eq!(v.leaders().len(), 1);
    assert!(v.pause && v.members[2].pending_restart);
    assert!(v.members[0].is_leader() && !v.members[1].is_leader());
    assert_eq!(v.members[1].role(), Role::Replica);
}

#[test]
fn roles_parse_and_only_leader_leads() {
    for (text, role) in [
        ("leader", Role::Leader),
        ("standby_leader", Role::StandbyLeader),
        ("replica", Role::Replica),
        ("sync_standby", Role::SyncStandby),
        ("quorum_standby", Role::QuorumStandby),
        ("master", Role::Unknown),
    ] {
        assert_eq!(Role::parse(text), role, "{text}");
    }
    let m = crate::api::MemberStatus {
        role: "standby_leader".into(),
        ..Default::default()
    };
    assert!(!m.is_leader() && m.role() == Role::StandbyLeader);
}
