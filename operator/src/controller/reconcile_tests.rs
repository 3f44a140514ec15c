//! The reconciler driven through a fake API server ([`super::fake_api`]): the finalizer, the
//! status patch, events only on transitions, the invalid-spec and missing-Secret paths, and
//! deletion, and a cluster over simulated hosts turning Ready. Nothing here reaches a host: hosts
//! are loopback addresses with a closed SSH port, or simulated (`backend::sim`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};

use super::conditions::reason;
use super::fake_api::FakeApi;
use super::{Context, Error, FINALIZER, dereference, metrics};
use crate::api::PostgresCluster;

const NS: &str = "db";

/// The reference cluster as the API server stores it: `pg` in `db`, generation 2, with the
/// finalizer unless `finalized` is false, its hosts on loopback and SSH on a closed port.
fn stored(finalized: bool) -> Value {
    let mut spec = serde_json::to_value(crate::render::tests::spec()).unwrap();
    spec["postgres"]["primary"] = json!("127.0.0.11");
    spec["postgres"]["replicas"] = json!(["127.0.0.12", "127.0.0.13"]);
    spec["etcd"]["hosts"] = json!(["127.0.0.11", "127.0.0.12", "127.0.0.13"]);
    spec["haproxy"]["hosts"] = json!(["127.0.0.14"]);
    spec["ssh"]["port"] = json!(closed_port());
    spec["ssh"]["privateKeySecret"] = json!({"name": "pg-ssh", "key": "id_ed25519"});
    let finalizers = if finalized {
        json!([FINALIZER])
    } else {
        json!([])
    };
    json!({
        "apiVersion": "pgmetal.io/v1alpha1", "kind": "PostgresCluster",
        "metadata": {"name": "pg", "namespace": NS, "uid": "u-1", "generation": 2,
                     "finalizers": finalizers},
        "spec": spec,
    })
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn context(client: kube::Client) -> Arc<Context> {
    context_with(client, Arc::new(super::backend::Network))
}

/// A context whose hosts, Patroni and etcd are reached through `backend`.
fn context_with(client: kube::Client, backend: Arc<dyn super::backend::Backend>) -> Arc<Context> {
    let reporter = Reporter {
        controller: super::MANAGER.into(),
        instance: None,
    };
    Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        metrics: Arc::new(metrics::Metrics::new()),
        memos: Mutex::default(),
        sightings: Mutex::default(),
        converges: Arc::default(),
        backend,
        observers: Mutex::default(),
        ca_pins: Mutex::default(),
    })
}

/// One reconcile of the object as the fake stores it now.
async fn reconcile_stored(api: &FakeApi, ctx: &Arc<Context>) -> Result<Action, Error> {
    let obj = api.cluster.lock().unwrap().clone();
    let pgc: PostgresCluster = serde_json::from_value(obj).unwrap();
    super::reconcile(Arc::new(DeserializeGuard(Ok(pgc))), ctx.clone()).await
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    let conds = status["conditions"].as_array().expect("conditions");
    conds.iter().find(|c| c["type"] == type_).expect(type_)
}

fn reasons(events: &[Value]) -> Vec<String> {
    let r = |e: &Value| {
        format!(
            "{}:{}",
            e["type"].as_str().unwrap(),
            e["reason"].as_str().unwrap()
        )
    };
    events.iter().map(r).collect()
}

#[tokio::test]
async fn the_finalizer_is_added_before_anything_else() {
    let (api, client) = FakeApi::start(stored(false), NS);
    let ctx = context(client);
    let action = reconcile_stored(&api, &ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    let sent = api.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].method, Method::PATCH);
    assert_eq!(
        sent[0].path,
        "/apis/pgmetal.io/v1alpha1/namespaces/db/postgresclusters/pg"
    );
    let added = sent[0]
        .body
        .as_array()
        .unwrap()
        .iter()
        .any(|op| op["op"] == "add");
    assert!(added, "{}", sent[0].body);
    assert_eq!(
        api.cluster.lock().unwrap()["metadata"]["finalizers"],
        json!([FINALIZER])
    );
}

#[tokio::test]
async fn an_invalid_spec_stalls_with_one_status_patch_and_events_only_on_transitions() {
    let mut obj = stored(true);
    obj["spec"]["postgres"]["replicas"] = json!(["127.0.0.11", "127.0.0.12"]);
    obj["status"] = json!({"hosts": [{"host": "127.0.0.11", "reachable": true}]});
    let pgc: PostgresCluster = serde_json::from_value(obj.clone()).unwrap();
    let why = crate::validate::validate(&pgc, None)
        .unwrap_err()
        .to_string();
    let (api, client) = FakeApi::start(obj, NS);
    let ctx = context(client);

    let action = reconcile_stored(&api, &ctx).await.unwrap();
    assert_eq!(
        action,
        Action::await_change(),
        "nothing to do until the spec changes"
    );
    assert!(
        api.sent(Method::GET, "/secrets/pg-ssh").is_empty(),
        "no Secret read for an invalid spec"
    );
    let patches = api.sent(Method::PATCH, "/postgresclusters/pg/status");
    assert_eq!(patches.len(), 1);
    let status = &patches[0].body["status"];
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(
        status["hosts"][0]["host"], "127.0.0.11",
        "what is known of the hosts stays"
    );
    for (t, s) in [
        ("Ready", "False"),
        ("Stalled", "True"),
        ("Reconciling", "False"),
    ] {
        let c = condition(status, t);
        assert_eq!(c["status"], s, "{t}: {c}");
        assert_eq!(c["observedGeneration"], 2, "{t}");
    }
    for t in ["Ready", "Stalled"] {
        assert_eq!(condition(status, t)["reason"], reason::INVALID_SPEC);
        assert_eq!(condition(status, t)["message"], why.as_str());
    }
    assert_eq!(
        patches[0].body["kind"], "PostgresCluster",
        "server-side apply of status only"
    );
    assert!(patches[0].body.get("spec").is_none(), "never the spec");
    let first = reasons(&api.events());
    assert!(
        first.contains(&"Warning:ReadyFalse".to_string()),
        "{first:?}"
    );
    assert!(
        first.iter().all(|r| r.starts_with("Warning:")),
        "only bad news is news: {first:?}"
    );
    let metrics = ctx.metrics.encode();
    assert!(metrics.contains(r#"reason="InvalidSpec""#), "{metrics}");

    // Again, with the status now stored: nothing changed, so no patch and no event.
    api.clear();
    reconcile_stored(&api, &ctx).await.unwrap();
    assert!(
        api.sent(Method::PATCH, "/status").is_empty(),
        "{:?}",
        api.requests()
    );
    assert!(api.events().is_empty(), "{:?}", api.events());
}

#[tokio::test]
async fn a_missing_secret_stalls_naming_it_and_is_looked_up_again() {
    let (api, client) = FakeApi::start(stored(true), NS);
    let ctx = context(client);
    let action = reconcile_stored(&api, &ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
    let patches = api.sent(Method::PATCH, "/postgresclusters/pg/status");
    assert_eq!(patches.len(), 1);
    let status = &patches[0].body["status"];
    for t in ["Ready", "Stalled"] {
        let c = condition(status, t);
        assert_eq!(c["reason"], reason::SECRET_MISSING, "{t}");
        let msg = c["message"].as_str().unwrap();
        assert!(
            msg.contains("db/pg-ssh") && msg.contains("spec.ssh.privateKeySecret"),
            "{msg}"
        );
    }
    assert_eq!(
        condition(status, "Degraded")["status"],
        "False",
        "blocked is not degraded"
    );
    assert!(ctx.metrics.encode().contains(r#"reason="SecretMissing""#));
}

#[tokio::test]
async fn generated_passwords_are_created_once_owned_by_the_cluster_and_then_kept() {
    let (api, client) = FakeApi::start(stored(true), NS);
    api.add_secret("pg-ssh", &[("id_ed25519", "KEY")]);
    let pgc: PostgresCluster = serde_json::from_value(stored(true)).unwrap();
    let first = dereference::resolve(&client, &pgc).await.unwrap();
    let created = api.sent(Method::POST, "/namespaces/db/secrets");
    assert_eq!(created.len(), 2, "the passwords and the CA");
    let ca = &created[1].body;
    assert_eq!(
        (ca["metadata"]["name"].as_str(), ca["type"].as_str()),
        (Some("pg-ca"), Some("kubernetes.io/tls"))
    );
    assert_eq!(ca["metadata"]["ownerReferences"][0]["uid"], "u-1");
    assert!(
        first
            .ca
            .as_ref()
            .unwrap()
            .cert
            .contains("BEGIN CERTIFICATE")
    );
    let meta = &created[0].body["metadata"];
    assert_eq!(meta["name"], "pg-passwords");
    assert_eq!(meta["ownerReferences"][0]["uid"], "u-1");
    assert_eq!(meta["ownerReferences"][0]["controller"], true);
    assert_eq!(meta["labels"]["app.kubernetes.io/managed-by"], "pgmetal");
    assert_eq!(first.private_key, "KEY");
    api.clear();
    let again = dereference::resolve(&client, &pgc).await.unwrap();
    assert!(
        api.sent(Method::POST, "/secrets").is_empty(),
        "created once"
    );
    assert_eq!(
        again.secrets, first.secrets,
        "the passwords of a running cluster stay"
    );
    assert_eq!(again.ca, first.ca, "and its CA");
}

#[tokio::test]
async fn a_password_secret_from_before_the_stats_password_gets_it_added_and_keeps_the_rest() {
    let (api, client) = FakeApi::start(stored(true), NS);
    api.add_secret("pg-ssh", &[("id_ed25519", "KEY")]);
    let old = [
        ("superuser", "a"),
        ("replication", "b"),
        ("rewind", "c"),
        ("restapi", "d"),
    ];
    api.add_secret("pg-passwords", &old);
    let pgc: PostgresCluster = serde_json::from_value(stored(true)).unwrap();
    let r = dereference::resolve(&client, &pgc).await.unwrap();
    let s = &r.secrets;
    assert_eq!(
        [&s.superuser, &s.replication, &s.rewind, &s.restapi],
        ["a", "b", "c", "d"]
    );
    assert_eq!(s.haproxy_stats.len(), 32);
    let patched = api.sent(Method::PATCH, "/secrets/pg-passwords");
    assert_eq!(patched.len(), 1);
    let sent = &patched[0].body;
    let keys: Vec<&String> = sent["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["haproxyStats"], "only the missing key is sent");
    assert_eq!(
        sent["metadata"]["resourceVersion"], "1",
        "the patch is conditional on what was read"
    );
    api.clear();
    let again = dereference::resolve(&client, &pgc).await.unwrap();
    assert!(api.sent(Method::PATCH, "/secrets").is_empty(), "added once");
    assert_eq!(again.secrets, r.secrets);
}

#[tokio::test]
async fn with_every_password_in_named_secrets_only_the_stats_password_is_generated() {
    let mut obj = stored(true);
    let mine = json!({"name": "mine", "key": "pw"});
    for (role, name) in [
        ("superuser", "postgres"),
        ("replication", "replicator"),
        ("rewind", "rewinder"),
    ] {
        obj["spec"]["postgres"][role] = json!({"name": name, "passwordSecret": mine.clone()});
    }
    obj["spec"]["patroni"]["restApiPasswordSecret"] = mine;
    let (api, client) = FakeApi::start(obj.clone(), NS);
    api.add_secret("pg-ssh", &[("id_ed25519", "KEY")]);
    api.add_secret("mine", &[("pw", "given")]);
    let pgc: PostgresCluster = serde_json::from_value(obj).unwrap();
    let r = dereference::resolve(&client, &pgc).await.unwrap();
    assert_eq!(r.secrets.superuser, "given");
    assert_eq!(r.secrets.restapi, "given");
    let created = api.sent(Method::POST, "/namespaces/db/secrets");
    let passwords = created
        .iter()
        .find(|c| c.body["metadata"]["name"] == "pg-passwords")
        .expect("the generated Secret");
    let keys: Vec<&String> = passwords.body["data"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["haproxyStats"],
        "no unused passwords beside the given ones"
    );
}

#[tokio::test]
async fn a_provided_ca_is_read_from_its_secret_and_checked_never_created() {
    let mut obj = stored(true);
    obj["spec"]["tls"] = json!({"mode": "Provided", "caSecret": "given-ca"});
    let (api, client) = FakeApi::start(obj.clone(), NS);
    api.add_secret("pg-ssh", &[("id_ed25519", "KEY")]);
    let pgc: PostgresCluster = serde_json::from_value(obj).unwrap();
    let Err(e) = dereference::resolve(&client, &pgc).await else {
        panic!("resolved without the CA's Secret");
    };
    assert!(
        e.to_string().contains("given-ca") && e.to_string().contains("spec.tls.caSecret"),
        "{e}"
    );
    let now = time::OffsetDateTime::now_utc();
    let given = crate::tls::new_ca("given", now, crate::tls::CA_LIFETIME).unwrap();
    api.add_secret(
        "given-ca",
        &[("tls.crt", &given.cert), ("tls.key", &given.key.0)],
    );
    let r = dereference::resolve(&client, &pgc).await.unwrap();
    assert_eq!(r.ca, Some(given.clone()));
    let created = api.sent(Method::POST, "/namespaces/db/secrets");
    assert!(
        !created
            .iter()
            .any(|c| c.body["metadata"]["name"] == "pg-ca"),
        "pgmetal makes no CA of its own"
    );
    // A certificate that is not a CA is refused with the reason.
    let leaf = crate::tls::issue(
        &given,
        &crate::tls::Request {
            common_name: "x".into(),
            names: vec!["x".into()],
            usage: crate::tls::Usage::Server,
        },
        now,
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    api.add_secret(
        "given-ca",
        &[("tls.crt", &leaf.cert), ("tls.key", &leaf.key.0)],
    );
    let Err(e) = dereference::resolve(&client, &pgc).await else {
        panic!("a leaf accepted as the CA");
    };
    assert!(e.to_string().contains("not a CA certificate"), "{e}");
}

#[tokio::test]
async fn an_existing_ca_secret_of_the_clusters_name_is_checked_before_it_signs() {
    let obj = stored(true);
    let (api, client) = FakeApi::start(obj.clone(), NS);
    api.add_secret("pg-ssh", &[("id_ed25519", "KEY")]);
    // Someone made `pg-ca` before the cluster did, holding a leaf, not a CA.
    let now = time::OffsetDateTime::now_utc();
    let ca = crate::tls::new_ca("someone", now, crate::tls::CA_LIFETIME).unwrap();
    let request = crate::tls::Request {
        common_name: "x".into(),
        names: vec!["x".into()],
        usage: crate::tls::Usage::Server,
    };
    let leaf = crate::tls::issue(&ca, &request, now, std::time::Duration::from_secs(3600)).unwrap();
    api.add_secret(
        "pg-ca",
        &[("tls.crt", &leaf.cert), ("tls.key", &leaf.key.0)],
    );
    let pgc: PostgresCluster = serde_json::from_value(obj).unwrap();
    let Err(e) = dereference::resolve(&client, &pgc).await else {
        panic!("a leaf in pg-ca signed for the cluster");
    };
    assert!(
        e.to_string().contains("pg-ca") && e.to_string().contains("not a CA certificate"),
        "{e}"
    );
}

/// The deleted object: a deletion timestamp and the finalizer.
fn deleted() -> Value {
    let mut obj = stored(true);
    obj["metadata"]["deletionTimestamp"] = json!("2026-11-29T12:00:00Z");
    obj
}

#[tokio::test]
async fn deletion_without_the_ssh_secret_lets_go_with_a_warning() {
    let (api, client) = FakeApi::start(deleted(), NS);
    let ctx = context(client);
    reconcile_stored(&api, &ctx).await.unwrap();
    let events = api.events();
    assert_eq!(reasons(&events), ["Warning:CleanupSkipped"]);
    let note = events[0]["note"].as_str().unwrap();
    assert!(
        note.contains("NOT stopped") && note.contains("pg-ssh"),
        "{note}"
    );
    assert_eq!(
        api.cluster.lock().unwrap()["metadata"]["finalizers"],
        json!([])
    );
    assert!(api.sent(Method::PATCH, "/status").is_empty());
}

#[tokio::test]
async fn deletion_keeps_the_finalizer_while_a_host_cannot_be_reached() {
    let (api, client) = FakeApi::start(deleted(), NS);
    api.add_secret(
        "pg-ssh",
        &[("id_ed25519", &crate::engine::connect::tests::TEST_KEY)],
    );
    api.add_secret(
        "pg-passwords",
        &[
            ("superuser", "a"),
            ("replication", "b"),
            ("rewind", "c"),
            ("restapi", "d"),
            ("haproxyStats", "e"),
        ],
    );
    let ctx = context(client);
    let err = reconcile_stored(&api, &ctx).await.unwrap_err();
    assert_eq!(err.metric_label(), "Cleanup");
    let msg = err.to_string();
    assert!(
        msg.contains("127.0.0.11") && msg.contains("remove the finalizer by hand"),
        "{msg}"
    );
    assert_eq!(
        api.cluster.lock().unwrap()["metadata"]["finalizers"],
        json!([FINALIZER])
    );
    assert!(api.events().is_empty(), "{:?}", api.events());
}

#[tokio::test]
async fn retain_keeps_the_generated_passwords_by_dropping_their_owner() {
    let mut obj = deleted();
    obj["spec"]["deletionPolicy"] = json!("Retain");
    let (api, client) = FakeApi::start(obj, NS);
    api.add_secret("pg-passwords", &[("superuser", "a")]);
    api.secrets.lock().unwrap().get_mut("pg-passwords").unwrap()["metadata"]["ownerReferences"] = json!([{"apiVersion": "pgmetal.io/v1alpha1", "kind": "PostgresCluster", "name": "pg", "uid": "u-1", "controller": true}]);
    let ctx = context(client);
    reconcile_stored(&api, &ctx).await.unwrap();
    let patched = api.sent(Method::PATCH, "/secrets/pg-passwords");
    assert_eq!(patched.len(), 1, "{:?}", api.requests());
    assert_eq!(
        patched[0].body,
        json!({"metadata": {"ownerReferences": null}})
    );
    let kept = api.secrets.lock().unwrap()["pg-passwords"].clone();
    assert!(kept["metadata"].get("ownerReferences").is_none(), "{kept}");

    // Wipe: the data goes, and the passwords may go with the resource.
    let mut obj = deleted();
    obj["spec"]["deletionPolicy"] = json!("Wipe");
    let (api, client) = FakeApi::start(obj, NS);
    reconcile_stored(&api, &context(client)).await.unwrap();
    assert!(api.sent(Method::PATCH, "/secrets/pg-passwords").is_empty());
}

/// The observation's Patroni client is kept while the cluster's inputs stay the same (its
/// connections and TLS sessions with it), made anew when they change or the cluster is gone.
#[tokio::test]
async fn the_observation_client_is_kept_while_the_inputs_stay() {
    let (_api, client) = FakeApi::start(stored(false), NS);
    let ctx = context(client);
    let made = std::sync::atomic::AtomicUsize::new(0);
    let make = || {
        made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let view = crate::engine::fake::view("a", &[]);
        let api = crate::engine::fake::FakePatroni::new(view, Value::Null);
        Arc::new(api) as Arc<dyn crate::engine::patroni_api::Patroni>
    };
    let first = ctx.observer("ns/pg", "inputs-1", make);
    let again = ctx.observer("ns/pg", "inputs-1", make);
    assert!(Arc::ptr_eq(&first, &again), "kept for the same inputs");
    assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 1);
    let other = ctx.observer("ns/other", "inputs-1", make);
    assert!(!Arc::ptr_eq(&first, &other), "one per cluster");
    let changed = ctx.observer("ns/pg", "inputs-2", make);
    assert!(
        !Arc::ptr_eq(&first, &changed),
        "made anew when the inputs change"
    );
    ctx.forget("ns/pg", "pg");
    let after = ctx.observer("ns/pg", "inputs-2", make);
    assert!(
        !Arc::ptr_eq(&changed, &after),
        "made anew once the cluster was forgotten"
    );
    assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 4);
}

/// The stored status once it has `Ready` True, reconciling every 100 ms (a converge runs in the
/// background between looks); None after `looks`.
async fn reconcile_until_ready(api: &FakeApi, ctx: &Arc<Context>, looks: usize) -> Option<Value> {
    for _ in 0..looks {
        reconcile_stored(api, ctx).await.unwrap();
        let status = api.cluster.lock().unwrap()["status"].clone();
        let conds = status["conditions"].as_array().cloned().unwrap_or_default();
        if conds
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
        {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The whole reconciler over simulated hosts (the backend seam): a new cluster converges, turns
/// Ready, and its status follows a failover at the next look.
#[tokio::test]
async fn over_simulated_hosts_a_cluster_turns_ready_and_status_follows_a_failover() {
    let mut obj = stored(true);
    obj["spec"]["haproxy"]["hosts"] = json!([]);
    let (api, client) = FakeApi::start(obj, NS);
    let key = crate::engine::connect::tests::TEST_KEY.as_str();
    api.add_secret("pg-ssh", &[("id_ed25519", key)]);
    let sim = Arc::new(super::backend::sim::Simulated::default());
    let ctx = context_with(client, sim.clone());
    let status = reconcile_until_ready(&api, &ctx, 100).await;
    let status =
        status.unwrap_or_else(|| panic!("never Ready: {}", api.cluster.lock().unwrap()["status"]));
    assert_eq!(status["primary"], "127.0.0.11", "{status}");
    let hosts = status["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3, "{status}");
    assert!(
        hosts
            .iter()
            .all(|h| h["hostKeyFingerprint"] == super::backend::sim::FINGERPRINT),
        "each host's key pinned at its first connection: {status}"
    );

    assert!(sim.fail_over("127.0.0.11", "127.0.0.12"));
    // The first look may still read the view queued before the failover.
    for _ in 0..2 {
        reconcile_stored(&api, &ctx).await.unwrap();
    }
    let status = api.cluster.lock().unwrap()["status"].clone();
    assert_eq!(status["primary"], "127.0.0.12", "{status}");
}

#[tokio::test]
async fn s3_credentials_are_read_from_the_named_secret_and_a_missing_one_is_named() {
    let mut obj = stored(true);
    obj["spec"]["backup"] = json!({"repository": {"s3": {"endpoint": "s3.example", "bucket": "b",
        "credentialsSecret": "s3-keys"}}});
    let (api, client) = FakeApi::start(obj.clone(), NS);
    api.add_secret("pg-ssh", &[("id_ed25519", "KEY")]);
    let pgc: PostgresCluster = serde_json::from_value(obj).unwrap();
    let Err(e) = dereference::resolve(&client, &pgc).await else {
        panic!("resolved without the S3 credentials' Secret");
    };
    let e = e.to_string();
    assert!(
        e.contains("s3-keys") && e.contains("spec.backup.repository.s3.credentialsSecret"),
        "{e}"
    );
    api.add_secret("s3-keys", &[("accessKeyId", "AKID")]);
    let e = dereference::resolve(&client, &pgc).await.err().unwrap();
    assert!(e.to_string().contains("secretAccessKey"), "{e}");
    api.add_secret(
        "s3-keys",
        &[("accessKeyId", "AKID"), ("secretAccessKey", "SK")],
    );
    let r = dereference::resolve(&client, &pgc).await.unwrap();
    let creds = &r.secrets.s3["s3-keys"];
    assert_eq!(
        (
            creds.access_key_id.as_str(),
            creds.secret_access_key.as_str()
        ),
        ("AKID", "SK")
    );
}

#[cfg(test)]
#[path = "recovery_window_tests.rs"]
mod recovery_window_tests;
