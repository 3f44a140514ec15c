//! A topology change through the operator: a replica leaves the spec (kubectl patch), the
//! operator removes its member, announces each step as an Event, keeps its data; the replica
//! comes back into the spec and streams again from that data.

use std::time::{Duration, Instant};

use super::common::Lab;
use super::k8s::Kube;
use super::operator::{condition, wait_until};

/// The hosts of `status.members`, sorted.
fn member_hosts(kube: &Kube, ns: &str) -> Vec<String> {
    let hosts = kube.jsonpath(ns, "pgc/lab", ".status.members[*].host");
    let mut v: Vec<String> = hosts.split_whitespace().map(String::from).collect();
    v.sort();
    v
}

fn patch_replicas(kube: &Kube, ns: &str, replicas: &[&str]) {
    let patch = serde_json::json!({"spec": {"postgres": {"replicas": replicas}}});
    kube.kubectl(&[
        "-n",
        ns,
        "patch",
        "pgc",
        "lab",
        "--type",
        "merge",
        "-p",
        &patch.to_string(),
    ])
    .expect_ok();
}

/// `primary` leads, `stays` and `leaves` are its replicas; `leaves` leaves the spec and
/// returns.
pub fn a_replica_leaves_and_returns_through_the_spec(
    lab: &Lab,
    kube: &Kube,
    ns: &str,
    (primary, stays, leaves): (&str, &str, &str),
) {
    let t = Instant::now();
    patch_replicas(kube, ns, &[stays]);
    let mut want = vec![primary.to_string(), stays.to_string()];
    want.sort();
    wait_until(
        "the removed replica to leave Patroni's members",
        Duration::from_secs(120),
        || member_hosts(kube, ns) == want && condition(kube, ns, "lab", "Ready").0 == "True",
    );
    eprintln!(
        "TIMING replica removed via the operator: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let steps = kube
        .kubectl(&[
            "-n",
            ns,
            "get",
            "events",
            "-o",
            r#"jsonpath={.items[?(@.reason=="TopologyStep")].message}"#,
        ])
        .expect_ok();
    assert!(
        steps.contains(&format!("step 1/1: removing replica {leaves}")),
        "an Event per step: {steps}"
    );
    let alive = lab.ssh(
        leaves,
        "systemctl is-active --quiet patroni || systemctl is-enabled --quiet patroni",
    );
    assert!(!alive.status.success(), "Patroni still runs on {leaves}");
    lab.ssh_ok(leaves, "test -f /data/pg_data/PG_VERSION");
    assert_eq!(
        kube.jsonpath(ns, "pgc/lab", ".status.plan"),
        "",
        "no plan once the converge is over"
    );

    let t = Instant::now();
    patch_replicas(kube, ns, &[stays, leaves]);
    let mut want = vec![primary.to_string(), stays.to_string(), leaves.to_string()];
    want.sort();
    wait_until(
        "the returning replica to stream again",
        Duration::from_secs(180),
        || {
            member_hosts(kube, ns) == want
                && condition(kube, ns, "lab", "Ready").0 == "True"
                && kube.jsonpath(ns, "pgc/lab", ".status.readyMembers") == "3/3"
        },
    );
    eprintln!(
        "TIMING replica added back via the operator (from its kept data): {:.1}s",
        t.elapsed().as_secs_f64()
    );
}
