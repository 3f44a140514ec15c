//! Helpers for tests against the real lab (`e2e/lab up`): env file, SSH to hosts, psql.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod pitr;
pub mod writer;

/// A shell command running `etcdctl ARGS` against `endpoints` (`host:port`) on an etcd host:
/// over TLS with the host's etcd certificate (pgmetal's default), else in plain text (a
/// cluster with `tls.mode: Disabled`, or one on its way there).
pub fn etcdctl(endpoints: &[String], args: &str) -> String {
    let urls = |scheme: &str| {
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        urls.join(",")
    };
    let tls = "--cacert=/etc/pgmetal/tls/ca.crt --cert=/etc/pgmetal/tls/etcd.pem --key=/etc/pgmetal/tls/etcd.pem";
    format!(
        "{{ [ -f /etc/pgmetal/tls/etcd.pem ] && ETCDCTL_API=3 etcdctl {tls} --endpoints={} {args} 2>/dev/null; }} || ETCDCTL_API=3 etcdctl --endpoints={} {args}",
        urls("https"),
        urls("http")
    )
}

/// The lab as described by `/run/pgmetal-lab/lab.env`.
pub struct Lab {
    pub env: BTreeMap<String, String>,
    pub hosts: Vec<String>,
}

pub const ENV_FILE: &str = "/run/pgmetal-lab/lab.env";

impl Lab {
    /// The lab, for a test that is `#[ignore]`d unless the lab is up (`e2e/test` runs it with
    /// `--include-ignored`): panics with the reason when `PGMETAL_LAB=1` is unset, the env file
    /// is missing or the lab has fewer than `min_hosts` hosts.
    pub fn require(min_hosts: usize) -> Lab {
        if std::env::var("PGMETAL_LAB").as_deref() != Ok("1") {
            panic!(
                "this test needs the lab: run it through e2e/test, or set PGMETAL_LAB=1 after `e2e/lab up`"
            );
        }
        let text = std::fs::read_to_string(ENV_FILE)
            .expect("PGMETAL_LAB=1 but the lab env file is missing: run e2e/lab up");
        let env: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
            .collect();
        let hosts: Vec<String> = env
            .get("LAB_HOSTS")
            .map(|h| h.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        assert!(
            hosts.len() >= min_hosts,
            "this test needs {min_hosts} lab hosts, the lab has {}",
            hosts.len()
        );
        Lab { env, hosts }
    }

    /// The start of a lab test's PostgresCluster manifest up to `spec.packages` (the lab's apt
    /// repository and PyPI index), with `metadata` as a YAML flow map; the test adds the rest
    /// of `spec` (two-space indented).
    pub fn manifest_head(&self, metadata: &str) -> String {
        format!(
            "apiVersion: pgmetal.io/v1alpha1\nkind: PostgresCluster\nmetadata: {metadata}\nspec:\n  ssh: {{}}\n  packages:\n    repository:\n      apt: \"{}\"\n    patroni:\n      indexUrl: \"{}\"\n",
            self.var("LAB_APT_REPO"),
            self.var("LAB_PIP_INDEX")
        )
    }

    /// `pgmetal apply` of `yaml` (written to `dir/cluster.yaml`), which must end healthy: the
    /// report. Prints how long it took, as `TIMING {what}`.
    pub fn apply_ok(&self, dir: &Path, what: &str, yaml: &str) -> serde_json::Value {
        std::fs::write(dir.join("cluster.yaml"), yaml).unwrap();
        let t = std::time::Instant::now();
        let (code, doc, stderr) = self.pgmetal("apply", dir, &self.var("LAB_KNOWN_HOSTS"));
        println!("TIMING {what}: apply {:.1}s", t.elapsed().as_secs_f64());
        assert_eq!(code, 0, "{what}: apply failed: {doc:#}\n{stderr}");
        doc
    }

    pub fn var(&self, k: &str) -> String {
        self.env
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} missing from {ENV_FILE}"))
    }

    /// Runs a shell command as root on `host` through `e2e/lab ssh`.
    pub fn ssh(&self, host: &str, script: &str) -> Output {
        Command::new(repo().join("e2e/lab"))
            .args(["ssh", host, "--", "sh", "-c", &shell_quote(script)])
            .output()
            .expect("e2e/lab ssh")
    }

    /// `pgmetal VERB -o json -f DIR/cluster.yaml` with the lab's SSH key, `known_hosts` and the
    /// secrets file `DIR/secrets.yaml`: the exit code, the JSON document it printed, and stderr.
    pub fn pgmetal(
        &self,
        verb: &str,
        dir: &Path,
        known_hosts: &str,
    ) -> (i32, serde_json::Value, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_pgmetal"))
            .args([verb, "-o", "json", "-f"])
            .arg(dir.join("cluster.yaml"))
            .args([
                "--ssh-key",
                &self.var("LAB_SSH_KEY"),
                "--known-hosts",
                known_hosts,
            ])
            .arg("--secrets")
            .arg(dir.join("secrets.yaml"))
            .output()
            .expect("run pgmetal");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let doc = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("pgmetal {verb}: not JSON ({e}); stderr:\n{stderr}"));
        (out.status.code().unwrap_or(-1), doc, stderr)
    }

    /// `GET path` from the Patroni REST API on `host`, read on the host itself: over HTTPS
    /// verified with the cluster's CA file there, or plain HTTP when the member serves that
    /// (`spec.tls` off, or not moved yet). `None` when neither answers with JSON.
    pub fn patroni_get(&self, host: &str, path: &str) -> Option<serde_json::Value> {
        let script = format!(
            "python3 - <<'EOF'\n\
             import ssl, urllib.request as u\n\
             try:\n    ctx = ssl.create_default_context(cafile='/etc/pgmetal/tls/ca.crt')\n    \
             print(u.urlopen('https://{h}:8008{path}', timeout=3, context=ctx).read().decode())\n\
             except Exception:\n    print(u.urlopen('http://{h}:8008{path}', timeout=3).read().decode())\n\
             EOF",
            h = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_string()
            },
        );
        let out = self.ssh(host, &script);
        serde_json::from_slice(&out.stdout).ok()
    }

    /// stdout of a command that must succeed on `host`.
    pub fn ssh_ok(&self, host: &str, script: &str) -> String {
        let o = self.ssh(host, script);
        assert!(
            o.status.success(),
            "on {host}: {script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

/// `e2e/lab VERB HOST` (`kill`, `start`, `partition`, `heal`), which must succeed.
pub fn lab_verb(verb: &str, host: &str) {
    let st = Command::new(repo().join("e2e/lab"))
        .args([verb, host])
        .status()
        .expect("e2e/lab");
    assert!(st.success(), "e2e/lab {verb} {host}");
}

/// Polls `f` every 500 ms until it holds; panics naming `what` after `timeout`. Returns the
/// seconds it took.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) -> f64 {
    let t = std::time::Instant::now();
    while !f() {
        assert!(
            t.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    t.elapsed().as_secs_f64()
}

/// Quote for the remote shell (lab ssh passes words to ssh, which joins them).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// psql through HAProxy (or any host:port) as the superuser; returns trimmed stdout or stderr.
pub fn psql(host: &str, port: u16, password: &str, sql: &str) -> Result<String, String> {
    psql_with_stderr(host, port, password, sql, 60).map(|(out, _)| out)
}

/// psql as the superuser, killed after `timeout_secs` (then not successful): trimmed stdout and
/// stderr on success (stderr carries warnings), stderr on failure. `-q` keeps command tags such
/// as `INSERT 0 1` out of stdout, so `RETURNING` values are all it prints.
pub fn psql_with_stderr(
    host: &str,
    port: u16,
    password: &str,
    sql: &str,
    timeout_secs: u32,
) -> Result<(String, String), String> {
    let o = Command::new("timeout")
        .args(["-s", "KILL", &timeout_secs.to_string(), "psql"])
        .args(["-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", host])
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
        .args(["-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "3")
        .output()
        .map_err(|e| e.to_string())?;
    let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    if o.status.success() {
        Ok((out, err))
    } else {
        Err(if err.is_empty() { out } else { err })
    }
}

/// A new self-signed CA made by openssl, its certificate at `crt` and its key at `key`, with
/// the common name `name`.
pub fn openssl_ca(crt: &Path, key: &Path, name: &str) {
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "30", "-subj"])
        .arg(format!("/CN={name}"))
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args([
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
        ])
        .arg(key)
        .arg("-out")
        .arg(crt)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
