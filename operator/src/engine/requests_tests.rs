//! Member operations asked for by annotation, with fakes: a rolling restart (replicas first,
//! a switchover, the old primary, the primary back), a replica's reinit, each carried out once.

use super::*;
use crate::engine::requests::{Asked, BACKUP_NOW, BACKUP_TYPE};

async fn converge_asking(
    spec: &PostgresClusterSpec,
    api: &FakePatroni,
    etcd: &FakeEtcd,
    asked: Asked,
) -> Report {
    let (hosts, secrets) = (hosts(), secrets());
    engine(spec, &secrets, connected(&hosts), (api, etcd))
        .with_requests(asked)
        .converge()
        .await
}

/// The restart, reinit and switchover calls, in order.
fn actions(api: &FakePatroni) -> Vec<String> {
    let calls = api.calls().into_iter();
    calls
        .filter(|c| {
            c.starts_with("restart ") || c.starts_with("reinit") || c.starts_with("switchover")
        })
        .collect()
}

fn restart_at(at: &str) -> Asked {
    Asked {
        restart_at: Some(at.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_rolling_restart_takes_replicas_first_then_hands_over_and_back_once_per_value() {
    let spec = spec();
    let (api, etcd) = (patroni(&spec, "a", &["b", "c"]), FakeEtcd::new(true));
    let r = converge_asking(&spec, &api, &etcd, restart_at("2026-11-29T22:00:00Z")).await;
    assert!(r.healthy, "{:?}", r.problems);
    assert_eq!(
        actions(&api),
        [
            "restart b",
            "restart c",
            "switchover b a->b",
            "restart a",
            "switchover a b->a"
        ]
    );
    let done = r.requests.expect("recorded");
    assert_eq!(done.restart_at.as_deref(), Some("2026-11-29T22:00:00Z"));
    assert!(done.restarted_at.is_some());
    assert!(
        etcd.key("/pgmetal/postgres/requests")
            .unwrap()
            .contains("2026-11-29T22:00:00Z")
    );

    // A member still busy (a demotion) is asked again.
    let api3 = patroni(&spec, "a", &["b", "c"]);
    api3.busy(2);
    let r = converge_asking(&spec, &api3, &FakeEtcd::new(true), restart_at("x")).await;
    assert!(r.healthy, "{:?}", r.problems);
    assert_eq!(actions(&api3).len(), 7, "{:?}", actions(&api3));

    // The same manifest again: nothing. A new value: again.
    let api2 = patroni(&spec, "a", &["b", "c"]);
    converge_asking(&spec, &api2, &etcd, restart_at("2026-11-29T22:00:00Z")).await;
    assert!(actions(&api2).is_empty(), "{:?}", actions(&api2));
    converge_asking(&spec, &api2, &etcd, restart_at("later")).await;
    assert_eq!(actions(&api2).len(), 5);
}

#[tokio::test]
async fn a_reinit_replaces_a_replica_once_and_is_refused_for_the_primary() {
    let spec = spec();
    let (api, etcd) = (patroni(&spec, "a", &["b", "c"]), FakeEtcd::new(true));
    let asked = |h: &str| Asked {
        restart_at: None,
        reinit: Some(h.into()),
        ..Default::default()
    };
    let r = converge_asking(&spec, &api, &etcd, asked("c")).await;
    assert!(r.healthy, "{:?}", r.problems);
    assert_eq!(actions(&api), ["reinitialize c"]);
    converge_asking(&spec, &api, &etcd, asked("c")).await;
    assert_eq!(actions(&api), ["reinitialize c"], "once per value");

    let r = converge_asking(&spec, &api, &etcd, asked("a")).await;
    let failure = r.failure.expect("refused");
    assert_eq!(failure.kind, HostErrorKind::Refused);
    assert!(
        failure.message.contains("names a, which is the primary"),
        "{failure}"
    );
    assert_eq!(actions(&api), ["reinitialize c"]);

    // Without the annotation the record is forgotten: c can be asked again.
    let r = converge_asking(&spec, &api, &etcd, Asked::default()).await;
    assert_eq!(r.requests.unwrap().reinit, None);
    converge_asking(&spec, &api, &etcd, asked("c")).await;
    assert_eq!(actions(&api), ["reinitialize c", "reinitialize c"]);
}

#[tokio::test]
async fn a_backup_asked_without_backups_is_refused_and_the_type_comes_from_its_annotation() {
    let notes = |kv: &[(&str, &str)]| {
        let m: BTreeMap<String, String> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Asked::from_annotations(Some(&m))
    };
    use crate::api::BackupType::{Differential, Full};
    let full = notes(&[(BACKUP_NOW, "n1")]);
    assert_eq!(full.backup_now, Some(("n1".into(), Full)));
    let diff = notes(&[(BACKUP_NOW, "n2"), (BACKUP_TYPE, "diff")]);
    assert_eq!(diff.backup_now, Some(("n2".into(), Differential)));
    assert_eq!(notes(&[(BACKUP_TYPE, "diff")]).backup_now, None);
    let spec = spec();
    let (api, etcd) = (patroni(&spec, "a", &["b", "c"]), FakeEtcd::new(true));
    let r = converge_asking(&spec, &api, &etcd, full).await;
    assert!(!r.healthy);
    let why = r.failure.map(|f| f.message).unwrap_or_default();
    assert!(why.contains("spec.backup is not set"), "{why}");
}
