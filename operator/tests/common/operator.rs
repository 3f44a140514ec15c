//! The operator as a child process against the lab's API server, and the namespace it serves:
//! shared by the operator end-to-end test and the operator-kill test.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::Lab;
use crate::k8s::{Kube, repo};

/// `pgmetal operator` serving one namespace (identity `e2e`, metrics on 127.0.0.1:18080);
/// killed (SIGKILL) when dropped.
pub struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    /// Starts the operator; its stderr (JSON logs) is appended to `log`.
    pub fn start(kube: &Kube, ns: &str, log: PathBuf) -> Operator {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pgmetal"))
            .args(["operator", "--metrics-addr", "127.0.0.1:18080"])
            .args(["--namespace", ns, "--lease-namespace", ns])
            .args(["--identity", "e2e", "--log-format", "json"])
            .env("KUBECONFIG", &kube.kubeconfig)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start pgmetal operator");
        Operator { child, log }
    }

    /// Everything the operator logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident memory of the operator process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        // std's kill is SIGKILL: no shutdown hook runs, as when a node dies.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs the CRD, creates namespace `ns` and the `lab-ssh` Secret (the lab's SSH key and
/// known_hosts).
pub fn lab_namespace(kube: &Kube, lab: &Lab, ns: &str) {
    kube.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        repo("crds").to_str().unwrap(),
    ])
    .expect_ok();
    kube.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/postgresclusters.pgmetal.io",
        "--timeout=60s",
    ])
    .expect_ok();
    kube.kubectl(&["create", "namespace", ns]).expect_ok();
    kube.kubectl(&[
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "lab-ssh",
        &format!("--from-file=ssh-privatekey={}", lab.var("LAB_SSH_KEY")),
        &format!("--from-file=known_hosts={}", lab.var("LAB_KNOWN_HOSTS")),
    ])
    .expect_ok();
}

/// The status of condition `kind` of `pgc/name`, and its reason and message.
pub fn condition(kube: &Kube, ns: &str, name: &str, kind: &str) -> (String, String, String) {
    let field = |f: &str| {
        kube.jsonpath(
            ns,
            &format!("pgc/{name}"),
            &format!(r#".status.conditions[?(@.type=="{kind}")].{f}"#),
        )
    };
    (field("status"), field("reason"), field("message"))
}

/// Polls `f` every 500 ms until it holds; panics naming `what` after `timeout`. Returns the
/// seconds it took.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> f64 {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    t.elapsed().as_secs_f64()
}
