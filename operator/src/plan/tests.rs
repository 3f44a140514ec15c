//! The planner against a table of before/after topologies, refusals included.

use super::*;

/// A spec: PostgreSQL hosts (the first is the primary), etcd hosts, HAProxy hosts.
fn spec(pg: &[&str], etcd: &[&str], lbs: &[&str]) -> PostgresClusterSpec {
    let yaml = format!(
        "ssh: {{}}\npostgres: {{primary: {}, replicas: [{}]}}\netcd: {{hosts: [{}]}}\nhaproxy: {{hosts: [{}]}}\n",
        pg[0],
        pg[1..].join(", "),
        etcd.join(", "),
        lbs.join(", ")
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

/// etcd members: `host` healthy, `host!` dead.
fn etcd(members: &[&str]) -> Vec<EtcdMember> {
    members
        .iter()
        .enumerate()
        .map(|(i, m)| EtcdMember {
            id: 0xa0 + i as u64,
            host: m.trim_end_matches('!').into(),
            healthy: !m.ends_with('!'),
        })
        .collect()
}

/// Patroni members: `host*` the leader, `host` a streaming replica, `host!` not streaming.
fn patroni(members: &[&str]) -> Vec<PatroniMember> {
    members
        .iter()
        .map(|m| PatroniMember {
            host: m.trim_end_matches(['*', '!']).into(),
            leader: m.ends_with('*'),
            healthy_replica: !m.ends_with('*') && !m.ends_with('!'),
        })
        .collect()
}

fn observed(e: &[&str], p: &[&str]) -> Observed {
    Observed {
        etcd: etcd(e),
        patroni: patroni(p),
        former: vec![],
    }
}

/// The plan's steps as short words, e.g. `-etcd h3`, `+etcd h5`, `switch h1>h2`.
fn words(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match s {
            Step::RemoveEtcdMember { host, healthy, .. } => {
                format!("-etcd {host}{}", if *healthy { "" } else { "!" })
            }
            Step::AddEtcdMember { host } => format!("+etcd {host}"),
            Step::Switchover { from, to } => format!("switch {from}>{to}"),
            Step::AddReplica { host } => format!("+pg {host}"),
            Step::RemoveReplica { host } => format!("-pg {host}"),
            Step::Decommission { host } => format!("retire {host}"),
        })
        .collect()
}

const PG3: [&str; 3] = ["h1", "h2", "h3"];

#[test]
fn the_table_of_topology_changes() {
    let p3 = ["h1*", "h2", "h3"];
    let rows: Vec<(&str, PostgresClusterSpec, Observed, Vec<&str>)> = vec![
        (
            "nothing runs yet: a bootstrap, no steps",
            spec(&PG3, &PG3, &["h4"]),
            observed(&[], &[]),
            vec![],
        ),
        (
            "the topology matches",
            spec(&PG3, &PG3, &["h4"]),
            observed(&["h1", "h2", "h3"], &p3),
            vec![],
        ),
        (
            "a replica is added",
            spec(&["h1", "h2", "h3", "h5"], &PG3, &["h4"]),
            observed(&["h1", "h2", "h3"], &p3),
            vec!["+pg h5"],
        ),
        (
            "a replica is removed; the host leaves the cluster",
            spec(&["h1", "h2"], &["h1", "h2", "h4"], &["h4"]),
            observed(&["h1", "h2", "h4"], &p3),
            vec!["-pg h3", "retire h3"],
        ),
        (
            "a healthy etcd member moves: add the new one first",
            spec(&PG3, &["h1", "h2", "h5"], &["h4"]),
            observed(&["h1", "h2", "h3"], &p3),
            vec!["+etcd h5", "-etcd h3"],
        ),
        (
            "a dead etcd member is replaced: remove it first",
            spec(&PG3, &["h1", "h2", "h5"], &["h4"]),
            observed(&["h1", "h2", "h3!"], &p3),
            vec!["-etcd h3!", "+etcd h5"],
        ),
        (
            "a dead replica is replaced in both lists; it leaves the cluster",
            spec(&["h1", "h2", "h6"], &["h1", "h2", "h6"], &["h4"]),
            observed(&["h1", "h2", "h3!"], &["h1*", "h2", "h3!"]),
            vec!["-etcd h3!", "+etcd h6", "+pg h6", "-pg h3", "retire h3"],
        ),
        (
            "the leader leaves: switch over to the preferred primary first",
            spec(&["h2", "h3"], &PG3, &["h4"]),
            observed(&["h1", "h2", "h3"], &p3),
            vec!["switch h1>h2", "-pg h1"],
        ),
        (
            "the leader leaves and the preferred primary lags: another streaming replica",
            spec(&["h2", "h3"], &PG3, &["h4"]),
            observed(&["h1", "h2", "h3"], &["h1*", "h2!", "h3"]),
            vec!["switch h1>h3", "-pg h1"],
        ),
        (
            "etcd grows from 3 to 5, one member at a time",
            spec(&PG3, &["h1", "h2", "h3", "h5", "h6"], &["h4"]),
            observed(&["h1", "h2", "h3"], &p3),
            vec!["+etcd h5", "+etcd h6"],
        ),
        (
            "etcd shrinks from 5 to 3",
            spec(&PG3, &PG3, &["h4"]),
            observed(&["h1", "h2", "h3", "h5", "h6"], &p3),
            vec!["-etcd h5", "-etcd h6", "retire h5", "retire h6"],
        ),
        (
            "a HAProxy host is replaced: the old one is retired",
            spec(&PG3, &PG3, &["h5"]),
            Observed {
                former: vec!["h4".into()],
                ..observed(&["h1", "h2", "h3"], &p3)
            },
            vec!["retire h4"],
        ),
        (
            "a member added but never started (a run stopped after member add) is finished by the converge",
            spec(&PG3, &["h1", "h2", "h3", "h5"], &["h4"]),
            observed(&["h1", "h2", "h3", "h5!"], &p3),
            vec![],
        ),
    ];
    for (what, spec, obs, want) in rows {
        let got = plan(&spec, &obs).unwrap_or_else(|e| panic!("{what}: refused: {e}"));
        assert_eq!(words(&got), want, "{what}");
    }
}

#[test]
fn the_refusals_say_why_and_what_to_do() {
    let p3 = ["h1*", "h2", "h3"];
    let rows: Vec<(&str, PostgresClusterSpec, Observed, &str)> = vec![
        (
            "a majority of etcd is down",
            spec(&PG3, &["h1", "h2", "h5"], &["h4"]),
            observed(&["h1", "h2!", "h3!"], &p3),
            "etcd has 1 healthy of 3 members; changing its membership needs a majority (2). Nothing was changed. Start the members that are down (h2, h3) first",
        ),
        (
            "adding a member while another (staying) is down",
            spec(&PG3, &["h1", "h2", "h3", "h5"], &["h4"]),
            observed(&["h1", "h2", "h3!"], &p3),
            "adding etcd member h5 while h3 is down would need 3 of 4 members to vote and only 2 can",
        ),
        (
            "removing a healthy member while another is down",
            spec(&PG3, &["h1", "h2", "h3"], &["h4"]),
            observed(&["h1", "h2!", "h3!", "h5", "h6"], &p3),
            "removing etcd member h5 would leave 2 healthy of 4 members, under a majority",
        ),
        (
            "every etcd member replaced at once",
            spec(&PG3, &["h5", "h6", "h7"], &["h4"]),
            observed(&["h1", "h2", "h3"], &p3),
            "spec.etcd.hosts [h5, h6, h7] keeps none of the running etcd members [h1, h2, h3]",
        ),
        (
            "the leader leaves and no replica in the spec streams",
            spec(&["h2", "h5"], &PG3, &["h4"]),
            observed(&["h1", "h2", "h3"], &["h1*", "h2!", "h3"]),
            "the primary h1 leaves spec.postgres, and no replica in the spec streams to take over",
        ),
    ];
    for (what, spec, obs, want) in rows {
        let got = plan(&spec, &obs);
        let msg = got.as_ref().map_err(ToString::to_string);
        assert!(
            matches!(&msg, Err(m) if m.contains(want)),
            "{what}: {msg:?}"
        );
    }
}

#[test]
fn disruptive_steps_and_descriptions() {
    let add = Step::AddEtcdMember { host: "h5".into() };
    assert!(add.disruptive());
    assert_eq!(add.describe(), "adding etcd member h5");
    let switch = Step::Switchover {
        from: "h1".into(),
        to: "h2".into(),
    };
    assert!(switch.disruptive());
    let replica = Step::AddReplica { host: "h5".into() };
    assert!(!replica.disruptive());
    let gone = Step::RemoveEtcdMember {
        host: "h3".into(),
        id: "a2".into(),
        healthy: false,
    };
    assert_eq!(gone.describe(), "removing etcd member h3 (dead)");
    assert_eq!(quorum(3), 2);
    assert_eq!(quorum(4), 3);
    assert_eq!(quorum(5), 3);
}

#[test]
fn steps_serialize_for_status() {
    let s = Step::RemoveEtcdMember {
        host: "h3".into(),
        id: "a2".into(),
        healthy: true,
    };
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"kind": "removeEtcdMember", "host": "h3", "id": "a2", "healthy": true})
    );
}
