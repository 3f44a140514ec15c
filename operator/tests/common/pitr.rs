//! The point-in-time scenario both backup tests run, through HAProxy's primary port on `lb`:
//! rows around a noted time, and a power cut whose new primary archives on its own timeline.

use std::time::Duration;

use super::{lab_verb, psql, wait_until};

/// A SQL statement through `lb`'s primary port as the superuser (`password`), which must
/// succeed: its output.
pub fn sql(lb: &str, password: &str, sql: &str) -> String {
    psql(lb, 5000, password, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Inserts ids 1001..=2000 into `pitr`, notes the time T (a second after), and inserts
/// 2001..=3000 a second later: a restore to T holds exactly 2,000 rows. Returns T.
pub fn rows_around_a_noted_time(lb: &str, password: &str) -> String {
    rows_around(lb, password, (1001, 2000, 3000))
}

/// Inserts ids `first..=before` into `pitr`, notes the time T (a second after), and inserts
/// `before + 1..=last` a second later: a restore to T holds the rows up to `before`. Returns T.
pub fn rows_around(lb: &str, password: &str, (first, before, last): (u32, u32, u32)) -> String {
    let insert = |from: u32, to: u32| {
        let q = format!("INSERT INTO pitr SELECT g FROM generate_series({from}, {to}) g");
        sql(lb, password, &q);
    };
    insert(first, before);
    std::thread::sleep(Duration::from_secs(1));
    let noted = sql(lb, password, "SELECT now()");
    std::thread::sleep(Duration::from_secs(1));
    insert(before + 1, last);
    noted
}

/// Power-cuts `old` (the primary) and waits until `new` is promoted; then inserts ids
/// `rows` (first, last), switches WAL, and waits until the new primary has archived a segment
/// of its new timeline. Returns the seconds to the promotion and to that archive.
pub fn fail_over_and_archive(
    lb: &str,
    password: &str,
    (old, new): (&str, &str),
    (first, last): (u32, u32),
) -> (f64, f64) {
    lab_verb("kill", old);
    let q = format!("SELECT NOT pg_is_in_recovery() AND inet_server_addr() = '{new}'::inet");
    let promoted = || psql(lb, 5000, password, &q).unwrap_or_default() == "t";
    let failover = wait_until(
        "the replica to be promoted",
        Duration::from_secs(120),
        promoted,
    );
    println!("FAILOVER {new} promoted {failover:.1}s after the power cut of {old}");
    sql(
        lb,
        password,
        &format!(
            "INSERT INTO pitr SELECT g FROM generate_series({first}, {last}) g; SELECT pg_switch_wal()"
        ),
    );
    // The timeline is the first 8 hex digits of a segment's name.
    let q = "SELECT coalesce(substr(last_archived_wal, 1, 8) = \
             substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), false) FROM pg_stat_archiver";
    let on_new_timeline = || psql(lb, 5000, password, q).unwrap_or_default() == "t";
    let archived = wait_until(
        "archiving on the new timeline",
        Duration::from_secs(60),
        on_new_timeline,
    );
    (failover, archived)
}

/// Switches WAL and waits until a segment written after `noted` is archived: the seconds it
/// took.
pub fn archive_past(lb: &str, password: &str, noted: &str) -> f64 {
    sql(lb, password, "SELECT pg_switch_wal()");
    let q = format!("SELECT last_archived_time >= '{noted}'::timestamptz FROM pg_stat_archiver");
    let archived = || psql(lb, 5000, password, &q).unwrap_or_default() == "t";
    wait_until(
        "the WAL after T to be archived",
        Duration::from_secs(60),
        archived,
    )
}

/// The rows of `pitr` on `host`'s primary port, as `count max`.
pub fn restored_rows(host: &str, password: &str) -> String {
    sql(
        host,
        password,
        "SELECT count(*) || ' ' || max(id) FROM pitr",
    )
}
