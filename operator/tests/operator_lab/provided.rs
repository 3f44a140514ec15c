//! `spec.tls.mode: Provided` in the operator e2e: certificates from a CA in a Secret someone
//! else keeps (made here with openssl, in the layout cert-manager writes), reissued when that
//! Secret changes, and the return to pgmetal's own CA.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::E2e;
use crate::operator::wait_until;

/// A new self-signed CA in `dir`: `(certificate path, key path)`.
fn new_ca(dir: &Path, name: &str) -> (String, String) {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    crate::common::openssl_ca(&crt, &key, name);
    (crt.display().to_string(), key.display().to_string())
}

/// Whether psql through HAProxy on `lb` verifies the server with `ca` (`verify-full`).
fn verifies(lb: &str, password: &str, ca: &str) -> bool {
    let conninfo = format!(
        "host={lb} port=5000 user=postgres dbname=postgres sslmode=verify-full sslrootcert={ca}"
    );
    Command::new("timeout")
        .args([
            "-s", "KILL", "20", "psql", "-X", "-qAt", "-c", "SELECT 1", &conninfo,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The cluster moves to a CA in the Secret `lab-provided-ca`; the Secret is replaced with
/// another CA (as cert-manager rotates one) and the servers follow; then back to `Managed`.
pub fn certificates_from_a_provided_ca(e: E2e, password: &str) {
    let E2e { kube, ns, lb, .. } = e;
    let dir = tempfile::tempdir().unwrap();
    let secret = |(crt, key): &(String, String)| {
        let args = [
            "-n",
            ns,
            "create",
            "secret",
            "tls",
            "lab-provided-ca",
            "--cert",
        ];
        let made = kube
            .kubectl(
                &[
                    &args[..],
                    &[crt.as_str(), "--key", key, "--dry-run=client", "-o", "json"],
                ]
                .concat(),
            )
            .expect_ok();
        kube.run(&["-n", ns, "apply", "-f", "-"], Some(&made))
            .expect_ok();
    };
    let patch_tls = |tls: &str| {
        let p = format!(r#"{{"spec":{{"tls":{tls}}}}}"#);
        let args = ["-n", ns, "patch", "pgc/lab", "--type", "merge", "-p", &p];
        kube.run(&args, None).expect_ok();
    };
    let first = new_ca(dir.path(), "first");
    secret(&first);
    let t = Instant::now();
    patch_tls(r#"{"mode":"Provided","caSecret":"lab-provided-ca"}"#);
    let limit = Duration::from_secs(120);
    wait_until("verify-full with the provided CA", limit, || {
        verifies(lb, password, &first.0)
    });
    eprintln!(
        "TIMING certificates from the provided CA served {:.1}s after the spec change",
        t.elapsed().as_secs_f64()
    );

    let second = new_ca(dir.path(), "second");
    let t = Instant::now();
    secret(&second);
    wait_until("verify-full with the rotated CA", limit, || {
        verifies(lb, password, &second.0)
    });
    assert!(
        !verifies(lb, password, &first.0),
        "the first CA no longer verifies the server"
    );
    eprintln!(
        "TIMING certificates from the rotated CA served {:.1}s after the Secret changed",
        t.elapsed().as_secs_f64()
    );

    patch_tls(r#"{"mode":"Managed","caSecret":null}"#);
    let own = dir.path().join("lab-ca.crt");
    let ca = kube.jsonpath(ns, "secret/lab-ca", ".data.ca\\.crt");
    let o = Command::new("sh")
        .args(["-c", &format!("echo {ca} | base64 -d > {}", own.display())])
        .output()
        .unwrap();
    assert!(o.status.success());
    let own = own.display().to_string();
    wait_until("verify-full with pgmetal's own CA again", limit, || {
        verifies(lb, password, &own)
    });
    let _ = kube.kubectl(&["-n", ns, "delete", "secret", "lab-provided-ca"]);
}
