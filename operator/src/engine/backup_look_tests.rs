use super::*;

const INFO_JSON: &str = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000020000000000000009","min":"000000010000000000000003"}],
 "backup":[
  {"label":"20261130-010000F","type":"full","timestamp":{"start":1796000000,"stop":1796000020},"info":{"delta":30000000,"size":30000000,"repository":{"delta":4000000,"size":4000000}}},
  {"label":"20261130-010000F_20261130-020000D","type":"diff","timestamp":{"start":1796003600,"stop":1796003605},"info":{"delta":100000,"size":30100000,"repository":{"delta":20000,"size":4020000}}}],
 "db":[{"id":1,"repo-key":1,"system-id":7311111111111111111,"version":"15"}],
 "name":"pg-ha","status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;

const ARCHIVER_OK: &str = r#"{"wal" : "000000020000000000000009", "at" : 1796003700, "failed_wal" : null, "failed_at" : null}"#;

fn spec() -> BackupSpec {
    serde_json::from_value(serde_json::json!({"repository": {"host": "backup1"}, "schedule": {"full": "0 1 * * *", "differential": ""}})).unwrap()
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

#[test]
fn the_repository_and_the_archiver_become_status() {
    let seen = parse(INFO_JSON, Some(ARCHIVER_OK)).unwrap();
    let s = &seen.status;
    assert_eq!(s.count, 2);
    let full = s.full.as_ref().unwrap();
    assert_eq!(
        (
            full.duration_seconds,
            full.size_bytes,
            full.repository_bytes
        ),
        (20, 30_000_000, 4_000_000)
    );
    assert_eq!(
        s.differential.as_ref().unwrap().label,
        "20261130-010000F_20261130-020000D"
    );
    assert_eq!(s.incremental, None);
    let w = s.recovery_window.as_ref().unwrap();
    assert_eq!(
        (w.earliest.as_str(), w.latest.as_str()),
        ("2026-11-30T00:53:40Z", "2026-11-30T01:55:00Z")
    );
    let (ok, why) = verdict(&spec(), &seen, Some("7311111111111111111"), at(1796003800));
    assert!(ok, "{why}");
}

#[test]
fn backup_ready_says_what_is_wrong() {
    let seen = parse(INFO_JSON, Some(ARCHIVER_OK)).unwrap();
    let (ok, why) = verdict(&spec(), &seen, Some("42"), at(1796003800));
    assert!(!ok && why.contains("another database"), "{why}");
    let failing = r#"{"wal":"000000020000000000000009","at":1796003700,"failed_wal":"00000002000000000000000A","failed_at":1796003760}"#;
    let seen = parse(INFO_JSON, Some(failing)).unwrap();
    let (ok, why) = verdict(&spec(), &seen, None, at(1796003800));
    assert!(!ok && why.contains("00000002000000000000000A"), "{why}");
    let stuck = r#"{"wal":"000000020000000000000009","at":1796003700,"waiting":2,"waiting_since":1796003710}"#;
    let seen = parse(INFO_JSON, Some(stuck)).unwrap();
    let (ok, why) = verdict(&spec(), &seen, None, at(1796003800));
    assert!(
        !ok && why.contains("behind: 2 segment(s)") && why.contains("backup1"),
        "{why}"
    );
    assert!(
        verdict(&spec(), &seen, None, at(1796003760)).0,
        "within a minute"
    );
    // The next day after 02:00: the 01:00 full backup did not run.
    let (ok, why) = verdict(
        &spec(),
        &parse(INFO_JSON, Some(ARCHIVER_OK)).unwrap(),
        None,
        at(1796000000 + 86_400 + 7200),
    );
    assert!(
        !ok && why.contains("did not run") && why.contains("pgmetal-backup@full"),
        "{why}"
    );
    let empty = r#"[{"backup":[],"db":[{"system-id":1}],"status":{"code":2,"message":"no valid backups"}}]"#;
    let (ok, why) = verdict(&spec(), &parse(empty, None).unwrap(), None, at(1796003800));
    assert!(!ok && why.contains("no full backup yet"), "{why}");
    let missing = r#"[{"status":{"code":1,"message":"missing stanza path"}}]"#;
    let (ok, why) = verdict(
        &spec(),
        &parse(missing, None).unwrap(),
        None,
        at(1796003800),
    );
    assert!(!ok && why.contains("missing stanza path"), "{why}");
    assert!(
        parse("not json", None)
            .unwrap_err()
            .contains("pgbackrest info")
    );
}
