//! The planner's steps run by the engine, with fakes: etcd membership through the API in order,
//! a switchover before a leader leaves, a leaving member's key deleted, a former host
//! decommissioned (or noted when it does not answer), and refusals that change nothing.

use super::*;
use crate::exec::fake::Event;

/// Debian hosts `names`, each carrying this cluster's claim.
fn claimed(names: &[&str]) -> BTreeMap<String, FakeExecutor> {
    names
        .iter()
        .map(|h| {
            let f = FakeExecutor::new(h);
            // The facts probe also names the claim's path: its rule comes last, so it wins.
            f.on_contains(claim::PATH, 0, &owner().render());
            f.on_contains("/etc/os-release", 0, DEBIAN);
            f.on_contains("s=pending", 0, "https\n");
            (h.to_string(), f)
        })
        .collect()
}

/// Converges with `hosts` connected and `down` not answering.
async fn converge_topology(
    spec: &PostgresClusterSpec,
    hosts: &BTreeMap<String, FakeExecutor>,
    down: &[&str],
    api: &FakePatroni,
    etcd: &FakeEtcd,
) -> Report {
    let mut conns = connected(hosts);
    for h in down {
        let e = crate::exec::ExecError::Connect {
            host: h.to_string(),
            source: "no route to host".into(),
        };
        conns.insert(h.to_string(), Err(HostError::connect(h, &e)));
    }
    let secrets = secrets();
    engine(spec, &secrets, conns, (api, etcd)).converge().await
}

/// Whether the unit step ran for etcd on `f` (enable, start, restart when changed).
fn starts_etcd(f: &FakeExecutor) -> bool {
    f.events().into_iter().any(|e| match e {
        Event::Run(r) => r.cmd.contains("unit=\"$1\"") && r.cmd.contains(" etcd "),
        _ => false,
    })
}

fn described(r: &Report) -> Vec<String> {
    r.plan.iter().map(crate::plan::Step::describe).collect()
}

/// The texts uploaded to `path` on `f`, in order.
fn uploaded(f: &FakeExecutor, path: &str) -> Vec<String> {
    let all = f.uploads().into_iter().filter(|u| u.path == path);
    all.map(|u| String::from_utf8(u.content).unwrap()).collect()
}

#[tokio::test]
async fn a_healthy_etcd_member_moves_the_new_one_joins_first_and_the_old_host_is_decommissioned() {
    let spec = spec();
    let hosts = claimed(&["a", "b", "c", "d"]);
    let api = patroni(&spec, "a", &["b", "c"]);
    let etcd = FakeEtcd::new(true).with_members(&["a", "b", "d"]);
    let r = converge_topology(&spec, &hosts, &[], &api, &etcd).await;
    assert!(r.healthy, "{:?}", r.problems);
    assert_eq!(
        described(&r),
        [
            "adding etcd member c",
            "removing etcd member d",
            "decommissioning d (stopping its services, keeping PostgreSQL data)"
        ]
    );
    assert_eq!(etcd.changes(), ["add c", "remove d"]);
    assert!(starts_etcd(&hosts["c"]), "{:?}", hosts["c"].commands());
    let initial = uploaded(&hosts["c"], "/etc/default/etcd-initial");
    assert!(
        initial[0].contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\"")
            && initial[0].contains("d=https://d:2380")
            && initial[0].contains("c=https://c:2380"),
        "c joins the live members: {initial:?}"
    );
    // Then every member's file names the members after the change (no restart for it).
    let last = uploaded(&hosts["a"], "/etc/default/etcd-initial");
    assert!(!last[last.len() - 1].contains("d=https"), "{last:?}");
    let d = hosts["d"].commands().join("\n");
    assert!(
        d.contains("systemctl disable") && d.contains("rm -f -- /var/lib/pgmetal/claim"),
        "{d}"
    );
    assert_eq!(r.released, ["d"]);
    // Nothing written on d: its PostgreSQL data stays, and no configuration is pushed.
    assert!(hosts["d"].uploads().is_empty());
}

#[tokio::test]
async fn a_dead_member_is_replaced_without_ssh_to_it_removed_before_the_new_one_is_added() {
    let spec = spec();
    let hosts = claimed(&["a", "b", "c"]);
    let mut v = view("a", &["b", "c"]);
    v.members
        .push(super::super::fake::member("d", "replica", "stopped"));
    let api = FakePatroni::new(v, render::dcs_config(&spec));
    let etcd = FakeEtcd::new(true)
        .with_members(&["a", "b", "d!"])
        .serving(&api);
    let r = converge_topology(&spec, &hosts, &["d"], &api, &etcd).await;
    assert!(r.healthy, "{:?}", r.problems);
    assert_eq!(
        etcd.changes(),
        ["remove d", "add c", "delete /db/postgres/members/d"]
    );
    assert!(!api.current().members.iter().any(|m| m.name == "d"));
    assert!(
        r.notes
            .iter()
            .any(|n| n.starts_with("d left the spec and does not answer")),
        "{:?}",
        r.notes
    );
    assert!(r.released.is_empty(), "d is kept until it answers");
    assert!(r.hosts.get("d").is_none_or(|h| h.error.is_none()));
}

#[tokio::test]
async fn a_leaving_leader_hands_over_first_and_its_member_leaves() {
    let mut spec = spec();
    spec.postgres.primary = "b".into();
    spec.postgres.replicas = vec!["c".into()];
    let hosts = claimed(&["a", "b", "c"]);
    let api = patroni(&spec, "a", &["b", "c"]);
    let etcd = FakeEtcd::new(true).serving(&api);
    let r = converge_topology(&spec, &hosts, &[], &api, &etcd).await;
    assert!(r.healthy, "{:?}", r.problems);
    assert_eq!(
        described(&r),
        ["switching over from a to b", "removing replica a"]
    );
    assert!(api.calls().contains(&"switchover b a->b".to_string()));
    assert_eq!(etcd.changes(), ["delete /db/postgres/members/a"]);
    let a = hosts["a"].commands().join("\n");
    assert!(a.contains("patroni"), "Patroni stopped on a: {a}");
    assert!(
        !a.contains("rm -f -- /var/lib/pgmetal/claim"),
        "a stays an etcd member"
    );
    assert_eq!(r.status.primary.as_deref(), Some("b"));
}

#[tokio::test]
async fn a_change_without_etcd_quorum_is_refused_and_nothing_runs() {
    let spec = spec();
    let hosts = claimed(&["a", "b", "c"]);
    let api = patroni(&spec, "a", &["b", "c"]);
    let etcd = FakeEtcd::new(true).with_members(&["a", "b!", "d!"]);
    let r = converge_topology(&spec, &hosts, &[], &api, &etcd).await;
    assert!(!r.healthy);
    let failure = r.failure.expect("refused as a whole");
    assert_eq!(failure.kind, HostErrorKind::Refused);
    assert!(
        failure.message.contains("etcd has 1 healthy of 3 members")
            && failure.message.contains("(b, d)"),
        "{failure}"
    );
    assert!(etcd.changes().is_empty());
    for (h, f) in &hosts {
        let ran = but_schemes(f);
        assert!(ran.is_empty() && f.uploads().is_empty(), "{h}: {ran:?}");
    }
}

#[tokio::test]
async fn a_new_etcd_host_whose_data_directory_holds_a_member_is_never_joined() {
    let spec = spec();
    let hosts = claimed(&["a", "b", "c"]);
    hosts["c"].on_contains("/member\" ] && echo taken", 0, "taken\n");
    let api = patroni(&spec, "a", &["b", "c"]);
    let etcd = FakeEtcd::new(true).with_members(&["a", "b", "d"]);
    let r = converge_topology(&spec, &hosts, &[], &api, &etcd).await;
    let failure = r.failure.expect("refused");
    assert_eq!(failure.kind, HostErrorKind::Refused);
    assert!(
        failure
            .message
            .contains("/var/lib/etcd/default.etcd on c already holds a member"),
        "{failure}"
    );
    assert!(etcd.changes().is_empty(), "no member added");
    assert!(
        !starts_etcd(&hosts["c"]),
        "etcd never started on c: {:?}",
        hosts["c"].commands()
    );
}

#[tokio::test]
async fn a_joining_replica_whose_data_directory_holds_another_system_is_never_joined() {
    let spec = spec();
    let hosts = claimed(&["a", "b", "c"]);
    hosts["c"].on_contains(
        "pg_controldata",
        0,
        "pg_control version number:            1300\nDatabase system identifier:           7000000000000000001\n",
    );
    let api = patroni(&spec, "a", &["b"]);
    let etcd = FakeEtcd::new(true);
    let r = converge_topology(&spec, &hosts, &[], &api, &etcd).await;
    assert_eq!(described(&r), ["adding replica c"]);
    let failure = r.failure.expect("refused");
    assert_eq!(failure.kind, HostErrorKind::Refused);
    assert!(
        failure
            .message
            .contains("/data/pg_data on c holds system 7000000000000000001")
            && failure
                .message
                .contains(super::super::fake::FAKE_SYSTEM_IDENTIFIER),
        "{failure}"
    );
    assert!(
        !hosts["c"]
            .uploads()
            .iter()
            .any(|u| u.path.contains("patroni")),
        "no Patroni configuration on c"
    );
}

#[tokio::test]
async fn a_former_host_claimed_by_another_cluster_is_left_alone() {
    let spec = spec();
    let mut hosts = claimed(&["a", "b", "c"]);
    let other = FakeExecutor::new("d");
    let foreign = claim::Owner {
        name: "db/other".into(),
        uid: Some("u-2".into()),
    };
    other.on_contains(claim::PATH, 0, &foreign.render());
    other.on_contains("/etc/os-release", 0, DEBIAN);
    hosts.insert("d".into(), other);
    let api = patroni(&spec, "a", &["b", "c"]);
    let etcd = FakeEtcd::new(true);
    let r = converge_topology(&spec, &hosts, &[], &api, &etcd).await;
    assert!(r.healthy, "{:?}", r.problems);
    assert!(r.plan.is_empty(), "{:?}", described(&r));
    assert_eq!(r.released, ["d"], "no longer kept as a former host");
    let d = hosts["d"].commands();
    assert!(
        d.iter()
            .all(|c| c.contains(claim::PATH) && !c.contains("rm ")),
        "only its claim was read: {d:?}"
    );
}

#[tokio::test]
async fn a_former_host_that_still_runs_the_primary_is_never_stopped() {
    // Patroni's cluster view cannot be read, so no switchover is planned; d's own REST API
    // says it is the primary.
    let spec = spec();
    let hosts = claimed(&["a", "b", "c", "d"]);
    let api = patroni(&spec, "d", &["a", "b", "c"]);
    api.without_view();
    let etcd = FakeEtcd::new(true);
    let r = converge_topology(&spec, &hosts, &[], &api, &etcd).await;
    let failure = r.failure.expect("refused");
    assert_eq!(failure.kind, HostErrorKind::Refused);
    assert!(
        failure.message.contains("d still runs the primary"),
        "{failure}"
    );
    let d = hosts["d"].commands().join("\n");
    assert!(!d.contains("systemctl disable"), "{d}");
}
