//! Deleting the resource: the finalizer stops the services; Retain keeps the data and the
//! passwords Secret; every claim is released.

use std::time::Instant;

use super::common::Lab;
use super::k8s::Kube;

/// Deletion completes the finalizer and stops the services; Retain keeps the data and the
/// passwords Secret; every claim is released.
pub fn keeps_data_and_releases_claims(lab: &Lab, kube: &Kube, ns: &str, (h1, lb): (&str, &str)) {
    // 7. Deletion completes the finalizer and stops the services.
    let t = Instant::now();
    kube.kubectl(&["-n", ns, "delete", "pgc/lab", "--timeout=120s"])
        .expect_ok();
    eprintln!(
        "TIMING delete with finalizer: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    for h in &lab.hosts[..3] {
        assert_eq!(
            lab.ssh(h, "systemctl is-active patroni").stdout,
            b"inactive\n",
            "patroni still runs on {h}"
        );
    }
    assert_eq!(
        lab.ssh(lb, "systemctl is-active haproxy").stdout,
        b"inactive\n"
    );
    assert!(
        lab.ssh_ok(h1, "test -d /data/pg_data/base && echo kept") == "kept",
        "Retain keeps the data"
    );
    // The kept data needs its passwords: the lab API server has no garbage collector, so the
    // owner reference that would delete them is what is checked.
    let owners = kube
        .kubectl(&[
            "-n",
            ns,
            "get",
            "secret",
            "lab-passwords",
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ])
        .expect_ok();
    assert_eq!(owners, "", "Retain keeps the passwords Secret");
    for h in &lab.hosts {
        assert_eq!(
            lab.ssh_ok(
                h,
                "test -e /var/lib/pgmetal/claim && echo present || echo absent"
            ),
            "absent",
            "{h}: deletion releases the claim"
        );
    }
}
