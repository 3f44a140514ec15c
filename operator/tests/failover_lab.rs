//! Failover safety with a writer running, in asynchronous and synchronous mode: power cuts of
//! the primary, healed partitions and forced etcd elections. No write that a new primary
//! acknowledged may be lost (none at all in synchronous mode); the old primary must come back
//! as a streaming replica with no person involved (never take the cluster back); restarting the
//! etcd leader must neither lose a write nor move the primary. Reports the client-seen write
//! outage of each power cut. Before the asynchronous mode's cuts, its plain-text cluster moves
//! to TLS under the writer (`sslmode=prefer`), losing and refusing nothing.
//!
//! Per mode: `PGMETAL_CUTS` (default 3) power cuts, `PGMETAL_PARTITIONS` (default 5)
//! partitions, `PGMETAL_ETCD_RESTARTS` (default 1) etcd leader restarts; `PGMETAL_MODES`
//! (default `async,sync`). `e2e/chaos` runs the long version.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Lab;
use common::writer::{Ack, Target, Writer, lost_by_server, outage, spread};
use serde_json::Value;

/// Writes the new primary must acknowledge before the partition is healed.
const ACKS_BEFORE_HEAL: usize = 20;

fn manifest(lab: &Lab, synchronous: bool, tls: &str) -> String {
    let h = &lab.hosts;
    format!(
        r#"{head}  postgres:
    primary: {a}
    replicas: [{b}, {c}]
  patroni:
    synchronousMode: {synchronous}
  etcd:
    hosts: [{a}, {b}, {c}]
  haproxy:
    hosts: [{d}]
  tls:
    mode: {tls}
"#,
        head = lab.manifest_head("{name: partition}"),
        a = h[0],
        b = h[1],
        c = h[2],
        d = h[3]
    )
}

/// Runs `pgmetal VERB -o json` on the manifest; returns the exit code and the JSON document.
fn pgmetal(lab: &Lab, dir: &Path, verb: &str) -> (i32, Value) {
    let (code, doc, _) = lab.pgmetal(verb, dir, &lab.var("LAB_KNOWN_HOSTS"));
    (code, doc)
}

/// Waits until `pgmetal status` reports the cluster healthy; returns the status document.
fn wait_healthy(lab: &Lab, dir: &Path, timeout: Duration) -> Value {
    let t = Instant::now();
    loop {
        let (_, doc) = pgmetal(lab, dir, "status");
        if doc["healthy"] == true {
            return doc["status"].clone();
        }
        assert!(
            t.elapsed() < timeout,
            "cluster not healthy within {timeout:?}: {:#}",
            doc["problems"]
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The PostgreSQL hosts that are not in recovery, asked of each host directly.
fn writable_hosts(lab: &Lab) -> Vec<String> {
    lab.hosts[..3]
        .iter()
        .filter(|h| {
            let o = lab.ssh(
                h,
                "cd / && runuser -u postgres -- psql -XAtc 'select pg_is_in_recovery()'",
            );
            String::from_utf8_lossy(&o.stdout).trim() == "f"
        })
        .cloned()
        .collect()
}

/// The client URL of the etcd leader, asked of the etcd members themselves.
fn etcd_leader(lab: &Lab) -> String {
    let endpoints: Vec<String> = lab.hosts[..3].iter().map(|h| format!("{h}:2379")).collect();
    let out = lab.ssh_ok(
        &lab.hosts[0],
        &common::etcdctl(&endpoints, "endpoint status -w json"),
    );
    let list: Vec<Value> = serde_json::from_str(&out).expect("etcdctl endpoint status JSON");
    list.iter()
        .find(|e| e["Status"]["leader"] == e["Status"]["header"]["member_id"])
        .and_then(|e| e["Endpoint"].as_str())
        .map(|e| {
            e.split_once("://")
                .map_or(e, |(_, rest)| rest)
                .trim_end_matches(":2379")
                .to_string()
        })
        .unwrap_or_else(|| panic!("no etcd leader in {out}"))
}

/// What the surviving hosts say, for a failure message: `pgmetal status`, Patroni's view and
/// log, and etcd's endpoints.
fn diagnostics(lab: &Lab, dir: &Path, down: &str) -> String {
    let (_, status) = pgmetal(lab, dir, "status");
    let mut out = format!("pgmetal status: {status:#}\n");
    for h in lab.hosts[..3].iter().filter(|h| *h != down) {
        let o = lab.ssh(
            h,
            &format!(
                "journalctl -u patroni --no-pager -n 40; {} 2>&1 | tail -5",
                common::etcdctl(&[format!("{h}:2379")], "endpoint status --cluster -w table")
            ),
        );
        out.push_str(&format!(
            "--- {h}\n{:#?}\n{}{}\n",
            lab.patroni_get(h, "/cluster"),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    out
}

/// A power cut of the primary, as recorded for the verdict and the report.
struct Cut {
    old_primary: String,
    cut_at: Duration,
    /// Client-seen write outage (see [`outage`]).
    outage_secs: f64,
    /// From the cut until the old primary streamed again as a replica.
    rejoin_secs: f64,
}

/// Power-cuts the primary's host, waits until a new primary acknowledges writes, starts the old
/// host again and waits until it streams as a replica of the new primary (pg_rewind or a
/// reinit, by Patroni alone).
fn power_cut_round(lab: &Lab, dir: &Path, writer: &Writer, n: usize) -> Cut {
    let status = wait_healthy(lab, dir, Duration::from_secs(180));
    let old = status["primary"].as_str().expect("a primary").to_string();
    let before = writer.acks().len();
    writer.wait_for("writes before the cut", Duration::from_secs(30), |a| {
        a.len() >= before + 5
    });
    let cut_at = writer.now();
    let t = Instant::now();
    common::lab_verb("kill", &old);
    if let Err(e) = writer.try_wait_for(
        &format!("cut {n}: a new primary acknowledging writes after {old} lost power"),
        Duration::from_secs(120),
        |a| a.iter().any(|x| x.at > cut_at && x.server != old),
    ) {
        panic!("{e}\n{}", diagnostics(lab, dir, &old));
    }
    common::lab_verb("start", &old);
    let status = wait_healthy(lab, dir, Duration::from_secs(240));
    let rejoin_secs = t.elapsed().as_secs_f64();
    let member = status["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["host"] == old.as_str()))
        .cloned()
        .unwrap_or_default();
    assert!(
        member["role"] != "leader" && status["primary"] != old.as_str(),
        "cut {n}: {old} took the primary back: {status:#}"
    );
    let outage_secs = outage(&writer.acks(), &writer.failure_times(), cut_at)
        .expect("the cut interrupted writes");
    let writable = writable_hosts(lab);
    assert_eq!(writable.len(), 1, "cut {n}: writable hosts {writable:?}");
    eprintln!(
        "CUT {n}: {old} lost power; writes unavailable {outage_secs:.1}s; {old} streaming again {rejoin_secs:.1}s after the cut ({})",
        member["state"]
    );
    Cut {
        old_primary: old,
        cut_at,
        outage_secs,
        rejoin_secs,
    }
}

/// One healed partition, as recorded for the verdict and the report.
struct Round {
    old_primary: String,
    new_primary: String,
    partitioned_at: Duration,
    failover_secs: f64,
    /// Seconds until `pgmetal status` named the partitioned host as a problem.
    degraded_secs: f64,
    flipped_back: bool,
}

/// Partitions the current primary until a new primary has acknowledged writes, heals it, and
/// waits until the cluster is healthy again.
fn partition_round(lab: &Lab, dir: &Path, writer: &Writer, n: usize) -> Round {
    let status = wait_healthy(lab, dir, Duration::from_secs(120));
    let old = status["primary"].as_str().expect("a primary").to_string();
    let before = writer.acks().len();
    writer.wait_for(
        "writes before the partition",
        Duration::from_secs(30),
        |a| a.len() >= before + 5,
    );
    let partitioned_at = writer.acks().last().unwrap().at;
    let t = Instant::now();
    common::lab_verb("partition", &old);
    let degraded_secs = named_as_a_problem(lab, dir, &old, t);
    let new_acks = |a: &[Ack]| {
        a.iter()
            .filter(|x| x.at > partitioned_at && x.server != old)
            .count()
    };
    writer.wait_for(
        &format!("round {n}: a new primary acknowledging writes while {old} is partitioned"),
        Duration::from_secs(120),
        |a| new_acks(a) >= 1,
    );
    let failover_secs = t.elapsed().as_secs_f64();
    writer.wait_for(
        "more writes on the new primary",
        Duration::from_secs(60),
        |a| new_acks(a) >= ACKS_BEFORE_HEAL,
    );
    let new = writer.acks().last().unwrap().server.clone();
    common::lab_verb("heal", &old);
    let healed_at = writer.acks().last().unwrap().at;
    // The reported failure: the old primary takes the leader role back within seconds of heal.
    std::thread::sleep(Duration::from_secs(15));
    wait_healthy(lab, dir, Duration::from_secs(120));
    let flipped_back = writer
        .acks()
        .iter()
        .any(|a| a.at > healed_at && a.server == old);
    let writable = writable_hosts(lab);
    assert_eq!(writable.len(), 1, "round {n}: writable hosts {writable:?}");
    eprintln!(
        "ROUND {n}: partitioned {old}; named as a problem {degraded_secs:.1}s later; \
         {new} acknowledged writes {failover_secs:.1}s later; \
         flipped back to {old} after heal: {flipped_back}; writable now: {writable:?}"
    );
    Round {
        old_primary: old,
        new_primary: new,
        partitioned_at,
        failover_secs,
        degraded_secs,
        flipped_back,
    }
}

/// Polls `pgmetal status` until one of its problems (what the operator's `Degraded` says)
/// names `host`; asserts that this takes at most 30 s from `since`. Returns the seconds.
fn named_as_a_problem(lab: &Lab, dir: &Path, host: &str, since: Instant) -> f64 {
    loop {
        let (_, doc) = pgmetal(lab, dir, "status");
        let problems = doc["problems"].as_array().cloned().unwrap_or_default();
        let secs = since.elapsed().as_secs_f64();
        if problems
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.contains(host)))
        {
            return secs;
        }
        assert!(
            secs <= 30.0,
            "{host} partitioned {secs:.0}s ago and no problem names it: {problems:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Restarts etcd on the etcd leader's host while the writer runs: the primary must not move.
fn etcd_leader_restart(lab: &Lab, dir: &Path, writer: &Writer, n: usize) {
    let primary = wait_healthy(lab, dir, Duration::from_secs(120))["primary"]
        .as_str()
        .unwrap()
        .to_string();
    let leader = etcd_leader(lab);
    let from = writer.acks().len();
    lab.ssh_ok(&leader, "systemctl restart etcd");
    std::thread::sleep(Duration::from_secs(10));
    let status = wait_healthy(lab, dir, Duration::from_secs(60));
    let acks = writer.acks();
    let moved: Vec<&Ack> = acks[from..]
        .iter()
        .filter(|a| a.server != primary)
        .collect();
    eprintln!(
        "ETCD RESTART {n}: leader on {leader}, primary {primary}, {} writes acknowledged meanwhile",
        acks.len() - from
    );
    assert!(
        moved.is_empty() && status["primary"] == primary.as_str(),
        "restarting the etcd leader on {leader} moved the primary from {primary}: {:?}",
        moved.first()
    );
}

/// A plain-text cluster moves to TLS by a spec change while the writer runs with libpq's
/// default `sslmode=prefer`: its writes go on (the outage bound is generous; a reload is
/// expected to cost none), the acknowledged ones are counted with the rest at the end, and its
/// new connections are encrypted.
fn tls_under_the_writer(lab: &Lab, dir: &Path, writer: &Writer) {
    writer.wait_for("writes in plain text", Duration::from_secs(30), |a| {
        a.len() >= 5
    });
    let (at, t) = (writer.now(), Instant::now());
    std::fs::write(dir.join("cluster.yaml"), manifest(lab, false, "Managed")).unwrap();
    let (code, report) = pgmetal(lab, dir, "apply");
    assert_eq!(code, 0, "apply with TLS: {:#}", report["problems"]);
    let applied = t.elapsed().as_secs_f64();
    // Patroni's REST API moved to HTTPS too, with HAProxy checking both schemes meanwhile.
    let both = report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["phase"] == "haproxy (REST checks in both schemes)");
    assert!(both, "{:#}", report["phases"]);
    let m = &lab.hosts[0];
    let https = lab.ssh_ok(
        m,
        &format!("python3 -c \"import ssl,urllib.request as u; print(u.urlopen('https://{m}:8008/patroni', context=ssl.create_default_context(cafile='/etc/pgmetal/tls/ca.crt')).status)\""),
    );
    assert_eq!(https, "200", "the REST API on {m} serves HTTPS");
    let n = writer.acks().len();
    writer.wait_for("writes after TLS", Duration::from_secs(30), |a| {
        a.len() >= n + 5
    });
    let t = &writer.target;
    let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let ssl = common::psql(&t.host, t.port, &t.password, sql);
    assert_eq!(
        ssl.as_deref(),
        Ok("t"),
        "a new connection through HAProxy uses TLS"
    );
    let outage = outage(&writer.acks(), &writer.failure_times(), at).unwrap_or(0.0);
    let failed = writer.failure_times().iter().filter(|f| **f > at).count();
    eprintln!(
        "TLS MIGRATION under the writer: apply {applied:.1}s, {failed} failed attempts, write outage {outage:.1}s"
    );
    assert!(
        outage < 10.0,
        "writes stopped for {outage:.1}s while TLS came on"
    );
}

/// One mode: partitions, then etcd leader restarts, then the count of lost writes.
fn run_mode(lab: &Lab, dir: &Path, synchronous: bool, first_id: u64) -> String {
    let mode = if synchronous {
        "synchronous"
    } else {
        "asynchronous"
    };
    // The first mode's cluster starts in plain text and moves to TLS under the writer.
    let tls = if synchronous { "Managed" } else { "Disabled" };
    std::fs::write(dir.join("cluster.yaml"), manifest(lab, synchronous, tls)).unwrap();
    let (code, report) = pgmetal(lab, dir, "apply");
    assert_eq!(code, 0, "apply ({mode}): {:#}", report["problems"]);
    let secrets: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("secrets.yaml")).unwrap())
            .unwrap();
    let target = Target {
        host: lab.hosts[3].clone(),
        port: 5000,
        password: secrets["superuser"].as_str().unwrap().to_string(),
    };
    Writer::create_table(&target);
    let writer = Writer::start(target.clone(), first_id);
    if !synchronous {
        tls_under_the_writer(lab, dir, &writer);
    }
    let cuts: Vec<Cut> = (1..=count("PGMETAL_CUTS", 3))
        .map(|n| power_cut_round(lab, dir, &writer, n))
        .collect();
    let rounds: Vec<Round> = (1..=count("PGMETAL_PARTITIONS", 5))
        .map(|n| partition_round(lab, dir, &writer, n))
        .collect();
    for n in 1..=count("PGMETAL_ETCD_RESTARTS", 1) {
        etcd_leader_restart(lab, dir, &writer, n);
    }
    let failures = writer.failures();
    let acks = writer.stop();
    wait_healthy(lab, dir, Duration::from_secs(120));
    let stored: BTreeSet<u64> = target.stored_ids().expect("read the ids back");
    let lost = lost_by_server(&acks, &stored);
    // A lost write is the old primary's tail when that host was cut off or partitioned after
    // acknowledging it (asynchronous replication may lose those, within maximum_lag_on_failover).
    let mut disruptions: Vec<(Duration, &str)> = cuts
        .iter()
        .map(|c| (c.cut_at, c.old_primary.as_str()))
        .chain(
            rounds
                .iter()
                .map(|r| (r.partitioned_at, r.old_primary.as_str())),
        )
        .collect();
    disruptions.sort();
    let (mut tail, mut bug) = (0usize, Vec::new());
    for a in acks.iter().filter(|a| !stored.contains(&a.id)) {
        let next = disruptions.iter().find(|(at, _)| *at >= a.at);
        match next {
            Some((_, old)) if *old == a.server && !synchronous => tail += 1,
            _ => bug.push(a.clone()),
        }
    }
    let flips = rounds.iter().filter(|r| r.flipped_back).count();
    let failover: Vec<String> = rounds
        .iter()
        .map(|r| format!("{:.1}", r.failover_secs))
        .collect();
    let named: Vec<f64> = rounds.iter().map(|r| r.degraded_secs).collect();
    let outages: Vec<f64> = cuts.iter().map(|c| c.outage_secs).collect();
    let rejoins: Vec<f64> = cuts.iter().map(|c| c.rejoin_secs).collect();
    let summary = format!(
        "{mode}: {} power cuts, write outage s min/median/max {}, old primary streaming again s {}; \
         {} partitions, {flips} flipped back, failover s [{}], host named as a problem s {}, {} acknowledged, {} failed attempts, \
         lost {} (old primary's tail {tail}, acknowledged by a new primary or in synchronous mode {}); lost by server {:?}",
        cuts.len(),
        spread(&outages),
        spread(&rejoins),
        rounds.len(),
        failover.join(", "),
        spread(&named),
        acks.len(),
        failures,
        acks.len() - acks.iter().filter(|a| stored.contains(&a.id)).count(),
        bug.len(),
        lost.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
    );
    eprintln!("SUMMARY {summary}");
    assert!(
        bug.is_empty() && flips == 0,
        "{summary}; first lost write: {:?}; rounds: {:?}",
        bug.first(),
        rounds
            .iter()
            .map(|r| format!("{}→{}", r.old_primary, r.new_primary))
            .collect::<Vec<_>>()
    );
    summary
}

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{var}={v}: not a count"))
        })
        .unwrap_or(default)
}

#[test]
#[ignore = "needs the lab (4 hosts); e2e/test runs it"]
fn power_cuts_partitions_and_etcd_elections_lose_no_acknowledged_write() {
    let lab = Lab::require(4);
    let dir = tempfile::tempdir().unwrap();
    let modes = std::env::var("PGMETAL_MODES").unwrap_or_else(|_| "async,sync".into());
    let results: Vec<String> = modes
        .split(',')
        .enumerate()
        .map(|(i, m)| {
            let synchronous = match m {
                "async" => false,
                "sync" => true,
                other => panic!("PGMETAL_MODES: unknown mode {other} (async, sync)"),
            };
            run_mode(&lab, dir.path(), synchronous, 1 + 10_000_000 * i as u64)
        })
        .collect();
    eprintln!("RESULT\n  {}", results.join("\n  "));
}
