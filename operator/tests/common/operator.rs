//! The operator as a child process against the lab's API server, and the namespace it serves:
//! shared by the operator end-to-end test and the operator-kill test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::common::Lab;
use crate::k8s::{Kube, lab_binary, repo};

/// `pgmetal operator` serving one namespace (identity `e2e`, metrics on 127.0.0.1:18080);
/// killed (SIGKILL) when dropped. With `PGMETAL_OPERATOR_IMAGE` set (e2e/test sets it to the
/// image e2e/image built), it runs from that image with podman, as the chart's UID.
pub struct Operator {
    child: Child,
    log: PathBuf,
    /// The podman container, when run from the image.
    container: Option<String>,
}

impl Operator {
    /// Starts the operator with `kubeconfig` (see [`lab_namespace`]); its stderr (JSON logs) is
    /// appended to `log`.
    pub fn start(kubeconfig: &Path, ns: &str, log: PathBuf) -> Operator {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let image = std::env::var("PGMETAL_OPERATOR_IMAGE").ok();
        // A name per start: a killed container's `--rm` clean-up runs asynchronously, so a
        // restarted operator must not need its predecessor's name to be free.
        static STARTS: AtomicU32 = AtomicU32::new(0);
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let container = image
            .as_ref()
            .map(|_| format!("pgmetal-e2e-{}-{n}", std::process::id()));
        let mut cmd = match (&image, &container) {
            (Some(image), Some(name)) => {
                let mut c = Command::new("podman");
                // runc, not crun: crun refuses this machine's hybrid cgroup hierarchy. Explicit
                // limits: podman's defaults raise RLIMIT_NOFILE/NPROC, which needs
                // CAP_SYS_RESOURCE (not granted here).
                c.args(["--runtime", "runc", "run", "--rm", "--name", name])
                    .args([
                        "--ulimit",
                        "nofile=16384:16384",
                        "--ulimit",
                        "nproc=8192:8192",
                    ])
                    .args(["--network", "host"])
                    .args(["--user", "65532:65532", "--read-only"])
                    .arg("--volume")
                    .arg(format!(
                        "{}:/etc/pgmetal/kubeconfig:ro",
                        kubeconfig.display()
                    ))
                    .args(["--env", "KUBECONFIG=/etc/pgmetal/kubeconfig", image]);
                c
            }
            _ => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_pgmetal"));
                c.env("KUBECONFIG", kubeconfig);
                c
            }
        };
        let child = cmd
            .args(["operator", "--metrics-addr", "127.0.0.1:18080"])
            .args(["--namespace", ns, "--lease-namespace", ns])
            .args(["--identity", "e2e", "--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start pgmetal operator");
        Operator {
            child,
            log,
            container,
        }
    }

    /// The operator's own process ID (inside the container's, when run from the image).
    fn pid(&self) -> u32 {
        let Some(name) = &self.container else {
            return self.child.id();
        };
        for _ in 0..50 {
            let out = Command::new("podman")
                .args(["inspect", "--format", "{{.State.Pid}}", name])
                .output();
            let pid = out
                .ok()
                .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok());
            if let Some(pid) = pid.filter(|p: &u32| *p > 0) {
                return pid;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        0
    }

    /// The image the operator runs from, if any.
    pub fn image() -> Option<String> {
        std::env::var("PGMETAL_OPERATOR_IMAGE").ok()
    }

    /// Everything the operator logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the operator's log every 500 ms until `f` holds for it; after `timeout`, panics
    /// naming `what` and showing the log's last lines (a wait on the operator fails with what it
    /// was doing).
    pub fn wait_log(&self, what: &str, timeout: Duration, f: impl Fn(&str) -> bool) {
        let t = Instant::now();
        loop {
            let log = self.log();
            if f(&log) {
                return;
            }
            if t.elapsed() > timeout {
                let last: Vec<&str> = log.lines().rev().take(40).collect();
                let last: Vec<&str> = last.into_iter().rev().collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; the operator's log ends:\n{}",
                    last.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Resident memory of the operator process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        // std's kill is SIGKILL: no shutdown hook runs, as when a node dies.
        if let Some(name) = &self.container {
            let kill = [
                "--runtime",
                "runc",
                "kill",
                "--signal",
                "KILL",
                name.as_str(),
            ];
            let _ = Command::new("podman").args(kill).output();
            let rm = ["--runtime", "runc", "rm", "--force", name.as_str()];
            let _ = Command::new("podman").args(rm).output();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs the CRD, creates namespace `ns` and the `lab-ssh` Secret (the lab's SSH key and
/// known_hosts), and installs the chart's ServiceAccount and RBAC in `ns` (release name `ns`).
/// Returns a kubeconfig (in `dir`) that acts as that ServiceAccount: an operator started with it
/// has exactly the permissions the chart grants, no more.
pub fn lab_namespace(kube: &Kube, lab: &Lab, ns: &str, dir: &Path) -> PathBuf {
    kube.install_crd();
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
    chart_identity(kube, ns, dir)
}

/// The chart's ServiceAccount, ClusterRole, Role and bindings, rendered by `helm template` and
/// applied; returns a kubeconfig with a token of that ServiceAccount.
fn chart_identity(kube: &Kube, ns: &str, dir: &Path) -> PathBuf {
    let mut helm = Command::new(lab_binary("helm"));
    helm.args(["template", ns, repo("charts/pgmetal").to_str().unwrap()])
        .args(["--namespace", ns])
        .env("HELM_CACHE_HOME", dir.join("helm"))
        .env("HELM_CONFIG_HOME", dir.join("helm"))
        .env("HELM_DATA_HOME", dir.join("helm"))
        .env_remove("KUBECONFIG");
    for t in [
        "serviceaccount",
        "clusterrole",
        "clusterrolebinding",
        "role",
        "rolebinding",
    ] {
        helm.args(["--show-only", &format!("templates/{t}.yaml")]);
    }
    let out = helm.output().expect("helm template");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rbac = String::from_utf8(out.stdout).unwrap();
    kube.run(&["apply", "-f", "-"], Some(&rbac)).expect_ok();
    let sa = kube
        .kubectl(&[
            "-n",
            ns,
            "get",
            "serviceaccount",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .expect_ok();
    let sa = sa
        .split_whitespace()
        .find(|n| *n != "default")
        .expect("the chart's ServiceAccount");
    let token = kube
        .kubectl(&["-n", ns, "create", "token", sa, "--duration=3h"])
        .expect_ok();
    let admin = kube
        .kubectl(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "--flatten",
            "-o",
            "json",
        ])
        .expect_ok();
    let mut config: serde_json::Value = serde_json::from_str(&admin).unwrap();
    config["users"][0]["user"] = serde_json::json!({"token": token.trim()});
    let path = dir.join("operator-kubeconfig.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
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

pub use crate::common::wait_until;

/// Runs `kubectl pgmetal ARGS` as a person would: kubectl finds the plugin (this build's
/// binary, linked as `kubectl-pgmetal`) on the PATH and runs it with the lab's kubeconfig.
/// Returns whether it succeeded, its stdout and stderr.
pub fn kubectl_pgmetal(kube: &Kube, args: &[&str]) -> (bool, String, String) {
    static PLUGIN_DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = PLUGIN_DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_pgmetal"),
            dir.path().join("kubectl-pgmetal"),
        )
        .unwrap();
        dir
    });
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("kubectl")
        .arg("pgmetal")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", &kube.kubeconfig)
        .output()
        .expect("kubectl pgmetal");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
