//! Patroni's dynamic configuration is written again after a conflict, and never replaced
//! whole because of one.

use super::*;

/// A cluster whose DCS configuration differs from the spec's, and whose leader answers `409
/// Conflict` to the first `conflicts` PATCHes (a stale DCS cache, as during an etcd move).
async fn write_with_conflicts(conflicts: usize) -> (Result<String, Failure>, Vec<String>) {
    let spec = spec();
    let (hosts, etcd) = (hosts(), FakeEtcd::new(true));
    let api = FakePatroni::new(view("a", &["b", "c"]), serde_json::json!({"ttl": 1}));
    api.conflicts(conflicts);
    let r = engine(&spec, &secrets(), connected(&hosts), (&api, &etcd))
        .dynamic_config()
        .await;
    (r, api.calls())
}

fn count(calls: &[String], prefix: &str) -> usize {
    calls.iter().filter(|c| c.starts_with(prefix)).count()
}

#[tokio::test]
async fn a_conflict_is_retried() {
    let (r, calls) = write_with_conflicts(2).await;
    assert_eq!(r.expect("written after two conflicts"), "a");
    assert_eq!(count(&calls, "patch_config a"), 3, "{calls:?}");
    assert_eq!(count(&calls, "put_config"), 0, "{calls:?}");
}

#[tokio::test]
async fn conflicts_that_do_not_end_fail_the_step() {
    let (r, calls) = write_with_conflicts(usize::MAX).await;
    let failure = r.expect_err("five conflicts in a row fail");
    assert!(failure.to_string().contains("409"), "{failure}");
    assert_eq!(count(&calls, "patch_config a"), 5, "{calls:?}");
    assert_eq!(count(&calls, "put_config"), 0, "{calls:?}");
}

#[tokio::test]
async fn where_the_dcs_holds_no_configuration_the_whole_one_is_put() {
    // An adopted cluster: Patroni bootstrapped nothing, and GET /config answers 502 until its
    // leader writes its local settings (CI's takeover_lab met that race).
    let spec = spec();
    let (hosts, etcd) = (hosts(), FakeEtcd::new(true));
    let api = FakePatroni::new(view("a", &["b", "c"]), serde_json::json!({}));
    api.without_config();
    let r = engine(&spec, &secrets(), connected(&hosts), (&api, &etcd))
        .dynamic_config()
        .await;
    assert_eq!(r.expect("written"), "a");
    let calls = api.calls();
    assert_eq!(count(&calls, "put_config a"), 1, "{calls:?}");
    assert_eq!(count(&calls, "patch_config"), 0, "{calls:?}");
}

#[tokio::test]
async fn a_missing_answer_with_configuration_in_the_dcs_is_an_error() {
    let spec = spec();
    let (hosts, etcd) = (hosts(), FakeEtcd::new(true));
    let key = format!("{}{}/config", spec.patroni.namespace, spec.patroni.scope);
    etcd.put_key(&spec, &[], &key, "{}".into()).await.unwrap();
    let api = FakePatroni::new(view("a", &["b", "c"]), serde_json::json!({}));
    api.without_config();
    let r = engine(&spec, &secrets(), connected(&hosts), (&api, &etcd))
        .dynamic_config()
        .await;
    assert!(r.expect_err("not overwritten").to_string().contains("502"));
    assert_eq!(count(&api.calls(), "put_config"), 0);
}
