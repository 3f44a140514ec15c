//! Backups through the operator: `spec.backup` turned on for the running cluster (kubectl
//! patch; its members restart once for `archive_mode`), BackupReady False until the first
//! backup, `kubectl pgmetal backup`, then `status.backup` and BackupReady True.

use std::time::{Duration, Instant};

use super::k8s::Kube;
use super::operator::{condition, kubectl_pgmetal, wait_until};

pub fn backups_through_kubectl(kube: &Kube, ns: &str, repo: &str) {
    let t = Instant::now();
    let patch = serde_json::json!({"spec": {"backup": {"repository": {"host": repo}}}});
    let patched = ["-n", ns, "patch", "pgc", "lab", "--type", "merge", "-p"];
    kube.kubectl(&[&patched[..], &[patch.to_string().as_str()]].concat())
        .expect_ok();
    wait_until(
        "BackupReady False: no full backup yet",
        Duration::from_secs(300),
        || {
            let (status, _, message) = condition(kube, ns, "lab", "BackupReady");
            status == "False" && message.contains("no full backup yet")
        },
    );
    eprintln!(
        "TIMING backups turned on for the running cluster: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let (ok, out, err) = kubectl_pgmetal(kube, &["backup", "lab", "-n", ns]);
    assert!(ok, "kubectl pgmetal backup: {out}\n{err}");
    wait_until("the backup asked for", Duration::from_secs(300), || {
        let taken = kube.jsonpath(ns, "pgc/lab", ".status.requests.backedUpAt");
        !taken.is_empty() && condition(kube, ns, "lab", "BackupReady").0 == "True"
    });
    let label = kube.jsonpath(ns, "pgc/lab", ".status.backup.full.label");
    let window = kube.jsonpath(ns, "pgc/lab", ".status.backup.recoveryWindow.earliest");
    eprintln!(
        "TIMING kubectl pgmetal backup to BackupReady True: {:.1}s (full backup {label}, recoverable from {window})",
        t.elapsed().as_secs_f64()
    );
    assert!(label.ends_with('F'), "status.backup.full.label = {label:?}");
    kube.kubectl(&[
        "-n",
        ns,
        "wait",
        "pgc/lab",
        "--for=condition=BackupReady",
        "--timeout=10s",
    ])
    .expect_ok();
}
