//! Access steps of the operator e2e: the kubectl plugin (status, psql) and password rotation
//! through the Secret.

use std::time::Duration;

use crate::E2e;
use crate::common::{Lab, psql};
use crate::k8s::Kube;
use crate::operator::{condition, kubectl_pgmetal, wait_until};

/// `kubectl pgmetal status` shows the members and Ready; `kubectl pgmetal psql` connects
/// through HAProxy (read-write, then read-only) with the generated password, over TLS verified
/// with the CA in `lab-ca` (`sslmode=verify-full`: a wrong name or CA would fail).
pub fn kubectl_plugin_shows_and_connects(e: E2e) {
    let E2e { kube, ns, lab, .. } = e;
    let (ok, out, err) = kubectl_pgmetal(kube, &["status", "lab", "-n", ns]);
    eprintln!("kubectl pgmetal status:\n{out}");
    assert!(ok, "kubectl pgmetal status: {err}");
    assert!(out.contains("Ready=True"), "{out}");
    for h in &lab.hosts[..3] {
        assert!(out.contains(h.as_str()), "{h} missing:\n{out}");
    }
    let sql = "SELECT pg_is_in_recovery(), count(*), (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) FROM e2e";
    let (ok, out, err) = kubectl_pgmetal(kube, &["psql", "lab", "-n", ns, "--", "-Atc", sql]);
    assert!(
        ok && out.trim() == "f|1|t",
        "kubectl pgmetal psql: {out} {err}"
    );
    let replica = ["psql", "lab", "-n", ns, "--replica", "--", "-Atc", sql];
    let (ok, out, err) = kubectl_pgmetal(kube, &replica);
    assert!(
        ok && out.trim() == "t|1|t",
        "kubectl pgmetal psql --replica: {out} {err}"
    );
}

/// New superuser and replication passwords in `lab-passwords` are set on the roles through the
/// leader: the new superuser password works through HAProxy and the old one no longer does, and
/// a replica whose PostgreSQL restarts streams again, authenticating with the new replication
/// password.
pub fn passwords_rotate_through_the_leader(lab: &Lab, kube: &Kube, ns: &str, old: &str) {
    let lb = &lab.hosts[3];
    let (su, repl) = ("Rotated-superuser-1", "Rotated-replication-1");
    let patch = format!(r#"{{"stringData": {{"superuser": "{su}", "replication": "{repl}"}}}}"#);
    kube.kubectl(&[
        "-n",
        ns,
        "patch",
        "secret",
        "lab-passwords",
        "--type=merge",
        "-p",
        &patch,
    ])
    .expect_ok();
    let t = wait_until(
        "the new superuser password to work through HAProxy",
        Duration::from_secs(90),
        || psql(lb, 5000, su, "SELECT 1").is_ok(),
    );
    eprintln!("TIMING rotated superuser password in effect {t:.1}s after the Secret changed");
    assert!(
        psql(lb, 5000, old, "SELECT 1").is_err(),
        "the old password still works"
    );
    let primary = kube.jsonpath(ns, "pgc/lab", ".status.primary");
    let replica = lab.hosts[..3].iter().find(|h| **h != primary).unwrap();
    let local = |sql: &str| {
        lab.ssh_ok(
            replica,
            &format!("runuser -u postgres -- psql -X -At -h /var/run/postgresql -c \"{sql}\""),
        )
    };
    // Wait until Patroni has the new configuration everywhere (Ready again), then restart.
    wait_until("Ready after the rotation", Duration::from_secs(90), || {
        condition(kube, ns, "lab", "Ready").0 == "True"
            && condition(kube, ns, "lab", "Progressing").0 == "False"
    });
    let started = local("SELECT pg_postmaster_start_time()");
    lab.ssh_ok(replica, "systemctl restart patroni");
    let t = wait_until(
        "the restarted replica to stream with the new replication password",
        Duration::from_secs(90),
        || {
            let now = lab.ssh(
                replica,
                "runuser -u postgres -- psql -X -At -h /var/run/postgresql -c \
                 \"SELECT pg_postmaster_start_time() || ' ' || coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')\"",
            );
            let now = String::from_utf8_lossy(&now.stdout).trim().to_string();
            !now.starts_with(started.trim()) && now.ends_with("streaming")
        },
    );
    eprintln!("TIMING {replica} streaming again {t:.1}s after its restart");
}
