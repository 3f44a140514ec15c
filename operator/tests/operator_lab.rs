//! The operator end to end: `pgmetal operator`, as the Helm chart's ServiceAccount with exactly
//! the chart's RBAC, against the real API server and real lab hosts. kubectl apply → Ready;
//! kubectl get columns; psql through HAProxy; declarative switchover; pause; a power cut of the
//! primary (status follows, Degraded names the host, fail-back); a restarted operator converges
//! with no changes; password rotation; deletion runs the finalizer and stops the services.
//! Ignored by a plain `cargo test`: e2e/test runs it with PGMETAL_LAB=1, PGMETAL_K8S=1 and
//! `--include-ignored`.

#[path = "operator_lab/access.rs"]
mod access;
#[path = "operator_lab/backups.rs"]
mod backups;
mod common;
#[path = "operator_lab/deletion.rs"]
mod deletion;
#[path = "common/k8s.rs"]
mod k8s;
#[path = "operator_lab/monitoring.rs"]
mod monitoring;
#[path = "common/operator.rs"]
mod operator;
#[path = "operator_lab/provided.rs"]
mod provided;
#[path = "operator_lab/side_clusters.rs"]
mod side_clusters;
#[path = "operator_lab/topology.rs"]
mod topology;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use access::{kubectl_plugin_shows_and_connects, passwords_rotate_through_the_leader};
use common::{Lab, psql, repo};
use k8s::Kube;
use operator::{Operator, kubectl_pgmetal, lab_namespace, wait_until};
use side_clusters::{
    another_cluster_is_refused_and_leaves_the_host_alone,
    blocked_cluster_stalls_with_distinct_reasons,
};

fn manifest(lab: &Lab, primary: &str) -> String {
    manifest_with(lab, primary, "")
}

fn manifest_with(lab: &Lab, primary: &str, extra: &str) -> String {
    let h = &lab.hosts;
    format!(
        r#"apiVersion: pgmetal.io/v1alpha1
kind: PostgresCluster
metadata: {{name: lab}}
spec:
  ssh:
    privateKeySecret: {{name: lab-ssh, key: ssh-privatekey}}
    knownHostsSecret: {{name: lab-ssh, key: known_hosts}}
  packages:
    repository: {{apt: "{apt}"}}
    patroni: {{indexUrl: "{pip}"}}
  postgres:
    primary: {primary}
    replicas: [{others}]
  patroni: {{ttl: 20, loopWait: 5, retryTimeout: 5, failback: Automatic, failbackDelaySeconds: 10}}
  etcd:
    hosts: [{a}, {b}, {c}]
  haproxy:
    hosts: [{d}]
{extra}"#,
        apt = lab.var("LAB_APT_REPO"),
        pip = lab.var("LAB_PIP_INDEX"),
        others = h[..3]
            .iter()
            .filter(|x| *x != primary)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        a = h[0],
        b = h[1],
        c = h[2],
        d = h[3]
    )
}

/// The reasons of every event in `ns`, space-separated.
fn event_reasons(kube: &Kube, ns: &str) -> String {
    let reasons = "jsonpath={.items[*].reason}";
    kube.kubectl(&["-n", ns, "get", "events", "-o", reasons])
        .expect_ok()
}

fn get(kube: &Kube, ns: &str, path: &str) -> String {
    kube.jsonpath(ns, "pgc/lab", path)
}

/// What every step of the operator e2e works on: the lab, the API server, the namespace, the
/// preferred primary (h1), the switchover target (h2) and the HAProxy host (lb).
#[derive(Clone, Copy)]
struct E2e<'a> {
    lab: &'a Lab,
    kube: &'a Kube,
    ns: &'a str,
    h1: &'a str,
    h2: &'a str,
    lb: &'a str,
}

#[test]
#[ignore = "needs the lab and the API server; e2e/test runs it"]
fn operator_runs_a_cluster_from_kubectl() {
    let lab = Lab::require(4);
    let kube = Kube::require();
    let ns = format!("pgmetal-e2e-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let e = E2e {
        lab: &lab,
        kube: &kube,
        ns: &ns,
        h1: &lab.hosts[0],
        h2: &lab.hosts[1],
        lb: &lab.hosts[3],
    };
    let identity = lab_namespace(&kube, &lab, &ns, dir.path());
    let op = Operator::start(&identity, &ns, dir.path().join("operator.log"));
    let from = Operator::image().unwrap_or_else(|| "the pgmetal binary".into());
    eprintln!("the operator runs from {from}");

    // 0. A cluster that cannot start: Stalled names why, kstatus (Flux) reads Failed, and the
    //    error metric says which problem it was.
    blocked_cluster_stalls_with_distinct_reasons(&lab, &kube, &ns);
    // 1. kubectl apply → Ready; kubectl get columns; psql through HAProxy.
    monitoring::install_scrape_config_crd(&kube);
    let pw = ready_from_kubectl_apply(e, &op);
    // 1b. Prometheus scrapes the published targets; a replica's power cut fires its alert.
    let (lb, replica) = (e.lb, lab.hosts[2].as_str());
    monitoring::prometheus_scrapes_and_alerts_on_a_replica_power_cut(
        &lab,
        &kube,
        &ns,
        (lb, replica),
    );
    // 2. Identity and claims; another cluster naming a host is refused.
    identity_and_claims(e);
    another_cluster_is_refused_and_leaves_the_host_alone(&lab, &kube, &ns);
    // 3. Declarative switchover, then pause and resume.
    let mark = switchover_by_spec(e, &pw);
    pause_and_resume(e);
    // 4. Power cut of the primary: failover on the resource, then fail-back.
    power_cut_failover_and_failback(e, &op, mark);
    // 5. A restarted operator converges the unchanged resource with zero changes.
    drop(op);
    let op = restarted_operator_changes_nothing(e, &identity, dir.path().join("operator2.log"));
    // 6. Certificates from a CA in a Secret someone else keeps, rotated, then pgmetal's again.
    provided::certificates_from_a_provided_ca(e, &pw);
    // 7. Password rotation through the Secret.
    passwords_rotate_through_the_leader(&lab, &kube, &ns, &pw);
    // 8. A replica leaves the spec and comes back.
    let replicas = (
        lab.hosts[1].as_str(),
        lab.hosts[0].as_str(),
        lab.hosts[2].as_str(),
    );
    topology::a_replica_leaves_and_returns_through_the_spec(&lab, &kube, &ns, replicas);
    // 9. Backups turned on for the running cluster; a backup asked for with the plugin.
    backups::backups_through_kubectl(&kube, &ns, e.lb);
    // 10. Deletion (Retain) completes the finalizer, stops the services, keeps data and passwords.
    deletion::keeps_data_and_releases_claims(&lab, &kube, &ns, (e.h1, e.lb));
    eprintln!("operator RSS at the end: {} KiB", op.rss_kib());
    let _ = kube.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

/// kubectl apply → Ready: Progressing shows at once, kstatus reads InProgress until Ready and
/// Current after; `kubectl get` columns; psql through HAProxy. Returns the superuser password.
fn ready_from_kubectl_apply(e: E2e, op: &Operator) -> String {
    let E2e {
        lab,
        kube,
        ns,
        h1,
        lb,
        ..
    } = e;
    // 1. kubectl apply → Ready.
    let t = Instant::now();
    kube.run(&["-n", ns, "apply", "-f", "-"], Some(&manifest(lab, h1)))
        .expect_ok();
    // The converge runs beside the reconcile: status says so within seconds, not after it.
    let shown = wait_until(
        "Progressing=True and Ready=False while the hosts converge",
        Duration::from_secs(15),
        || {
            get(
                kube,
                ns,
                r#".status.conditions[?(@.type=="Progressing")].status"#,
            ) == "True"
                && get(kube, ns, r#".status.conditions[?(@.type=="Ready")].status"#) == "False"
        },
    );
    eprintln!(
        "TIMING Progressing=True {shown:.1}s after apply: {}",
        get(
            kube,
            ns,
            r#".status.conditions[?(@.type=="Progressing")].message"#
        )
    );
    // Until Ready, kstatus (what Flux's health checks compute) reads InProgress; then Current.
    let mut until_ready = Vec::new();
    let t_ready = Instant::now();
    loop {
        let obj = kube
            .kubectl(&["-n", ns, "get", "pgc/lab", "-o", "json"])
            .expect_ok();
        let (ks, msg) = k8s::kstatus_of(&obj);
        let v: serde_json::Value = serde_json::from_str(&obj).unwrap();
        let conds = v["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ready = conds
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready {
            assert_eq!(ks, "Current", "kstatus once Ready: {msg}");
            break;
        }
        assert_eq!(ks, "InProgress", "kstatus before Ready: {msg}\n{obj}");
        if until_ready.last() != Some(&msg) {
            until_ready.push(msg);
        }
        assert!(
            t_ready.elapsed() < Duration::from_secs(600),
            "not Ready: {}\noperator log tail:\n{}",
            kube.kubectl(&["-n", ns, "describe", "pgc/lab"]).stdout,
            tail(&op.log())
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("kstatus InProgress messages until Ready: {until_ready:#?}");
    eprintln!(
        "TIMING kubectl apply -> Ready: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let table = kube.kubectl(&["-n", ns, "get", "pgc"]).expect_ok();
    eprintln!("{table}");
    assert_eq!(k8s::table_cell(&table, 0, "PRIMARY").as_deref(), Some(h1));
    assert_eq!(
        k8s::table_cell(&table, 0, "MEMBERS").as_deref(),
        Some("3/3")
    );
    assert_eq!(k8s::table_cell(&table, 0, "READY").as_deref(), Some("True"));
    let pw = kube
        .kubectl(&[
            "-n",
            ns,
            "get",
            "secret",
            "lab-passwords",
            "-o",
            "go-template={{.data.superuser | base64decode}}",
        ])
        .expect_ok();
    assert_eq!(pw.len(), 32, "a generated password");
    assert_eq!(
        psql(lb, 5000, &pw, "SELECT pg_is_in_recovery()").unwrap(),
        "f"
    );
    psql(
        lb,
        5000,
        &pw,
        "CREATE TABLE e2e(v int); INSERT INTO e2e VALUES (1)",
    )
    .unwrap();
    wait_until("a replica serving the row", Duration::from_secs(10), || {
        psql(
            lb,
            5001,
            &pw,
            "SELECT pg_is_in_recovery(), count(*) FROM e2e",
        )
        .as_deref()
            == Ok("t|1")
    });
    let describe = kube.kubectl(&["-n", ns, "describe", "pgc/lab"]).expect_ok();
    assert!(
        describe.contains("EtcdHealthy") && describe.contains("RoutingReady"),
        "{describe}"
    );
    kubectl_plugin_shows_and_connects(e);
    pw
}

/// Status records the system identifier pg_controldata reports on every member, and each host
/// carries this cluster's claim.
fn identity_and_claims(e: E2e) {
    let E2e { lab, kube, ns, .. } = e;
    // 2. Identity: status records the system identifier pg_controldata reports on every
    //    member, and each host carries this cluster's claim.
    let recorded = get(kube, ns, ".status.systemIdentifier");
    let uid = kube.jsonpath(ns, "pgc/lab", ".metadata.uid");
    for h in &lab.hosts[..3] {
        let control = lab.ssh_ok(
            h,
            "/usr/lib/postgresql/15/bin/pg_controldata -D /data/pg_data",
        );
        assert!(
            !recorded.is_empty()
                && control.contains(&format!("Database system identifier:           {recorded}")),
            "{h}: status says {recorded:?}, pg_controldata:\n{control}"
        );
    }
    for h in &lab.hosts {
        let claim = lab.ssh_ok(h, "cat /var/lib/pgmetal/claim");
        assert!(claim.contains(&format!("uid={uid}")), "{h}: {claim}");
    }
}

/// A changed `spec.postgres.primary` switches over: status, HAProxy and the split-brain
/// guard's mark follow. Returns the mark's timeline.
fn switchover_by_spec(e: E2e, pw: &str) -> i64 {
    let E2e {
        lab,
        kube,
        ns,
        h2,
        lb,
        ..
    } = e;
    // 3. Declarative switchover: `kubectl pgmetal switchover` changes spec.postgres.primary
    //    (as `kubectl apply` of the edited manifest would); status and HAProxy follow.
    let t = Instant::now();
    let (ok, out, err) = kubectl_pgmetal(kube, &["switchover", "lab", h2, "-n", ns]);
    assert!(ok, "kubectl pgmetal switchover: {out} {err}");
    assert_eq!(
        kube.jsonpath(ns, "pgc/lab", ".spec.postgres.replicas"),
        format!(r#"["{}","{}"]"#, lab.hosts[0], lab.hosts[2]),
        "the old primary takes the new one's place among the replicas"
    );
    wait_until(
        "status.primary to follow the switchover",
        Duration::from_secs(120),
        || get(kube, ns, ".status.primary") == h2,
    );
    wait_until(
        "HAProxy to route writes to the new primary",
        Duration::from_secs(30),
        || psql(lb, 5000, pw, "SELECT inet_server_addr()").is_ok_and(|a| a.starts_with(h2)),
    );
    eprintln!(
        "TIMING switchover via spec: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    // The split-brain guard's mark follows a switchover: the new leader on a newer timeline.
    wait_until(
        "status.leaderTimeline to follow the switchover",
        Duration::from_secs(30),
        || get(kube, ns, ".status.leaderTimeline.leader") == h2,
    );
    let mark: i64 = get(kube, ns, ".status.leaderTimeline.timeline")
        .parse()
        .expect("status.leaderTimeline.timeline");
    assert!(
        mark >= 2,
        "a switchover starts timeline 2 or later, got {mark}"
    );
    mark
}

/// `spec.paused` puts Patroni in maintenance mode and says so (patronictl pause); then resume.
fn pause_and_resume(e: E2e) {
    let E2e {
        lab,
        kube,
        ns,
        h1,
        h2,
        ..
    } = e;
    // Pause (patronictl pause): Patroni goes into maintenance mode and the condition says so; then resume.
    let api_pause = |h: &str| -> Option<bool> {
        let v = lab.patroni_get(h, "/cluster")?;
        Some(v["pause"].as_bool().unwrap_or(false))
    };
    kube.run(
        &["-n", ns, "apply", "-f", "-"],
        Some(&manifest_with(lab, h2, "  paused: true\n")),
    )
    .expect_ok();
    wait_until(
        "Patroni paused and ReconciliationPaused",
        Duration::from_secs(60),
        || {
            api_pause(h1) == Some(true)
                && get(
                    kube,
                    ns,
                    r#".status.conditions[?(@.type=="ReconciliationPaused")].status"#,
                ) == "True"
        },
    );
    kube.run(&["-n", ns, "apply", "-f", "-"], Some(&manifest(lab, h2)))
        .expect_ok();
    wait_until("Patroni resumed", Duration::from_secs(60), || {
        api_pause(h1) == Some(false)
            && get(
                kube,
                ns,
                r#".status.conditions[?(@.type=="ReconciliationPaused")].status"#,
            ) == "False"
    });
}

/// A power cut of the primary: Patroni fails over, status and `lastFailover` follow, Degraded
/// names the host; it comes back, and fail-back (Automatic) makes it primary again after
/// `failbackDelaySeconds`. No false split-brain alarm.
fn power_cut_failover_and_failback(e: E2e, op: &Operator, mark: i64) {
    let E2e {
        lab, kube, ns, h2, ..
    } = e;
    // 4. Power cut of the primary: Patroni fails over; status follows within 15 s; Degraded names the host.
    let leader = || -> Option<String> {
        let v = lab.patroni_get(&lab.hosts[2], "/cluster")?;
        v["members"]
            .as_array()?
            .iter()
            .find(|m| m["role"] == "leader")
            .and_then(|m| m["host"].as_str())
            .map(String::from)
    };
    let kill = Command::new(repo().join("e2e/lab"))
        .args(["kill", h2])
        .output()
        .unwrap();
    assert!(kill.status.success());
    let t = Instant::now();
    wait_until("Patroni to fail over", Duration::from_secs(90), || {
        leader().is_some_and(|l| l != h2)
    });
    let failover = t.elapsed().as_secs_f64();
    let t2 = Instant::now();
    wait_until(
        "status.primary to follow the failover",
        Duration::from_secs(30),
        || {
            let p = get(kube, ns, ".status.primary");
            !p.is_empty() && p != h2
        },
    );
    let follow = t2.elapsed().as_secs_f64();
    eprintln!(
        "TIMING failover by Patroni {failover:.1}s after the power cut; status followed {follow:.1}s later"
    );
    // The failover is on the resource: from, to, and how long writes were unavailable as the
    // operator saw it (observing every 5 s, so within the failover time plus two observations).
    let to = get(kube, ns, ".status.primary");
    wait_until("status.lastFailover", Duration::from_secs(15), || {
        get(kube, ns, ".status.lastFailover.to") == to
    });
    assert_eq!(get(kube, ns, ".status.lastFailover.from"), h2);
    let unavailable: f64 = get(kube, ns, ".status.lastFailover.writesUnavailableSeconds")
        .parse()
        .expect("writesUnavailableSeconds");
    eprintln!("TIMING lastFailover.writesUnavailableSeconds {unavailable}");
    assert!(
        unavailable >= failover - 6.0 && unavailable <= failover + follow + 11.0,
        "writes unavailable {unavailable}s; Patroni took {failover:.1}s"
    );
    let reasons = event_reasons(kube, ns);
    assert!(reasons.contains("FailedOver"), "{reasons}");
    assert!(
        follow <= 15.0,
        "status must follow a failover within 15 s (took {follow:.1}s)"
    );
    wait_until(
        "Degraded naming the dead host",
        Duration::from_secs(30),
        || {
            get(
                kube,
                ns,
                r#".status.conditions[?(@.type=="Degraded")].status"#,
            ) == "True"
                && get(
                    kube,
                    ns,
                    r#".status.conditions[?(@.type=="Degraded")].message"#,
                )
                .contains(h2)
        },
    );

    // The host comes back: it rejoins as a replica, then fail-back (Automatic) makes it primary again.
    let start = Command::new(repo().join("e2e/lab"))
        .args(["start", h2])
        .output()
        .unwrap();
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    let back = wait_until(
        "fail-back to the preferred primary",
        Duration::from_secs(240),
        || get(kube, ns, ".status.primary") == h2,
    );
    eprintln!("TIMING fail-back {back:.1}s after the host booted");
    assert!(
        back >= 10.0,
        "fail-back {back:.1}s after boot: before failbackDelaySeconds (10) of health"
    );
    assert!(
        !get(kube, ns, ".status.failback.lastAt").is_empty(),
        "the fail-back is recorded"
    );
    wait_until("Degraded to clear", Duration::from_secs(120), || {
        get(
            kube,
            ns,
            r#".status.conditions[?(@.type=="Degraded")].status"#,
        ) == "False"
    });
    eprintln!(
        "operator RSS after failover and fail-back: {} KiB",
        op.rss_kib()
    );
    // A failover and a fail-back are not a forked history: the guard stayed quiet and its mark
    // moved forward with each promotion.
    let after: i64 = get(kube, ns, ".status.leaderTimeline.timeline")
        .parse()
        .unwrap();
    assert!(
        after >= mark + 2,
        "two promotions after timeline {mark}, mark is {after}"
    );
    let alarms = event_reasons(kube, ns);
    assert!(
        !alarms.contains("TimelineRegressed") && !alarms.contains("TwoPrimaries"),
        "a false split-brain alarm: {alarms}"
    );
}

/// A restarted operator converges the unchanged resource with zero changes on the hosts.
fn restarted_operator_changes_nothing(e: E2e, identity: &Path, log: PathBuf) -> Operator {
    let E2e {
        lab, kube, ns, h2, ..
    } = e;
    // 5. A restarted operator converges the unchanged resource with zero changes on the hosts.
    let op = Operator::start(identity, ns, log);
    let t = Instant::now();
    kube.run(&["-n", ns, "apply", "-f", "-"], Some(&manifest(lab, h2)))
        .expect_ok();
    op.wait_log(
        "the restarted operator to converge",
        Duration::from_secs(120),
        |log| log.contains("\"converged\""),
    );
    let line = op
        .log()
        .lines()
        .find(|l| l.contains("\"converged\""))
        .unwrap_or_default()
        .to_string();
    eprintln!(
        "TIMING restarted operator converged {:.1}s after the apply",
        t.elapsed().as_secs_f64()
    );
    assert!(
        line.contains("\"changed\":0"),
        "re-apply must change nothing: {line}"
    );
    op
}

fn tail(s: &str) -> String {
    s.lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n")
}
