//! Backups with pgBackRest on 6 real lab hosts (7 with the second failover), through `pgmetal apply`: two members, etcd on
//! three hosts, HAProxy and the repository on the third. A full backup and a differential one
//! asked for by annotation; the timers in place; WAL archiving following a power cut onto the
//! new primary's timeline; `status.backup` with a recovery window covering a noted time; and
//! BackupReady false, saying why, while the repository's TLS server is down; the node
//! exporter's backup metrics; restores into new clusters to a noted time, to a time on the
//! timeline after the failover, to a time after a second failover (timeline 3, in e2e/chaos),
//! and to the end of the archive (synchronous mode).

mod common;

use std::time::{Duration, Instant};

use common::{Lab, psql};
use serde_json::Value;

const PASSWORD: &str = "backup-su";

/// The cluster: members `pg`, etcd on `etcd`, HAProxy and the repository on `repo`, with
/// `annotations` (a YAML flow map).
fn manifest(lab: &Lab, (pg, etcd, repo): (&[&str], &[&str], &str), annotations: &str) -> String {
    format!(
        r#"{head}  postgres:
    primary: {primary}
    replicas: [{replicas}]
  patroni:
    scope: backup
    synchronousMode: true
    ttl: 20
    loopWait: 2
    retryTimeout: 5
  etcd:
    hosts: [{etcd}]
  haproxy:
    hosts: [{repo}]
  backup:
    repository:
      host: {repo}
    schedule:
      full: "0 1 * * 0"
      differential: "0 1 * * 1-6"
    retention:
      full: 2
"#,
        head = lab.manifest_head(&format!("{{name: backup, annotations: {annotations}}}")),
        primary = pg[0],
        replicas = pg[1..].join(", "),
        etcd = etcd.join(", "),
    )
}

/// A new single-member cluster on `host` (etcd and HAProxy there too), restored from the
/// repository on `repo` to the time `noted` (without one: the end of the archived WAL).
fn restored(lab: &Lab, (name, host): (&str, &str), repo: &str, noted: Option<&str>) -> String {
    let target = noted.map_or(String::new(), |t| format!("      targetTime: \"{t}\""));
    format!(
        r#"{head}  postgres:
    primary: {host}
  patroni:
    scope: {name}
  etcd:
    hosts: [{host}]
  haproxy:
    hosts: [{host}]
  monitoring:
    enabled: false
  bootstrap:
    recovery:
      host: {repo}
      stanza: backup
{target}
"#,
        head = lab.manifest_head(&format!("{{name: {name}}}")),
    )
}

/// `pgbackrest info` on the repository host, as JSON (the stanza's object).
/// Restores a new cluster `name` on `host` from the repository on `repo` to `noted` (the end of
/// the archive without one), printing how long the apply took as the restore to `what`: the
/// apply's report and the restored rows (`count max`).
fn restore(
    (lab, rdir): (&Lab, &std::path::Path),
    (name, host): (&str, &str),
    repo: &str,
    (what, noted): (&str, Option<&str>),
) -> (Value, String) {
    let t = Instant::now();
    let doc = lab.apply_ok(
        rdir,
        &format!("restore to {what}"),
        &restored(lab, (name, host), repo, noted),
    );
    let secs = t.elapsed().as_secs_f64();
    println!("RESTORE to {what} on {host}: {secs:.1}s (apply, packages included)");
    (doc, common::pitr::restored_rows(host, PASSWORD))
}

/// A second power cut (of `primary`): `replica`, streaming again on timeline 2, is promoted
/// on timeline 3, and a restore to a time T3 on it (into the seventh host) follows the archive
/// across both switches.
fn timeline_3(lab: &Lab, rdir: &std::path::Path, repo: &str, (primary, replica): (&str, &str)) {
    let (_, secs) =
        common::pitr::fail_over_and_archive(repo, PASSWORD, (primary, replica), (6001, 6100));
    println!("ARCHIVE on timeline 3 {secs:.1}s after the second switch");
    let noted_t3 = common::pitr::rows_around(repo, PASSWORD, (6101, 6500, 6600));
    let lag = common::pitr::archive_past(repo, PASSWORD, &noted_t3);
    println!("ARCHIVE lag after T3 on timeline 3: {lag:.1}s");
    common::lab_verb("start", primary);
    let (doc, rows) = restore(
        (lab, rdir),
        ("third", &lab.hosts[6]),
        repo,
        ("T3 (timeline 3)", Some(&noted_t3)),
    );
    // Synchronous mode: every row acknowledged before T3 survived both failovers.
    assert_eq!(
        rows, "5510 6500",
        "restored to {noted_t3}: {:#}",
        doc["status"]
    );
}

fn info(lab: &Lab, repo: &str) -> Value {
    let out = lab.ssh_ok(
        repo,
        "runuser -u postgres -- pgbackrest --stanza=backup --output=json info",
    );
    let all: Value = serde_json::from_str(&out).unwrap();
    all[0].clone()
}

#[test]
#[ignore = "needs the lab (6 hosts); e2e/test runs it"]
fn backups_archive_across_a_failover_and_report_their_state() {
    // The second failover (timeline 3) runs in e2e/chaos (PGMETAL_TIMELINE3=1, a seventh host):
    // once in three runs its new primary did not archive on timeline 3 within 60 s.
    let timeline3 = std::env::var_os("PGMETAL_TIMELINE3").is_some();
    let lab = Lab::require(if timeline3 { 7 } else { 6 });
    let h: Vec<&str> = lab.hosts.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let secrets =
        format!("superuser: {PASSWORD}\nreplication: bk-rep\nrewind: bk-rw\nrestapi: bk-api\n");
    std::fs::write(dir.join("secrets.yaml"), secrets).unwrap();
    let (pg, etcd, repo) = (vec![h[0], h[1]], vec![h[0], h[1], h[2]], h[2]);
    let hosts = (pg.as_slice(), etcd.as_slice(), repo);

    // 1. A new cluster with backups: the stanza, the servers and the timers; no backup yet.
    let doc = lab.apply_ok(
        dir,
        "cold converge with backups",
        &manifest(&lab, hosts, "{}"),
    );
    let status = &doc["status"]["backup"];
    assert_eq!(status["ready"], false, "{status:#}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("no full backup yet"),
        "{status:#}"
    );
    for unit in [
        "pgmetal-pgbackrest",
        "pgmetal-backup-full.timer",
        "pgmetal-backup-diff.timer",
    ] {
        lab.ssh_ok(repo, &format!("systemctl is-active --quiet {unit}"));
    }
    for m in &pg {
        lab.ssh_ok(m, "systemctl is-active --quiet pgmetal-pgbackrest");
    }
    let timers = lab.ssh_ok(
        repo,
        "systemctl list-timers --all --no-legend 'pgmetal-backup-*'",
    );
    println!("TIMERS\n{timers}");
    assert!(
        timers.contains("pgmetal-backup-full.timer") && timers.contains("Sun"),
        "{timers}"
    );
    let primary = h[0];
    let settings = psql(
        repo,
        5000,
        PASSWORD,
        "SELECT current_setting('archive_mode') || ' ' || current_setting('archive_command')",
    )
    .unwrap();
    assert_eq!(
        settings,
        "on /usr/bin/pgbackrest --stanza=backup archive-push %p"
    );

    // A second apply changes nothing.
    let doc = lab.apply_ok(dir, "no-op converge", &manifest(&lab, hosts, "{}"));
    assert_eq!(
        doc["changed"], 0,
        "a second apply changed: {:#}",
        doc["hosts"]
    );

    // 2. Rows, a full backup by annotation, more rows, the time T, more rows, a differential.
    psql(repo, 5000, PASSWORD, "CREATE TABLE pitr (id int PRIMARY KEY, at timestamptz DEFAULT now()); INSERT INTO pitr SELECT g FROM generate_series(1, 1000) g").unwrap();
    let t = Instant::now();
    let doc = lab.apply_ok(
        dir,
        "full backup",
        &manifest(&lab, hosts, "{pgmetal.io/backup-now: '1'}"),
    );
    let full_secs = t.elapsed().as_secs_f64();
    let status = doc["status"]["backup"].clone();
    assert_eq!(status["ready"], true, "{status:#}");
    let full = &status["full"];
    println!(
        "BACKUP full {}: {} s, database {} bytes, repository {} bytes (apply {full_secs:.1}s)",
        full["label"], full["durationSeconds"], full["sizeBytes"], full["repositoryBytes"]
    );
    assert_eq!(doc["requests"]["backupNow"], "1", "{:#}", doc["requests"]);
    // The node exporter on the repository host serves when it succeeded, and the schedule's
    // longest interval (the backup-overdue alert compares the two).
    let metrics = lab.ssh_ok(repo, "curl -s http://127.0.0.1:9100/metrics 2>/dev/null || python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:9100/metrics').read().decode())\"");
    for line in [
        "pgmetal_backup_last_success_timestamp_seconds{type=\"full\"}",
        "pgmetal_backup_max_interval_seconds{type=\"full\"} 604800",
    ] {
        assert!(
            metrics.contains(line),
            "the node exporter does not serve {line}"
        );
    }
    let noted = common::pitr::rows_around_a_noted_time(repo, PASSWORD);
    let diff_yaml = manifest(
        &lab,
        hosts,
        "{pgmetal.io/backup-now: '2', pgmetal.io/backup-type: diff}",
    );
    let doc = lab.apply_ok(dir, "differential backup", &diff_yaml);
    let status = doc["status"]["backup"].clone();
    let diff = &status["differential"];
    assert!(diff["label"].as_str().unwrap().ends_with('D'), "{status:#}");
    println!(
        "BACKUP diff {}: {} s, repository {} bytes; noted time {noted}",
        diff["label"], diff["durationSeconds"], diff["repositoryBytes"]
    );
    let window = &status["recoveryWindow"];
    let (earliest, latest) = (
        window["earliest"].as_str().unwrap(),
        window["latest"].as_str().unwrap(),
    );
    let covers = psql(
        repo,
        5000,
        PASSWORD,
        &format!("SELECT '{earliest}'::timestamptz <= '{noted}'::timestamptz"),
    )
    .unwrap();
    assert_eq!(covers, "t", "the window {window} starts after {noted}");
    // The window's end follows archiving: once the WAL after T is archived, it covers T.
    let lag = common::pitr::archive_past(repo, PASSWORD, &noted);
    println!("ARCHIVE lag after pg_switch_wal: {lag:.1}s (latest in the status before: {latest})");

    // 3. The primary loses power: archiving continues from the new primary, on its timeline.
    let new_primary = h[1];
    let (_, secs) =
        common::pitr::fail_over_and_archive(repo, PASSWORD, (primary, new_primary), (3001, 4000));
    let max = info(&lab, repo)["archive"][0]["max"]
        .as_str()
        .unwrap_or("")
        .to_string();
    println!(
        "ARCHIVE on the new timeline {secs:.1}s after the switch; the repository's newest WAL {max}"
    );
    assert!(
        !max.starts_with("00000001"),
        "the repository's newest WAL {max} is still on timeline 1"
    );
    common::lab_verb("start", primary);
    // A time T2 on the new timeline, between rows (issue 26: a restore to it failed).
    let noted_after = common::pitr::rows_around(repo, PASSWORD, (4001, 4500, 5000));
    let lag = common::pitr::archive_past(repo, PASSWORD, &noted_after);
    println!("ARCHIVE lag after T2 on the new timeline: {lag:.1}s");

    // 4. The repository's TLS server goes down: archiving falls behind, and BackupReady says so.
    lab.ssh_ok(repo, "systemctl stop pgmetal-pgbackrest");
    psql(
        repo,
        5000,
        PASSWORD,
        "INSERT INTO pitr SELECT g FROM generate_series(5001, 5010) g; SELECT pg_switch_wal()",
    )
    .unwrap();
    std::fs::write(dir.join("cluster.yaml"), &diff_yaml).unwrap();
    let mut last = Value::Null;
    let not_ready = || {
        let (_, doc, _) = lab.pgmetal("status", dir, &lab.var("LAB_KNOWN_HOSTS"));
        last = doc["status"]["backup"].clone();
        last["ready"] == false
    };
    let secs = common::wait_until(
        "BackupReady false with the repository down",
        Duration::from_secs(180),
        not_ready,
    );
    println!(
        "BACKUP-READY false {secs:.1}s after the repository's server stopped: {}",
        last["message"]
    );
    let message = last["message"].as_str().unwrap_or_default();
    assert!(message.contains("WAL archiving"), "{last:#}");
    // The next apply starts the server again; archiving catches up and BackupReady is True.
    lab.apply_ok(dir, "repository back", &diff_yaml);
    let sql = "SELECT count(*) = 0 FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'";
    let caught_up = || psql(repo, 5000, PASSWORD, sql).unwrap_or_default() == "t";
    let secs = common::wait_until("archiving to catch up", Duration::from_secs(180), caught_up);
    println!("ARCHIVE caught up {secs:.1}s after the repository's server started again");
    let (code, doc, stderr) = lab.pgmetal("status", dir, &lab.var("LAB_KNOWN_HOSTS"));
    let status = &doc["status"]["backup"];
    assert_eq!(status["ready"], true, "{status:#}\n{stderr} (exit {code})");

    // 5. A new cluster on the fourth host, restored to T from the repository (sharing the
    //    source's CA and passwords): the rows written before T are there, those after are not.
    let rdir = tempfile::tempdir().unwrap();
    let rdir = rdir.path();
    for f in ["secrets.yaml", "secrets.ca.crt", "secrets.ca.key"] {
        std::fs::copy(dir.join(f), rdir.join(f)).unwrap();
    }
    let target = h[3];
    let (doc, rows) = restore(
        (&lab, rdir),
        ("restored", target),
        repo,
        ("T", Some(&noted)),
    );
    assert_eq!(
        rows, "2000 2000",
        "restored to {noted}: {:#}",
        doc["status"]
    );
    let leader = psql(target, 5000, PASSWORD, "SELECT pg_is_in_recovery()").unwrap();
    assert_eq!(leader, "f", "the restored primary is still in recovery");
    // The restore's recovery settings are gone from postgresql.auto.conf: a replica cloned
    // from this primary must not stop at T.
    let sql = "SELECT count(*) FROM pg_file_settings WHERE sourcefile LIKE '%/postgresql.auto.conf' AND (name LIKE 'recovery_target%' OR name = 'restore_command')";
    assert_eq!(psql(target, 5000, PASSWORD, sql).unwrap(), "0");
    let again = lab.apply_ok(
        rdir,
        "restored cluster, no-op",
        &restored(&lab, ("restored", target), repo, Some(&noted)),
    );
    assert_eq!(
        again["changed"], 0,
        "a second apply changed: {:#}",
        again["hosts"]
    );
    // The source is untouched: its rows are all there.
    let source = psql(repo, 5000, PASSWORD, "SELECT count(*) >= 5000 FROM pitr").unwrap();
    assert_eq!(source, "t");

    // 5b. A restore to T2, after the failover: the full backup is on timeline 1, T2 on
    //     timeline 2, so the recovery follows the archive across the timeline switch.
    let (doc, rows) = restore(
        (&lab, rdir),
        ("after", h[5]),
        repo,
        ("T2 (timeline 2)", Some(&noted_after)),
    );
    assert_eq!(
        rows, "4500 4500",
        "restored to {noted_after}: {:#}",
        doc["status"]
    );

    // 5c. A second power cut: the old primary, streaming again on timeline 2, is promoted on
    //     timeline 3; a restore to T3 follows the archive across both switches.
    if timeline3 {
        timeline_3(&lab, rdir, repo, (new_primary, primary));
    }

    // 6. Synchronous mode, restore to the end of the archive: every acknowledged write that was
    //    archived is there. A WAL switch first, and how long archiving took to follow.
    let acked = psql(repo, 5000, PASSWORD, "INSERT INTO pitr SELECT g FROM generate_series(7001, 8000) g; SELECT count(*) || ' ' || max(id) FROM pitr").unwrap();
    let t = Instant::now();
    let lsn = psql(
        repo,
        5000,
        PASSWORD,
        "SELECT pg_walfile_name(pg_switch_wal())",
    )
    .unwrap();
    let sql = format!("SELECT last_archived_wal >= '{lsn}' FROM pg_stat_archiver");
    let archived = || psql(repo, 5000, PASSWORD, &sql).unwrap_or_default() == "t";
    common::wait_until(
        "the switched WAL to be archived",
        Duration::from_secs(60),
        archived,
    );
    let lag = t.elapsed().as_secs_f64();
    println!("ARCHIVE lag before the restore to latest: {lag:.1}s (segment {lsn})");
    let what = ("the end of the archive", None);
    let (_, rows) = restore((&lab, rdir), ("latest", h[4]), repo, what);
    assert_eq!(
        rows, acked,
        "every acknowledged, archived write is restored"
    );
}
