//! Day-2 topology on 6 real lab hosts with `pgmetal plan` and `pgmetal apply`: from 3
//! PostgreSQL+etcd hosts and 1 HAProxy host, add a replica, move an etcd member, remove a
//! replica (its host leaves the cluster), move the HAProxy host, then power-cut a replica, replace it in both lists
//! while it is down, and start it again: it must rejoin nothing. After each apply the etcd
//! member list and Patroni's `/cluster` equal the spec, and a row written first reads back at
//! the end through both HAProxy ports. Then annotations ask for a rolling restart and a
//! replica's reinit, each carried out once.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Lab, psql};
use serde_json::Value;

const PASSWORD: &str = "topology-su";

/// The cluster: `pg[0]` the primary, the rest replicas; etcd on `etcd`; HAProxy on `lb`.
fn manifest(lab: &Lab, pg: &[&str], etcd: &[&str], lb: &str) -> String {
    annotated(lab, (pg, etcd, lb), "{}")
}

/// [`manifest`] with `annotations` (a YAML flow map).
fn annotated(lab: &Lab, (pg, etcd, lb): (&[&str], &[&str], &str), annotations: &str) -> String {
    format!(
        r#"{head}  postgres:
    primary: {primary}
    replicas: [{replicas}]
  patroni:
    ttl: 20
    loopWait: 5
    retryTimeout: 5
  etcd:
    hosts: [{etcd}]
  haproxy:
    hosts: [{lb}]
"#,
        head = lab.manifest_head(&format!("{{name: topology, annotations: {annotations}}}")),
        primary = pg[0],
        replicas = pg[1..].join(", "),
        etcd = etcd.join(", "),
    )
}

/// `pgmetal VERB` on `yaml`: the exit code and the JSON it printed.
fn pgmetal(lab: &Lab, dir: &Path, verb: &str, yaml: &str) -> (i32, Value) {
    std::fs::write(dir.join("cluster.yaml"), yaml).unwrap();
    let (code, doc, _) = lab.pgmetal(verb, dir, &lab.var("LAB_KNOWN_HOSTS"));
    (code, doc)
}

/// The plan's step descriptions.
fn plan(lab: &Lab, dir: &Path, yaml: &str) -> Vec<String> {
    let (code, doc) = pgmetal(lab, dir, "plan", yaml);
    assert_eq!(code, 0, "plan refused: {doc:#}");
    let steps = doc["steps"].as_array().cloned().unwrap_or_default();
    steps.iter().map(describe).collect()
}

/// A step as `kind host` (e.g. `addEtcdMember 10.0.0.15`).
fn describe(step: &Value) -> String {
    let host = step["host"]
        .as_str()
        .or(step["from"].as_str())
        .unwrap_or("");
    format!("{} {host}", step["kind"].as_str().unwrap_or("?"))
}

/// Applies `yaml`, which must end healthy; returns the report and prints the step timings.
fn apply(lab: &Lab, dir: &Path, what: &str, yaml: &str) -> Value {
    let t = Instant::now();
    let (code, report) = pgmetal(lab, dir, "apply", yaml);
    assert_eq!(code, 0, "{what}: {:#}", report["problems"]);
    let phases: Vec<String> = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["phase"].as_str().unwrap().starts_with("step "))
        .map(|p| {
            let secs = p["duration_ms"].as_f64().unwrap() / 1000.0;
            format!("{} {secs:.1}s", p["phase"].as_str().unwrap())
        })
        .collect();
    println!(
        "TIMING {what}: {:.1}s, changed {}; {}",
        t.elapsed().as_secs_f64(),
        report["changed"],
        phases.join("; ")
    );
    report
}

/// The hosts of etcd's members, asked through `via`.
fn etcd_members(lab: &Lab, via: &str) -> BTreeSet<String> {
    let out = lab.ssh_ok(
        via,
        &common::etcdctl(&["127.0.0.1:2379".into()], "member list -w json"),
    );
    let list: Value = serde_json::from_str(&out).unwrap();
    let members = list["members"].as_array().cloned().unwrap_or_default();
    members
        .iter()
        .map(|m| {
            let url = m["peerURLs"][0].as_str().unwrap();
            let host = url
                .split_once("://")
                .map_or(url, |(_, rest)| rest)
                .rsplit_once(':')
                .unwrap()
                .0;
            host.to_string()
        })
        .collect()
}

/// The hosts of Patroni's members, from `/cluster` on `via`.
fn patroni_members(lab: &Lab, via: &str) -> BTreeSet<String> {
    let view = lab.patroni_get(via, "/cluster").unwrap_or_default();
    let members = view["members"].as_array().cloned().unwrap_or_default();
    members
        .iter()
        .filter_map(|m| m["host"].as_str().map(String::from))
        .collect()
}

fn set(hosts: &[&str]) -> BTreeSet<String> {
    hosts.iter().map(|h| h.to_string()).collect()
}

/// Whether `unit` is active or enabled on `host`.
fn unit_alive(lab: &Lab, host: &str, unit: &str) -> bool {
    let o = lab.ssh(
        host,
        &format!("systemctl is-active --quiet {unit} || systemctl is-enabled --quiet {unit}"),
    );
    o.status.success()
}

/// After an apply: etcd's members and Patroni's equal the spec.
fn assert_topology(lab: &Lab, what: &str, pg: &[&str], etcd: &[&str]) {
    assert_eq!(
        etcd_members(lab, etcd[0]),
        set(etcd),
        "{what}: etcd members"
    );
    assert_eq!(
        patroni_members(lab, pg[0]),
        set(pg),
        "{what}: Patroni members"
    );
}

#[test]
#[ignore = "needs the lab (6 hosts); e2e/test runs it"]
fn topology_changes_keep_quorum_and_data_and_a_replaced_host_rejoins_nothing() {
    let lab = Lab::require(6);
    let h: Vec<&str> = lab.hosts.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let secrets = format!(
        "superuser: {PASSWORD}\nreplication: topo-rep\nrewind: topo-rw\nrestapi: topo-api\n"
    );
    std::fs::write(dir.join("secrets.yaml"), secrets).unwrap();
    let mut lb = h[3];

    // 0. Three PostgreSQL + etcd hosts and one HAProxy host; a row to find at the end.
    let (pg, etcd) = (vec![h[0], h[1], h[2]], vec![h[0], h[1], h[2]]);
    apply(&lab, dir, "cold converge", &manifest(&lab, &pg, &etcd, lb));
    psql(
        lb,
        5000,
        PASSWORD,
        "CREATE TABLE topology (v text); INSERT INTO topology VALUES ('written first')",
    )
    .unwrap();

    // 1. A replica is added.
    let pg = vec![h[0], h[1], h[2], h[4]];
    let yaml = manifest(&lab, &pg, &etcd, lb);
    assert_eq!(plan(&lab, dir, &yaml), [format!("addReplica {}", h[4])]);
    apply(&lab, dir, "add a replica", &yaml);
    assert_topology(&lab, "add a replica", &pg, &etcd);

    // 2. An etcd member moves from h2 to h4: the new one joins first.
    let etcd = vec![h[0], h[1], h[4]];
    let yaml = manifest(&lab, &pg, &etcd, lb);
    assert_eq!(
        plan(&lab, dir, &yaml),
        [
            format!("addEtcdMember {}", h[4]),
            format!("removeEtcdMember {}", h[2])
        ]
    );
    let etcd_pids: Vec<String> = [h[0], h[1]]
        .iter()
        .map(|x| lab.ssh_ok(x, "systemctl show -p MainPID --value etcd"))
        .collect();
    let report = apply(&lab, dir, "move an etcd member", &yaml);
    assert_topology(&lab, "move an etcd member", &pg, &etcd);
    assert!(
        !unit_alive(&lab, h[2], "etcd"),
        "etcd still runs on {}",
        h[2]
    );
    let left = lab.ssh_ok(h[2], "ls /var/lib/etcd/default.etcd 2>/dev/null | wc -l");
    assert_eq!(
        left, "0",
        "the removed member's data is deleted on {}",
        h[2]
    );
    let after: Vec<String> = [h[0], h[1]]
        .iter()
        .map(|x| lab.ssh_ok(x, "systemctl show -p MainPID --value etcd"))
        .collect();
    assert_eq!(
        etcd_pids, after,
        "a membership change restarts no running member"
    );
    assert!(report["plan"].as_array().is_some_and(|p| p.len() == 2));

    // 3. A replica is removed; its host leaves the cluster. Its data directory stays.
    let pg = vec![h[0], h[1], h[4]];
    let yaml = manifest(&lab, &pg, &etcd, lb);
    assert_eq!(
        plan(&lab, dir, &yaml),
        [
            format!("removeReplica {}", h[2]),
            format!("decommission {}", h[2])
        ]
    );
    let report = apply(&lab, dir, "remove a replica", &yaml);
    assert_topology(&lab, "remove a replica", &pg, &etcd);
    assert!(!unit_alive(&lab, h[2], "patroni"));
    lab.ssh_ok(h[2], "test -f /data/pg_data/PG_VERSION");
    assert_eq!(
        lab.ssh(h[2], "test -e /var/lib/pgmetal/claim")
            .status
            .code(),
        Some(1),
        "the claim on {} is released",
        h[2]
    );
    assert_eq!(report["released"], serde_json::json!([h[2]]));

    // 3b. The HAProxy host moves to the host the replica left; the old one is decommissioned.
    let old_lb = lb;
    lb = h[2];
    let yaml = manifest(&lab, &pg, &etcd, lb);
    assert_eq!(plan(&lab, dir, &yaml), [format!("decommission {old_lb}")]);
    let report = apply(&lab, dir, "move the HAProxy host", &yaml);
    assert!(
        !unit_alive(&lab, old_lb, "haproxy"),
        "HAProxy still runs on {old_lb}"
    );
    assert_eq!(report["released"], serde_json::json!([old_lb]));
    let routed = psql(lb, 5000, PASSWORD, "SELECT v FROM topology");
    assert_eq!(
        routed.as_deref(),
        Ok("written first"),
        "through the new HAProxy host"
    );

    // 4. A replica in both lists loses power and is replaced while it is down.
    let dead = h[1];
    common::lab_verb("kill", dead);
    let (pg, etcd) = (vec![h[0], h[5], h[4]], vec![h[0], h[5], h[4]]);
    let yaml = manifest(&lab, &pg, &etcd, lb);
    // Its Patroni member leaves by itself when its key's TTL runs out; until then the plan
    // also removes it.
    let mut steps = plan(&lab, dir, &yaml);
    steps.retain(|s| *s != format!("removeReplica {dead}"));
    assert_eq!(
        steps,
        [
            format!("removeEtcdMember {dead}"),
            format!("addEtcdMember {}", h[5]),
            format!("addReplica {}", h[5]),
            format!("decommission {dead}"),
        ]
    );
    let report = apply(&lab, dir, "replace a dead host", &yaml);
    assert_topology(&lab, "replace a dead host", &pg, &etcd);
    let notes = report["notes"].to_string();
    assert!(notes.contains(dead), "the dead host is noted: {notes}");

    // 5. The dead host starts again: etcd refuses its member; its Patroni is stopped by the
    //    next apply, and nothing of it stays a member.
    common::lab_verb("start", dead);
    let back = Instant::now();
    let mut patroni_back = None;
    while back.elapsed() < Duration::from_secs(30) {
        assert_eq!(
            etcd_members(&lab, h[0]),
            set(&etcd),
            "etcd took the removed member back"
        );
        if patroni_back.is_none() && patroni_members(&lab, h[0]).contains(dead) {
            patroni_back = Some(back.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    println!(
        "TIMING the returned host's Patroni registered after {patroni_back:?} s (until the next apply)"
    );
    let report = apply(&lab, dir, "after the dead host returned", &yaml);
    assert_topology(&lab, "after the dead host returned", &pg, &etcd);
    for unit in ["patroni", "etcd"] {
        assert!(!unit_alive(&lab, dead, unit), "{unit} still runs on {dead}");
    }
    assert_eq!(report["released"], serde_json::json!([dead]));
    std::thread::sleep(Duration::from_secs(10));
    assert_topology(&lab, "10 s later", &pg, &etcd);

    // 6. Declarative member operations: a rolling restart, then a replica's reinit.
    let pids = |hosts: &[&str]| -> Vec<String> {
        let pid = "head -1 /data/pg_data/postmaster.pid";
        hosts.iter().map(|x| lab.ssh_ok(x, pid)).collect()
    };
    let before = pids(&pg);
    let restart = r#"{pgmetal.io/restart-at: "2026-11-29T22:30:00Z"}"#;
    let yaml = annotated(&lab, (&pg, &etcd, lb), restart);
    let report = apply(&lab, dir, "rolling restart", &yaml);
    let after = pids(&pg);
    for (i, x) in pg.iter().enumerate() {
        assert_ne!(before[i], after[i], "PostgreSQL on {x} restarted");
    }
    assert_eq!(
        report["status"]["primary"], pg[0],
        "the primary is back on the preferred host"
    );
    assert_eq!(report["requests"]["restartAt"], "2026-11-29T22:30:00Z");
    lab.ssh_ok(pg[1], "touch /data/pg_data/pgmetal-reinit-marker");
    let both = format!(
        r#"{{pgmetal.io/restart-at: "2026-11-29T22:30:00Z", pgmetal.io/reinit: "{}"}}"#,
        pg[1]
    );
    let yaml = annotated(&lab, (&pg, &etcd, lb), &both);
    let report = apply(&lab, dir, "reinit a replica", &yaml);
    assert_eq!(report["requests"]["reinit"], pg[1]);
    assert_eq!(
        after,
        {
            let mut again = pids(&pg);
            again[1] = after[1].clone();
            again
        },
        "the restart is not repeated"
    );
    let marker = lab.ssh(pg[1], "test -e /data/pg_data/pgmetal-reinit-marker");
    assert_eq!(marker.status.code(), Some(1), "{} has new data", pg[1]);

    // The first row, through both HAProxy ports; then nothing is left to do.
    for port in [5000, 5001] {
        let got = psql(lb, port, PASSWORD, "SELECT v FROM topology");
        assert_eq!(got.as_deref(), Ok("written first"), "port {port}");
    }
    let last = apply(&lab, dir, "final", &yaml);
    assert_eq!(last["changed"], 0, "{:#}", last["hosts"]);
    assert_eq!(plan(&lab, dir, &yaml), Vec::<String>::new());
}
