//! Backups to a real S3-compatible server (versitygw, built from its Go module by
//! `e2e/lab s3`, on a lab host) through `pgmetal apply`: two members backing up from the
//! standby, etcd on three hosts, HAProxy and the S3 server on the third. A full backup by
//! annotation; the timers on every member, where the backup service runs only on the Patroni
//! leader; archiving following a power cut onto the new primary's timeline, and a backup by
//! the new leader's own timer unit; a restore from the bucket into a new cluster: to a time
//! before the first backup, which fails at once saying why, then to a time on the timeline
//! after the failover (asynchronous mode; the backups before it are on timeline 1).

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Lab, psql};
use serde_json::Value;

const PASSWORD: &str = "s3-su";

/// `e2e/lab s3 up HOST`: the server's `LAB_S3_*` settings.
fn s3_up(host: &str) -> BTreeMap<String, String> {
    let out = Command::new(common::repo().join("e2e/lab"))
        .args(["s3", "up", host])
        .output()
        .expect("e2e/lab s3 up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "e2e/lab s3 up {host}: {stderr}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `backup.repository` (or `bootstrap.recovery`'s source) in the bucket, indented by `pad`.
fn s3_block(s3: &BTreeMap<String, String>, pad: &str) -> String {
    let ca = std::fs::read_to_string(&s3["LAB_S3_CA"]).unwrap();
    let ca: String = ca.lines().map(|l| format!("{pad}    {l}\n")).collect();
    format!(
        "{pad}path: /clusters/s3\n{pad}s3:\n{pad}  endpoint: \"{}\"\n{pad}  bucket: {}\n\
         {pad}  credentialsSecret: lab-s3\n{pad}  uriStyle: Path\n{pad}  caBundle: |\n{ca}",
        s3["LAB_S3_ENDPOINT"], s3["LAB_S3_BUCKET"]
    )
}

/// The cluster: members `pg`, etcd on `etcd`, HAProxy on `lb`, backups in the bucket.
fn manifest(lab: &Lab, (pg, etcd, lb): (&[&str], &[&str], &str), s3: &str, ann: &str) -> String {
    format!(
        r#"{head}  postgres:
    primary: {primary}
    replicas: [{replicas}]
  patroni:
    scope: s3
    ttl: 20
    loopWait: 2
    retryTimeout: 5
  etcd:
    hosts: [{etcd}]
  haproxy:
    hosts: [{lb}]
  backup:
    fromStandby: true
    repository:
{s3}"#,
        head = lab.manifest_head(&format!("{{name: s3, annotations: {ann}}}")),
        primary = pg[0],
        replicas = pg[1..].join(", "),
        etcd = etcd.join(", "),
    )
}

/// A new single-member cluster on `host`, restored from the bucket to `target`.
fn restored(lab: &Lab, host: &str, s3: &str, target: &str) -> String {
    format!(
        r#"{head}  postgres:
    primary: {host}
  patroni:
    scope: s3-restored
  etcd:
    hosts: [{host}]
  haproxy:
    hosts: [{host}]
  monitoring:
    enabled: false
  bootstrap:
    recovery:
      stanza: s3
      targetTime: "{target}"
{s3}"#,
        head = lab.manifest_head("{name: s3-restored}"),
    )
}

/// `systemctl start pgmetal-backup@TYPE` on `host`, then the service's result
/// (`success`, or `exec-condition` where the member does not lead).
fn backup_unit(lab: &Lab, host: &str, kind: &str) -> String {
    let unit = format!("pgmetal-backup@{kind}.service");
    lab.ssh(host, &format!("systemctl start {unit}"));
    lab.ssh_ok(host, &format!("systemctl show -P Result {unit}"))
}

/// The labels of the backups in the bucket, read on `host`.
fn labels(lab: &Lab, host: &str) -> Vec<String> {
    let out = lab.ssh_ok(
        host,
        "runuser -u postgres -- pgbackrest --stanza=s3 --output=json info",
    );
    let all: Value = serde_json::from_str(&out).unwrap();
    let backups = all[0]["backup"].as_array().cloned().unwrap_or_default();
    backups
        .iter()
        .map(|b| b["label"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
#[ignore = "needs the lab (4 hosts) and e2e/lab s3; e2e/test runs it"]
fn backups_to_s3_follow_the_leader_and_restore_to_a_time() {
    let lab = Lab::require(4);
    let h: Vec<&str> = lab.hosts.iter().map(String::as_str).collect();
    let t = Instant::now();
    let s3 = s3_up(h[2]);
    println!(
        "S3 server up on {} in {:.1}s",
        h[2],
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let secrets = format!(
        "superuser: {PASSWORD}\nreplication: s3-rep\nrewind: s3-rw\nrestapi: s3-api\n\
         s3:\n  lab-s3:\n    accessKeyId: {}\n    secretAccessKey: {}\n",
        s3["LAB_S3_ACCESS_KEY"], s3["LAB_S3_SECRET_KEY"]
    );
    std::fs::write(dir.join("secrets.yaml"), secrets).unwrap();
    let (pg, etcd, lb) = (vec![h[0], h[1]], vec![h[0], h[1], h[2]], h[2]);
    let hosts = (pg.as_slice(), etcd.as_slice(), lb);
    let repo = s3_block(&s3, "      ");
    let yaml = |ann: &str| manifest(&lab, hosts, &repo, ann);

    // 1. A new cluster with backups in the bucket: the stanza, the timers on every member.
    let doc = lab.apply_ok(dir, "cold converge with S3 backups", &yaml("{}"));
    let status = &doc["status"]["backup"];
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no full backup yet"),
        "{status:#}"
    );
    for m in &pg {
        for unit in ["pgmetal-backup-full.timer", "pgmetal-backup-diff.timer"] {
            lab.ssh_ok(m, &format!("systemctl is-active --quiet {unit}"));
        }
    }
    let doc = lab.apply_ok(dir, "no-op converge", &yaml("{}"));
    assert_eq!(
        doc["changed"], 0,
        "a second apply changed: {:#}",
        doc["hosts"]
    );

    // 2. Rows, a full backup by annotation (taken from the standby), more rows, the time T.
    psql(lb, 5000, PASSWORD, "CREATE TABLE pitr (id int PRIMARY KEY); INSERT INTO pitr SELECT g FROM generate_series(1, 1000) g").unwrap();
    let doc = lab.apply_ok(dir, "full backup", &yaml("{pgmetal.io/backup-now: '1'}"));
    let status = doc["status"]["backup"].clone();
    assert_eq!(status["ready"], true, "{status:#}");
    let full = &status["full"];
    println!(
        "BACKUP full {} to S3: {} s, database {} bytes, repository {} bytes",
        full["label"], full["durationSeconds"], full["sizeBytes"], full["repositoryBytes"]
    );
    // The replica's timer unit does nothing: its condition asks the local Patroni.
    let before = labels(&lab, h[0]);
    assert_eq!(backup_unit(&lab, h[1], "diff"), "exec-condition");
    assert_eq!(labels(&lab, h[0]), before, "the replica took a backup");
    let noted = common::pitr::rows_around_a_noted_time(lb, PASSWORD);
    let lag = common::pitr::archive_past(lb, PASSWORD, &noted);
    println!("ARCHIVE to S3 lag after pg_switch_wal: {lag:.1}s");

    // 3. The primary loses power: the replica leads, archives on its timeline, and its own
    //    timer unit backs up once the former primary streams from it again.
    let (old, new) = (h[0], h[1]);
    let (_, secs) = common::pitr::fail_over_and_archive(lb, PASSWORD, (old, new), (3001, 4000));
    println!("ARCHIVE to S3 on the new timeline {secs:.1}s after the switch");
    // A time T2 on the new timeline, between rows: the restore below goes there (issue 26).
    let noted_after = common::pitr::rows_around(lb, PASSWORD, (4001, 4500, 5000));
    let lag = common::pitr::archive_past(lb, PASSWORD, &noted_after);
    println!("ARCHIVE to S3 after T2 on the new timeline: {lag:.1}s");
    common::lab_verb("start", old);
    let streams = || {
        let sql = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'";
        psql(lb, 5000, PASSWORD, sql).unwrap_or_default() == "1"
    };
    let secs = common::wait_until(
        "the former primary to stream",
        Duration::from_secs(180),
        streams,
    );
    println!("REJOIN {old} streams {secs:.1}s after its start");
    let t = Instant::now();
    assert_eq!(backup_unit(&lab, new, "diff"), "success");
    let after = labels(&lab, new);
    println!(
        "BACKUP diff by {new}'s timer unit: {:.1}s; {after:?}",
        t.elapsed().as_secs_f64()
    );
    assert!(
        after.len() == before.len() + 1 && after.last().unwrap().ends_with('D'),
        "{after:?}"
    );
    assert_eq!(backup_unit(&lab, old, "diff"), "exec-condition");

    // 4. A new cluster on the fourth host, restored from the bucket to T.
    let rdir = tempfile::tempdir().unwrap();
    let rdir = rdir.path();
    for f in ["secrets.yaml", "secrets.ca.crt", "secrets.ca.key"] {
        std::fs::copy(dir.join(f), rdir.join(f)).unwrap();
    }
    let target = h[3];
    let source = s3_block(&s3, "      ");
    // A target before the first backup: pgBackRest finds no backup, Patroni gives up, and the
    // apply says so at once rather than after the 300 s wait for a leader.
    let early = restored(&lab, target, &source, "2020-01-01 00:00:00+00");
    std::fs::write(rdir.join("cluster.yaml"), &early).unwrap();
    let t = Instant::now();
    let (code, doc, _) = lab.pgmetal("apply", rdir, &lab.var("LAB_KNOWN_HOSTS"));
    let secs = t.elapsed().as_secs_f64();
    let error = doc["hosts"][target]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("RESTORE before the first backup refused in {secs:.1}s: {error}");
    assert_ne!(code, 0, "a restore to before the first backup succeeded");
    assert!(error.contains("gave up bootstrapping"), "{doc:#}");
    assert!(
        error.contains("the restore left no data directory"),
        "{doc:#}"
    );
    assert!(secs < 150.0, "the failed restore took {secs:.0}s to report");
    // T2 is on timeline 2; the backups before it are on timeline 1 (the diff above was taken
    // after T2): the recovery follows the archive across the switch.
    let t = Instant::now();
    lab.apply_ok(
        rdir,
        "restore from S3 to T2, after the failover",
        &restored(&lab, target, &source, &noted_after),
    );
    println!(
        "RESTORE from S3 to T2 (timeline 2) on {target}: {:.1}s (apply, packages included)",
        t.elapsed().as_secs_f64()
    );
    let rows = common::pitr::restored_rows(target, PASSWORD);
    assert_eq!(
        rows, "4500 4500",
        "restored to {noted_after} (T was {noted})"
    );
    let all = psql(lb, 5000, PASSWORD, "SELECT count(*) FROM pitr").unwrap();
    assert_eq!(all, "5000", "the source is untouched");
}
