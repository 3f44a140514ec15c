//! A restore to a time outside the source cluster's recovery window stalls before anything
//! runs, naming the window, and is looked at again (the window grows).

use super::*;

/// `pg` restores from the repository on 127.0.0.20 (stanza `src`) to `target`; the namespace
/// also holds `src`, whose status knows its window.
fn restoring(target: &str) -> (Value, Value) {
    let mut pg = stored(true);
    pg["spec"]["bootstrap"] =
        json!({"recovery": {"host": "127.0.0.20", "stanza": "src", "targetTime": target}});
    let mut src = stored(true);
    src["metadata"]["name"] = json!("src");
    src["spec"]["patroni"]["scope"] = json!("src");
    src["spec"]["backup"] = json!({"repository": {"host": "127.0.0.20"}});
    src["status"] = json!({"backup": {"ready": true, "count": 1, "recoveryWindow": {
        "earliest": "2026-12-07T10:00:00Z", "latest": "2026-12-07T12:00:00Z"}}});
    (pg, src)
}

#[tokio::test]
async fn a_restore_outside_the_source_window_stalls_naming_it() {
    let (pg, src) = restoring("2026-12-07 09:00:00+00");
    let (api, client) = FakeApi::start(pg, NS);
    api.others.lock().unwrap().push(src);
    let ctx = context(client);
    let action = reconcile_stored(&api, &ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    let patches = api.sent(Method::PATCH, "/postgresclusters/pg/status");
    let status = &patches[0].body["status"];
    let c = condition(status, "Stalled");
    assert_eq!(c["reason"], reason::OUTSIDE_RECOVERY_WINDOW);
    let msg = c["message"].as_str().unwrap();
    assert!(
        msg.contains("before the recovery window of src (2026-12-07T10:00:00Z to"),
        "{msg}"
    );
    assert!(
        api.sent(Method::GET, "/secrets/pg-ssh").is_empty(),
        "nothing else was done"
    );
}

#[tokio::test]
async fn a_restore_inside_the_window_goes_on() {
    let (pg, src) = restoring("2026-12-07 11:00:00+00");
    let (api, client) = FakeApi::start(pg, NS);
    api.others.lock().unwrap().push(src);
    let ctx = context(client);
    reconcile_stored(&api, &ctx).await.unwrap();
    let patches = api.sent(Method::PATCH, "/postgresclusters/pg/status");
    let c = condition(&patches[0].body["status"], "Stalled");
    assert_eq!(c["reason"], reason::SECRET_MISSING, "past the window check");
}
