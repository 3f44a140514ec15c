//! The operator is killed (SIGKILL) at random moments during a cold converge, and again while a
//! replica is added, and restarted each time, as a crash-looping pod would be. The cluster must
//! end Ready with exactly one history: every member reports the same PostgreSQL system
//! identifier (there was never a second initdb), the one in status, and every etcd member
//! reports the same cluster ID, before and after the topology change. Its deletion
//! (`deletionPolicy: Wipe`) then deletes exactly the data proven to be its own.
//!
//! `PGMETAL_OPERATOR_KILLS` (default 5) kills per phase, each 0.5–12 s after a start;
//! `PGMETAL_SEED` replays the moments of an earlier run (each run prints its seed).
//! `e2e/chaos` runs 20 per phase.
//! Ignored by a plain `cargo test`: e2e/test runs it with PGMETAL_LAB=1, PGMETAL_K8S=1.

mod common;
#[path = "common/k8s.rs"]
mod k8s;
#[path = "common/operator.rs"]
mod operator;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Lab;
use k8s::Kube;
use operator::{Operator, condition, lab_namespace, wait_until};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The longest an operator lives before it is killed. Each restart resumes the converge where
/// the hosts stand, so lives shorter than a cold converge (about a minute) keep landing in it:
/// in the lease, package installs, etcd, bootstrap and replicas. (With up to 30 s, 5 of 20
/// kills landed in the cold converge and 2 of 20 in a replica's join; the rest hit a cluster
/// already converged.)
const MAX_LIFE_MS: u64 = 12_000;

fn manifest(lab: &Lab, replicas: &[&str]) -> String {
    let h = &lab.hosts;
    format!(
        r#"apiVersion: pgmetal.io/v1alpha1
kind: PostgresCluster
metadata: {{name: kills}}
spec:
  ssh:
    privateKeySecret: {{name: lab-ssh, key: ssh-privatekey}}
    knownHostsSecret: {{name: lab-ssh, key: known_hosts}}
  packages:
    repository: {{apt: "{apt}"}}
    patroni: {{indexUrl: "{pip}"}}
  postgres:
    primary: {a}
    replicas: [{replicas}]
  etcd:
    hosts: [{a}, {b}, {c}]
  haproxy:
    hosts: [{d}]
  deletionPolicy: Wipe
"#,
        apt = lab.var("LAB_APT_REPO"),
        pip = lab.var("LAB_PIP_INDEX"),
        replicas = replicas.join(", "),
        a = h[0],
        b = h[1],
        c = h[2],
        d = h[3]
    )
}

/// Starts and SIGKILLs the operator `kills` times, each after a random lifetime; the last
/// operator is left running and returned.
fn kill_repeatedly(
    (kube, identity): (&Kube, &Path),
    ns: &str,
    log: &Path,
    kills: usize,
    rng: &mut StdRng,
) -> Operator {
    let mut converging = 0;
    for n in 1..=kills {
        let op = Operator::start(identity, ns, log.to_path_buf());
        let life = rng.random_range(500..MAX_LIFE_MS);
        std::thread::sleep(Duration::from_millis(life));
        // What it was doing: the converge's phase, as Progressing announces it.
        let (_, _, doing) = condition(kube, ns, "kills", "Progressing");
        drop(op);
        converging += usize::from(doing.starts_with("converging"));
        eprintln!(
            "KILL {n}: after {:.1}s, during: {doing}",
            life as f64 / 1000.0
        );
    }
    eprintln!(
        "KILLS: {converging} of {kills} while a converge ran, the rest on a converged cluster"
    );
    Operator::start(identity, ns, log.to_path_buf())
}

/// Waits until the current generation is Ready; returns the seconds it took.
fn wait_ready(kube: &Kube, ns: &str, what: &str) -> f64 {
    wait_until(what, Duration::from_secs(420), || {
        let generation = kube.jsonpath(ns, "pgc/kills", ".metadata.generation");
        let observed = kube.jsonpath(ns, "pgc/kills", ".status.observedGeneration");
        generation == observed && condition(kube, ns, "kills", "Ready").0 == "True"
    })
}

/// The one PostgreSQL system identifier all `members` report, which status records too.
fn one_system(lab: &Lab, kube: &Kube, ns: &str, members: &[&str]) -> String {
    let ids: BTreeSet<String> = members
        .iter()
        .map(|h| {
            let control = lab.ssh_ok(
                h,
                "/usr/lib/postgresql/15/bin/pg_controldata -D /data/pg_data",
            );
            control
                .lines()
                .find_map(|l| l.strip_prefix("Database system identifier:"))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("{h}: no system identifier:\n{control}"))
        })
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "more than one initdb: system identifiers {ids:?}"
    );
    let id = ids.into_iter().next().unwrap();
    let recorded = kube.jsonpath(ns, "pgc/kills", ".status.systemIdentifier");
    assert_eq!(recorded, id, "status.systemIdentifier");
    id
}

/// The one etcd cluster ID that every etcd member reports for itself.
fn one_etcd_cluster(lab: &Lab) -> u64 {
    let ids: BTreeSet<u64> = lab.hosts[..3]
        .iter()
        .map(|h| {
            let out = lab.ssh_ok(
                h,
                &common::etcdctl(&[format!("{h}:2379")], "endpoint status -w json"),
            );
            let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl JSON");
            v[0]["Status"]["header"]["cluster_id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{h}: no cluster_id in {out}"))
        })
        .collect();
    assert_eq!(ids.len(), 1, "more than one etcd cluster: {ids:?}");
    ids.into_iter().next().unwrap()
}

#[test]
#[ignore = "needs the lab (4 fresh hosts) and the API server; e2e/test runs it"]
fn killed_operator_always_converges_to_one_cluster() {
    let lab = Lab::require(4);
    let kube = Kube::require();
    let kills: usize = std::env::var("PGMETAL_OPERATOR_KILLS")
        .map(|v| v.parse().expect("PGMETAL_OPERATOR_KILLS: a count"))
        .unwrap_or(5);
    let seed: u64 = std::env::var("PGMETAL_SEED")
        .map(|v| v.parse().expect("PGMETAL_SEED: a number"))
        .unwrap_or_else(|_| rand::random());
    eprintln!("SEED {seed} (PGMETAL_SEED={seed} replays these moments)");
    let mut rng = StdRng::seed_from_u64(seed);
    let ns = format!("pgmetal-kills-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("operator.log");
    let identity = lab_namespace(&kube, &lab, &ns, dir.path());
    let (a, b, c) = (&lab.hosts[0], &lab.hosts[1], &lab.hosts[2]);
    let apply = |replicas: &[&str]| {
        kube.run(
            &["-n", &ns, "apply", "-f", "-"],
            Some(&manifest(&lab, replicas)),
        )
        .expect_ok()
    };

    // 1. Cold converge of a primary and one replica on bare hosts.
    let t = Instant::now();
    apply(&[b]);
    let op = kill_repeatedly((&kube, &identity), &ns, &log, kills, &mut rng);
    let ready = wait_ready(&kube, &ns, "Ready after the kills of the cold converge");
    eprintln!(
        "TIMING cold converge with {kills} kills: Ready {:.1}s after apply ({ready:.1}s after the last restart)",
        t.elapsed().as_secs_f64()
    );
    let system = one_system(&lab, &kube, &ns, &[a, b]);
    let etcd = one_etcd_cluster(&lab);
    drop(op);

    // 2. A topology change: a second replica joins.
    let t = Instant::now();
    apply(&[b, c]);
    let op = kill_repeatedly((&kube, &identity), &ns, &log, kills, &mut rng);
    let ready = wait_ready(&kube, &ns, "Ready after the kills of the replica's join");
    eprintln!(
        "TIMING replica added with {kills} kills: Ready {:.1}s after apply ({ready:.1}s after the last restart)",
        t.elapsed().as_secs_f64()
    );
    let members = kube.jsonpath(&ns, "pgc/kills", ".status.members[*].host");
    assert!(members.contains(c.as_str()), "{c} not a member: {members}");
    assert_eq!(one_system(&lab, &kube, &ns, &[a, b, c]), system);
    assert_eq!(
        one_etcd_cluster(&lab),
        etcd,
        "the etcd cluster was replaced"
    );
    // Patroni logs this each time it runs a bootstrap (initdb) for a cluster it found uninitialised.
    let bootstraps: u32 = lab.hosts[..3]
        .iter()
        .map(|h| {
            let n = lab.ssh_ok(
                h,
                "journalctl -u patroni --no-pager | grep -c 'trying to bootstrap a new cluster' || true",
            );
            n.trim().parse::<u32>().unwrap_or(0)
        })
        .sum();
    assert_eq!(bootstraps, 1, "Patroni bootstrapped {bootstraps} times");

    // 3. Deletion with Wipe deletes the data directories, each proven to be this cluster's:
    //    PostgreSQL's by the system identifier, etcd's by the cluster ID its member reports.
    assert_eq!(
        kube.jsonpath(&ns, "pgc/kills", ".status.etcdClusterId"),
        format!("{etcd:x}"),
        "status.etcdClusterId"
    );
    let t = Instant::now();
    kube.kubectl(&["-n", &ns, "delete", "pgc/kills", "--timeout=120s"])
        .expect_ok();
    eprintln!("TIMING delete with Wipe: {:.1}s", t.elapsed().as_secs_f64());
    for h in [a, b, c] {
        let left = lab.ssh_ok(
            h,
            "for d in /data/pg_data /var/lib/etcd/default.etcd; do [ -e $d ] && echo $d; done; true",
        );
        assert_eq!(left, "", "{h}: Wipe left data directories");
    }
    drop(op);
}
