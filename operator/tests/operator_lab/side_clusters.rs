//! Side scenarios of the operator e2e: a second cluster that names a host of the first is
//! refused, and a cluster that cannot start stalls with a distinct reason each time.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::Lab;
use crate::k8s::Kube;
use crate::operator::wait_until;
use crate::{event_reasons, manifest};

/// A second cluster, `intruder`, names the HAProxy host of `lab`: its converge is refused there
/// before anything runs (Degraded HostClaimed names `lab`), and its deletion leaves the host
/// and its HAProxy alone.
pub fn another_cluster_is_refused_and_leaves_the_host_alone(lab: &Lab, kube: &Kube, ns: &str) {
    let lb = &lab.hosts[3];
    let intruder = format!(
        "apiVersion: pgmetal.io/v1alpha1\nkind: PostgresCluster\nmetadata: {{name: intruder}}\nspec:\n  ssh:\n    privateKeySecret: {{name: lab-ssh, key: ssh-privatekey}}\n    knownHostsSecret: {{name: lab-ssh, key: known_hosts}}\n  postgres: {{primary: {lb}}}\n  etcd: {{hosts: [{lb}]}}\n"
    );
    kube.run(&["-n", ns, "apply", "-f", "-"], Some(&intruder))
        .expect_ok();
    let degraded = |field: &str| {
        let path = format!(r#"{{.status.conditions[?(@.type=="Degraded")].{field}}}"#);
        kube.kubectl(&[
            "-n",
            ns,
            "get",
            "pgc/intruder",
            "-o",
            &format!("jsonpath={path}"),
        ])
        .expect_ok()
    };
    let t = wait_until(
        "Degraded HostClaimed on the intruder",
        Duration::from_secs(90),
        || degraded("reason") == "HostClaimed",
    );
    let msg = degraded("message");
    eprintln!("TIMING HostClaimed {t:.1}s after apply: {msg}");
    assert!(
        msg.contains(&format!("{ns}/lab")) && msg.contains(lb),
        "{msg}"
    );
    assert!(
        !lab.ssh_ok(lb, "cat /var/lib/pgmetal/claim")
            .contains("intruder")
    );
    assert_eq!(
        lab.ssh_ok(lb, "test -e /data/pg_data && echo present || echo absent"),
        "absent",
        "nothing installed or created"
    );
    kube.kubectl(&["-n", ns, "delete", "pgc/intruder", "--timeout=60s"])
        .expect_ok();
    assert_eq!(
        lab.ssh(lb, "systemctl is-active haproxy").stdout,
        b"active\n",
        "the intruder's deletion stopped lab's HAProxy"
    );
    let notes = kube
        .kubectl(&[
            "-n",
            ns,
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=intruder",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .expect_ok();
    assert!(notes.contains("left alone"), "{notes}");
}

/// A second cluster, `blocked`: first its SSH Secret is missing, then its spec names a Patroni
/// release pgmetal refuses (the API server accepts it; pgmetal's own validation does not).
/// Each time Stalled=True names the reason, kstatus reads Failed, and
/// `pgmetal_reconcile_errors_total` counts it under its own reason. Then it is deleted: with
/// no SSH key the finalizer lets go with a Warning.
pub fn blocked_cluster_stalls_with_distinct_reasons(lab: &Lab, kube: &Kube, ns: &str) {
    let base = manifest(lab, &lab.hosts[0])
        .replace("name: lab}", "name: blocked}")
        .replace("name: lab-ssh,", "name: nosuch-ssh,");
    let invalid = base.replace(
        "patroni: {indexUrl:",
        r#"patroni: {version: "3.0.2", indexUrl:"#,
    );
    for (manifest, reason) in [(&base, "SecretMissing"), (&invalid, "InvalidSpec")] {
        kube.run(&["-n", ns, "apply", "-f", "-"], Some(manifest))
            .expect_ok();
        let stalled = |field: &str| {
            let path = format!(r#"{{.status.conditions[?(@.type=="Stalled")].{field}}}"#);
            kube.kubectl(&[
                "-n",
                ns,
                "get",
                "pgc/blocked",
                "-o",
                &format!("jsonpath={path}"),
            ])
            .expect_ok()
        };
        let t = wait_until(
            &format!("Stalled=True {reason}"),
            Duration::from_secs(30),
            || stalled("status") == "True" && stalled("reason") == reason,
        );
        let (ks, msg) = kube.kstatus(&["-n", ns, "pgc/blocked"]);
        eprintln!("TIMING Stalled={reason} {t:.1}s after apply; kstatus {ks}: {msg}");
        assert_eq!(ks, "Failed", "{msg}");
        assert!(msg.contains(&stalled("message")), "kstatus says why: {msg}");
    }
    let metrics = Command::new("curl")
        .args(["-s", "--max-time", "5", "http://127.0.0.1:18080/metrics"])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let reasons: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("pgmetal_reconcile_errors_total{") && l.contains("cluster=\"blocked\"")
        })
        .filter_map(|l| l.split("reason=\"").nth(1)?.split('"').next())
        .collect();
    assert!(
        reasons.contains("SecretMissing") && reasons.contains("InvalidSpec"),
        "distinct error reasons in the metric: {reasons:?}\n{metrics}"
    );
    let t = Instant::now();
    kube.kubectl(&["-n", ns, "delete", "pgc/blocked", "--timeout=60s"])
        .expect_ok();
    eprintln!(
        "TIMING delete of the blocked cluster: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let events = event_reasons(kube, ns);
    assert!(events.contains("CleanupSkipped"), "{events}");
}
