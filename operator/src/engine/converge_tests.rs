//! `Engine::converge` end to end with fakes: `FakeExecutor` per host, `FakePatroni`, `FakeEtcd`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::fake::{FakeEtcd, FakePatroni, view};
use super::*;
use crate::exec::fake::{FakeExecutor, exit};

const HOSTS: [&str; 3] = ["a", "b", "c"];
const DEBIAN: &str = "ID=debian\nVERSION_ID=12\n@@systemd\nyes\n@@packages\n";

/// The commands run on `host` but the read of the schemes its services are configured with
/// (see `schemes.rs`), which comes first everywhere.
fn but_schemes(host: &FakeExecutor) -> Vec<String> {
    let cmds = host.commands().into_iter();
    cmds.filter(|c| !c.contains("index($0, p)")).collect()
}

fn spec() -> PostgresClusterSpec {
    serde_saphyr::from_str(
        "ssh: {privateKeySecret: {name: k, key: k}}\npostgres: {primary: a, replicas: [b, c]}\netcd: {hosts: [a, b, c]}\n",
    )
    .unwrap()
}

fn owner() -> claim::Owner {
    claim::Owner {
        name: "db/pg".into(),
        uid: Some("u-1".into()),
    }
}

fn secrets() -> ClusterSecrets {
    ClusterSecrets {
        superuser: "su".into(),
        replication: "rep".into(),
        rewind: "rw".into(),
        restapi: "api".into(),
        haproxy_stats: "stats".into(),
        s3: Default::default(),
    }
}

/// One Debian host each, every command succeeding.
fn hosts() -> BTreeMap<String, FakeExecutor> {
    HOSTS
        .iter()
        .map(|h| {
            let f = FakeExecutor::new(h);
            f.on_contains("/etc/os-release", 0, DEBIAN);
            f.on_contains("s=pending", 0, "https\n");
            (h.to_string(), f)
        })
        .collect()
}

/// Runs converge with short waits; the Patroni configuration in the DCS is already as desired.
async fn converge(
    spec: &PostgresClusterSpec,
    hosts: &BTreeMap<String, FakeExecutor>,
    api: &FakePatroni,
    etcd: &FakeEtcd,
) -> Report {
    converge_with(spec, &secrets(), hosts, api, etcd).await
}

/// [`converge`] with other passwords.
async fn converge_with(
    spec: &PostgresClusterSpec,
    secrets: &ClusterSecrets,
    hosts: &BTreeMap<String, FakeExecutor>,
    api: &FakePatroni,
    etcd: &FakeEtcd,
) -> Report {
    let conns = connected(hosts);
    engine(spec, secrets, conns, (api, etcd)).converge().await
}

/// A connection to each fake host.
fn connected(hosts: &BTreeMap<String, FakeExecutor>) -> BTreeMap<String, Connection> {
    hosts
        .iter()
        .map(|(h, f)| (h.clone(), Ok(Arc::new(f.clone()) as Arc<dyn Executor>)))
        .collect()
}

/// An engine over `conns` and the fake clients, with short waits.
fn engine<'a>(
    spec: &'a PostgresClusterSpec,
    secrets: &'a ClusterSecrets,
    conns: BTreeMap<String, Connection>,
    (api, etcd): (&FakePatroni, &FakeEtcd),
) -> Engine<'a> {
    let waits = Waits {
        etcd: Duration::from_millis(50),
        patroni: Duration::from_millis(200),
        observe: Duration::from_millis(200),
        every: Duration::from_millis(5),
    };
    Engine::with_clients(
        (owner(), spec),
        secrets,
        conns,
        &Quiet,
        (Arc::new(api.clone()), Arc::new(etcd.clone())),
    )
    .with_waits(waits)
    .with_ca(Some(test_ca()))
}

/// One CA for every test (making a key pair each time would only slow them down).
pub(super) fn test_ca() -> crate::tls::CertKey {
    static CA: std::sync::LazyLock<crate::tls::CertKey> = std::sync::LazyLock::new(|| {
        let now = time::OffsetDateTime::now_utc();
        crate::tls::new_ca("test", now, crate::tls::CA_LIFETIME).unwrap()
    });
    CA.clone()
}

fn patroni(spec: &PostgresClusterSpec, leader: &str, replicas: &[&str]) -> FakePatroni {
    FakePatroni::new(view(leader, replicas), render::dcs_config(spec))
}

/// The Patroni phase ran on the host: it wrote Patroni's configuration (prepare only installs).
fn touched_patroni(f: &FakeExecutor) -> bool {
    f.uploads().iter().any(|u| u.path.contains("patroni"))
}

#[tokio::test]
async fn converges_a_healthy_cluster() {
    let spec = spec();
    let (hosts, api, etcd) = (
        hosts(),
        patroni(&spec, "a", &["b", "c"]),
        FakeEtcd::new(true),
    );
    let r = converge(&spec, &hosts, &api, &etcd).await;
    assert!(r.healthy, "{:?} {:?}", r.problems, r.hosts);
    assert_eq!(r.status.primary.as_deref(), Some("a"));
    assert_eq!(
        r.status.system_identifier.as_deref(),
        Some(super::fake::FAKE_SYSTEM_IDENTIFIER),
        "the primary's system identifier is recorded"
    );
    assert!(hosts.values().all(touched_patroni));
    for (h, f) in &hosts {
        assert_eq!(
            r.hosts[h].round_trips,
            f.events().len(),
            "{h}: every command counted"
        );
        let pem = f
            .uploads()
            .into_iter()
            .find(|u| u.path == render::POSTGRES_PEM);
        assert_eq!(
            pem.map(|u| u.mode),
            Some(0o600),
            "{h}: a private certificate"
        );
        let step = r.hosts[h]
            .steps
            .iter()
            .find(|s| s.step == "postgres certificate");
        assert!(step.is_some_and(|s| s.changed), "{h}: issued");
    }
}

#[tokio::test]
async fn etcd_down_stops_after_the_etcd_phase() {
    let spec = spec();
    let (hosts, api, etcd) = (
        hosts(),
        patroni(&spec, "a", &["b", "c"]),
        FakeEtcd::new(false),
    );
    let r = converge(&spec, &hosts, &api, &etcd).await;
    assert!(!r.healthy);
    let failure = r.failure.as_ref().expect("the converge failed as a whole");
    assert_eq!(failure.kind, crate::engine::HostErrorKind::Etcd);
    assert!(
        r.problems[0].contains("etcd has no healthy quorum"),
        "{:?}",
        r.problems
    );
    for (h, f) in &hosts {
        let paths: Vec<String> = f.uploads().into_iter().map(|u| u.path).collect();
        assert!(!touched_patroni(f), "{h}: {paths:?}");
        assert!(
            f.commands().iter().any(|c| c.contains("etcd")),
            "{h} ran the etcd phase"
        );
    }
    assert!(
        !api.calls().iter().any(|c| c.starts_with("patch_config")),
        "no dynamic configuration: {:?}",
        api.calls()
    );
    // Waiting for health would not help: one observation (the limit here is 200 ms).
    let observe = r.phases.iter().find(|p| p.phase == "observe").unwrap();
    assert!(
        observe.duration_ms < 150,
        "a failed converge observed for {} ms",
        observe.duration_ms
    );
}

#[tokio::test]
async fn a_host_failing_its_install_is_reported_and_the_others_converge() {
    let spec = spec();
    let (hosts, api, etcd) = (
        hosts(),
        patroni(&spec, "a", &["b", "c"]),
        FakeEtcd::new(true),
    );
    hosts["c"].on_contains_reply(
        "--no-install-recommends install",
        exit(100, "", "E: Unable to locate package etcd-server"),
    );
    let r = converge(&spec, &hosts, &api, &etcd).await;
    assert!(!r.healthy);
    let err = r.hosts["c"].error.as_ref().expect("c failed");
    let text = err.to_string();
    assert_eq!(err.host, "c");
    assert!(
        text.contains("install packages") && text.contains("Unable to locate package"),
        "{text}"
    );
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("host c did not converge"))
    );
    assert!(!touched_patroni(&hosts["c"]));
    for h in ["a", "b"] {
        assert!(r.hosts[h].error.is_none(), "{h}: {:?}", r.hosts[h].error);
        assert!(touched_patroni(&hosts[h]), "{h} converged");
    }
}

#[tokio::test]
async fn a_leader_on_a_replica_host_means_bootstrapped() {
    let spec = spec();
    let (hosts, api, etcd) = (
        hosts(),
        patroni(&spec, "b", &["a", "c"]),
        FakeEtcd::new(true),
    );
    let r = converge(&spec, &hosts, &api, &etcd).await;
    let phases: Vec<&str> = r.phases.iter().map(|p| p.phase.as_str()).collect();
    assert!(phases.contains(&"patroni members"), "{phases:?}");
    assert!(!phases.contains(&"patroni primary"), "{phases:?}");
    assert_eq!(r.status.primary.as_deref(), Some("b"));
    assert!(r.healthy, "{:?}", r.problems);
}

#[tokio::test]
async fn a_failover_during_converge_is_observed() {
    let spec = spec();
    let (hosts, api, etcd) = (
        hosts(),
        patroni(&spec, "a", &["b", "c"]),
        FakeEtcd::new(true),
    );
    // The first answers show a leading; then c takes over for good.
    api.then(view("a", &["b", "c"]))
        .then(view("c", &["a", "b"]));
    let r = converge(&spec, &hosts, &api, &etcd).await;
    assert!(r.healthy, "{:?}", r.problems);
    assert_eq!(r.status.primary.as_deref(), Some("c"));
    assert!(hosts.values().all(touched_patroni));
}

#[tokio::test]
async fn a_cluster_wide_failure_fails_the_converge_even_when_every_host_did_its_steps() {
    let mut spec = spec();
    spec.paused = true;
    let (hosts, api, etcd) = (
        hosts(),
        patroni(&spec, "a", &["b", "c"]),
        FakeEtcd::new(true),
    );
    api.down("a").down("b").down("c");
    let r = converge(&spec, &hosts, &api, &etcd).await;
    assert!(r.hosts.values().all(|h| h.error.is_none()));
    let failure = r.failure.as_ref().expect("pausing Patroni failed");
    assert_eq!(failure.kind, crate::engine::HostErrorKind::Patroni);
    assert_eq!(r.problems[0], failure.to_string());
}

#[tokio::test]
async fn a_haproxy_cfg_that_haproxy_refuses_never_replaces_the_live_one() {
    let mut spec = spec();
    spec.haproxy.hosts = vec!["d".into()];
    let mut hosts = hosts();
    let lb = FakeExecutor::new("d");
    lb.on_contains("/etc/os-release", 0, DEBIAN);
    lb.on_contains_reply(
        "haproxy -c",
        exit(
            1,
            "",
            "[ALERT] config : parsing [haproxy.cfg:40]: unknown keyword",
        ),
    );
    hosts.insert("d".into(), lb.clone());
    let (api, etcd) = (patroni(&spec, "a", &["b", "c"]), FakeEtcd::new(true));
    let r = converge(&spec, &hosts, &api, &etcd).await;
    let err = r.hosts["d"].error.as_ref().expect("d failed");
    assert!(err.to_string().contains("unknown keyword"), "{err}");
    let live = "/etc/haproxy/haproxy.cfg";
    assert!(
        !lb.uploads().iter().any(|u| u.path == live),
        "the live file was replaced"
    );
    assert!(
        !lb.commands().iter().any(|c| c.contains("reload haproxy")),
        "{:?}",
        lb.commands()
    );
}

#[tokio::test]
async fn a_host_claimed_by_another_cluster_is_refused_before_anything_runs_on_it() {
    let spec = spec();
    let (hosts, api, etcd) = (
        hosts(),
        patroni(&spec, "a", &["b", "c"]),
        FakeEtcd::new(true),
    );
    let other = claim::Owner {
        name: "db/other".into(),
        uid: Some("u-9".into()),
    };
    hosts["c"].on_contains("/var/lib/pgmetal/claim", 0, &other.render());
    hosts["c"].on_contains("/etc/os-release", 0, DEBIAN); // the facts probe names both
    let r = converge(&spec, &hosts, &api, &etcd).await;
    let err = r.hosts["c"].error.as_ref().expect("c refused");
    assert_eq!(err.kind, HostErrorKind::Claimed);
    let text = err.to_string();
    assert!(text.contains("db/other") && text.contains("u-9"), "{text}");
    let cmds = but_schemes(&hosts["c"]);
    assert_eq!(
        cmds.len(),
        2,
        "only the facts and the claim were read on c: {cmds:?}"
    );
    assert!(cmds[0].contains("/etc/os-release") && cmds[1].contains("exit 0"));
    assert!(hosts["c"].uploads().is_empty());
    // The others are claimed for this cluster on first contact, exclusively.
    for h in ["a", "b"] {
        assert_eq!(claim_written(&hosts[h]), Some(owner()), "{h}");
    }
}

/// The claim a host was given (created exclusively, see `claim::write`).
fn claim_written(host: &FakeExecutor) -> Option<claim::Owner> {
    let runs = host.runs();
    let w = runs.iter().find(|r| r.cmd.contains("set -C"))?;
    claim::Owner::parse(&w.cmd)
}

#[tokio::test]
async fn with_every_etcd_host_failed_the_converge_does_not_wait_for_quorum() {
    let spec = spec();
    let (hosts, api, etcd) = (
        hosts(),
        patroni(&spec, "a", &["b", "c"]),
        FakeEtcd::new(false),
    );
    for h in HOSTS {
        hosts[h].on_contains_reply(
            "--no-install-recommends install",
            exit(100, "", "E: no etcd"),
        );
    }
    let r = converge(&spec, &hosts, &api, &etcd).await;
    let failure = r.failure.as_ref().expect("failed as a whole");
    assert!(
        failure.message.contains("no etcd host could be converged"),
        "{failure}"
    );
    assert!(
        !r.phases.iter().any(|p| p.phase == "wait for etcd quorum"),
        "{:?}",
        r.phases
    );
}

/// A host's live `patroni.yml` as pgmetal rendered it with `secrets`, returned by the fake's `cat`.
fn live_patroni_yml(
    spec: &PostgresClusterSpec,
    hosts: &BTreeMap<String, FakeExecutor>,
    secrets: &ClusterSecrets,
) {
    for (h, f) in hosts {
        let file =
            render::patroni_config(spec, secrets, h, crate::model::OsFamily::Debian).unwrap();
        let text = String::from_utf8(file.content).unwrap();
        f.on_contains(r#"cat -- "$1" 2>/dev/null || true"#, 0, &text);
    }
}

/// Whether a command sets passwords (its SQL comes on stdin).
fn rotates(r: &crate::exec::fake::RecordedRun) -> bool {
    r.stdin
        .as_deref()
        .is_some_and(|s| String::from_utf8_lossy(s).contains("ALTER ROLE"))
}

#[tokio::test]
async fn a_changed_password_is_set_on_the_leader_before_any_member_gets_it() {
    let spec = spec();
    let (hosts, api, etcd) = (
        hosts(),
        patroni(&spec, "b", &["a", "c"]),
        FakeEtcd::new(true),
    );
    let old = ClusterSecrets {
        superuser: "su-old".into(),
        ..secrets()
    };
    live_patroni_yml(&spec, &hosts, &old);
    let r = converge(&spec, &hosts, &api, &etcd).await;
    assert!(r.healthy, "{:?}", r.problems);
    let phases: Vec<&str> = r.phases.iter().map(|p| p.phase.as_str()).collect();
    let at = |p: &str| phases.iter().position(|x| *x == p);
    assert!(at("passwords") < at("patroni members"), "{phases:?}");
    let events = hosts["b"].events();
    let alter = events.iter().position(|e| match e {
        crate::exec::fake::Event::Run(r) => rotates(r),
        _ => false,
    });
    let Some(crate::exec::fake::Event::Run(run)) = alter.map(|i| &events[i]) else {
        panic!("no ALTER ROLE on the leader: {:?}", hosts["b"].commands());
    };
    let stdin = String::from_utf8(run.stdin.clone().unwrap()).unwrap();
    let lines: Vec<&str> = stdin.lines().collect();
    assert_eq!(
        lines[..2],
        ["su-old", "su"],
        "the password in effect, then the new one"
    );
    assert!(
        stdin.contains("ALTER ROLE \"postgres\" PASSWORD 'SCRAM-SHA-256$4096:"),
        "{stdin}"
    );
    assert!(
        !stdin.contains("replicator"),
        "only the changed role: {stdin}"
    );
    assert!(
        !run.cmd.contains("su-old") && !run.cmd.contains("'su'"),
        "a password on a command line: {}",
        run.cmd
    );
    let upload = events.iter().position(
        |e| matches!(e, crate::exec::fake::Event::Upload(u) if u.path.starts_with("/etc/patroni/")),
    );
    let uploads: Vec<String> = hosts["b"].uploads().into_iter().map(|u| u.path).collect();
    assert!(
        alter < upload,
        "patroni.yml written on the leader before ALTER ROLE: {uploads:?}"
    );
    for h in ["a", "c"] {
        assert!(!hosts[h].runs().iter().any(rotates), "{h}");
    }
    // Once the leader's file has the new password, nothing is rotated.
    live_patroni_yml(&spec, &hosts, &secrets());
    hosts["b"].clear();
    converge(&spec, &hosts, &api, &etcd).await;
    assert!(!hosts["b"].runs().iter().any(rotates));
}

#[tokio::test]
async fn a_password_no_configuration_can_carry_is_never_set() {
    let spec = spec();
    let (hosts, api, etcd) = (
        hosts(),
        patroni(&spec, "a", &["b", "c"]),
        FakeEtcd::new(true),
    );
    live_patroni_yml(&spec, &hosts, &secrets());
    let bad = ClusterSecrets {
        superuser: "new\nline".into(),
        ..secrets()
    };
    let r = converge_with(&spec, &bad, &hosts, &api, &etcd).await;
    let err = r.hosts["a"]
        .error
        .as_ref()
        .expect("refused on the leader")
        .to_string();
    assert!(
        err.contains("superuser password") && err.contains("U+000A"),
        "{err}"
    );
    assert!(!hosts["a"].runs().iter().any(rotates));
}

#[path = "topology_tests.rs"]
mod topology_tests;

#[path = "requests_tests.rs"]
mod requests_tests;

#[path = "etcd_tls_tests.rs"]
mod etcd_tls_tests;

#[tokio::test]
async fn monitoring_runs_the_exporters_and_creates_the_role_on_the_leader_only() {
    let spec = spec();
    let (hosts, api, etcd) = (
        hosts(),
        patroni(&spec, "a", &["b", "c"]),
        FakeEtcd::new(true),
    );
    let r = converge(&spec, &hosts, &api, &etcd).await;
    assert!(r.healthy, "{:?}", r.problems);
    for h in hosts.keys() {
        let uploaded: Vec<String> = hosts[h].uploads().into_iter().map(|u| u.path).collect();
        assert!(
            uploaded
                .iter()
                .any(|p| p == "/etc/default/prometheus-node-exporter"),
            "{h}: {uploaded:?}"
        );
        assert!(
            ran_on(&hosts[h], "prometheus-node-exporter"),
            "{h}: exporter unit"
        );
    }
    assert!(
        ran_on(&hosts["a"], "GRANT pg_monitor"),
        "the leader gets the role"
    );
    assert!(!ran_on(&hosts["b"], "GRANT pg_monitor"));
    assert!(!ran_on(&hosts["c"], "GRANT pg_monitor"));

    let mut off = spec.clone();
    off.monitoring.enabled = false;
    let hosts = self::hosts();
    let r = converge(&off, &hosts, &api, &etcd).await;
    assert!(r.healthy, "{:?}", r.problems);
    for h in hosts.keys() {
        assert!(!ran_on(&hosts[h], "GRANT pg_monitor"));
        assert!(
            hosts[h]
                .commands()
                .iter()
                .any(|c| c.contains("disable --now --quiet")),
            "{h}: the exporters are stopped when monitoring is off"
        );
    }
}

fn ran_on(f: &FakeExecutor, what: &str) -> bool {
    f.commands().iter().any(|c| c.contains(what))
}

#[path = "snapshot_tests.rs"]
mod snapshot_tests;

#[tokio::test]
async fn while_members_move_to_https_haproxy_checks_both_schemes_then_only_https() {
    let mut spec = spec();
    spec.haproxy.hosts = vec!["d".into()];
    let mut hosts = hosts();
    let lb = FakeExecutor::new("d");
    lb.on_contains("/etc/os-release", 0, DEBIAN);
    hosts.insert("d".into(), lb.clone());
    let (api, etcd) = (patroni(&spec, "a", &["b", "c"]), FakeEtcd::new(true));
    api.other_scheme("a").other_scheme("b");
    // (The observation cannot read HAProxy's statistics from a fake host: only host errors count.)
    let no_host_error = |r: &Report| r.hosts.values().all(|h| h.error.is_none());
    let r = converge(&spec, &hosts, &api, &etcd).await;
    assert!(no_host_error(&r), "{:?}", r.hosts);
    let configs: Vec<String> = lb
        .uploads()
        .iter()
        .map(|u| String::from_utf8_lossy(&u.content).into_owned())
        .filter(|c| c.contains("listen primary"))
        .collect();
    assert_eq!(configs.len(), 2, "{configs:?}");
    assert!(configs[0].contains("server a-plain a:5432 maxconn 100 check port 8008\n"));
    assert!(!configs[1].contains("-plain"), "{}", configs[1]);
    assert!(lb.uploads().iter().any(|u| u.path == render::CA_CERT));
    let asked = |h: &str| {
        api.calls()
            .iter()
            .filter(|c| **c == format!("scheme {h}"))
            .count()
    };
    assert!(asked("a") >= 2 && asked("b") >= 2, "{:?}", api.calls());

    // Once every member serves HTTPS, the next converge writes no haproxy.cfg.
    let before = lb.uploads().len();
    let r = converge(&spec, &hosts, &api, &etcd).await;
    assert!(no_host_error(&r), "{:?}", r.hosts);
    let again = lb.uploads()[before..]
        .iter()
        .filter(|u| String::from_utf8_lossy(&u.content).contains("-plain"))
        .count();
    assert_eq!(again, 0);
}

#[cfg(test)]
#[path = "dcs_config_tests.rs"]
mod dcs_config_tests;
/// First contact, adoption and CA trust: what a host holds is data, never proof.
#[path = "trust_tests.rs"]
mod trust;
