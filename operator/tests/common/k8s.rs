//! Helpers for tests against the lab's real kube-apiserver (`e2e/lab k8s up`): every call goes
//! through `kubectl --kubeconfig $LAB_KUBECONFIG`, so tests see exactly what users see.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The lab's env file; `e2e/lab k8s up` adds `LAB_KUBECONFIG="..."` to it.
pub const ENV_FILE: &str = "/run/pgmetal-lab/lab.env";

/// A path in the repository (the workspace root is one level above the operator crate).
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The lab API server, reached through kubectl.
pub struct Kube {
    pub kubeconfig: PathBuf,
}

/// What one kubectl run returned.
#[derive(Debug)]
pub struct Run {
    pub cmd: String,
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout of a run that must succeed; panics with the command and its stderr otherwise.
    pub fn expect_ok(self) -> String {
        assert!(
            self.ok,
            "`{}` failed:\nstdout: {}\nstderr: {}",
            self.cmd, self.stdout, self.stderr
        );
        self.stdout
    }
}

impl Kube {
    /// The API server, for a test that is `#[ignore]`d unless the lab API server is up
    /// (`e2e/test` runs it with `--include-ignored`): panics with the reason when
    /// `PGMETAL_K8S=1` is unset or the kubeconfig named in the lab env file is missing.
    pub fn require() -> Kube {
        Kube {
            kubeconfig: require_kubeconfig(),
        }
    }

    /// Runs `kubectl --kubeconfig ... ARGS`, feeding `stdin` when given.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=60s")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!("kubectl {}", args.join(" "));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run kubectl: {e}"));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(input.as_bytes())
                .unwrap_or_else(|e| panic!("`{shown}`: writing stdin: {e}"));
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("`{shown}`: {e}"));
        Run {
            cmd: shown,
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `kubectl ARGS` without stdin.
    pub fn kubectl(&self, args: &[&str]) -> Run {
        self.run(args, None)
    }

    /// `kubectl ARGS -f -` with the JSON manifest on stdin (e.g. `apply -n NS`).
    pub fn with_manifest(&self, args: &[&str], manifest: &serde_json::Value) -> Run {
        let mut all = args.to_vec();
        all.extend(["-f", "-"]);
        self.run(&all, Some(&manifest.to_string()))
    }

    /// Retries `kubectl ARGS` until it succeeds or `timeout` passes; the last run either way.
    pub fn until_ok(&self, args: &[&str], timeout: Duration) -> Run {
        let start = Instant::now();
        loop {
            let run = self.kubectl(args);
            if run.ok || start.elapsed() >= timeout {
                return run;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Applies the committed CRD (`crds/`, server-side, taking over fields another manager
    /// set) and waits until the API server serves it.
    pub fn install_crd(&self) {
        let crds = repo("crds");
        let crds = crds.to_str().expect("utf-8 path");
        self.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crds])
            .expect_ok();
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/postgresclusters.pgmetal.io",
            "--timeout=60s",
        ])
        .expect_ok();
    }

    /// `kubectl get ... -o jsonpath={PATH}` of one object.
    pub fn jsonpath(&self, ns: &str, resource: &str, path: &str) -> String {
        let expr = format!("jsonpath={{{path}}}");
        self.kubectl(&["get", "-n", ns, resource, "-o", &expr])
            .expect_ok()
    }

    /// What kstatus (`sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute`, as Flux's health
    /// checks use it) computes for one object: `kubectl get ARGS -o json` piped into the lab's
    /// `kstatus` binary (`e2e/k8s/kstatus`). Returns `(status, message)`, the status being
    /// one of InProgress, Current, Failed, Terminating, NotFound, Unknown. ARGS name exactly
    /// one object, e.g. `&["-n", ns, "postgrescluster", "pg"]`. Panics when kubectl fails, when
    /// the binary is missing (`e2e/lab-k8s build` makes it) or when it rejects the object.
    pub fn kstatus(&self, args: &[&str]) -> (String, String) {
        let mut get = vec!["get"];
        get.extend_from_slice(args);
        get.extend(["-o", "json"]);
        let object = self.kubectl(&get).expect_ok();
        kstatus_of(&object)
    }
}

/// What kstatus computes for `object` (JSON, as `kubectl get -o json` prints it); see
/// [`Kube::kstatus`].
pub fn kstatus_of(object: &str) -> (String, String) {
    let bin = kstatus_bin();
    let mut child = Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    // kstatus reads all of stdin before it writes, so writing first cannot deadlock.
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(object.as_bytes())
        .unwrap_or_else(|e| panic!("{}: writing stdin: {e}", bin.display()));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kstatus failed ({}): {}\nthe object:\n{object}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let v: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("kstatus printed {stdout:?}, not JSON: {e}"));
    match (v["status"].as_str(), v["message"].as_str()) {
        (Some(status), Some(message)) if !status.is_empty() => {
            (status.to_string(), message.to_string())
        }
        _ => panic!("kstatus printed {stdout:?}: no status/message strings"),
    }
}

/// The kstatus binary `e2e/lab-k8s build` made, found once (see [`lab_binary`]).
fn kstatus_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| lab_binary("kstatus"))
}

/// A binary `e2e/lab-k8s build` put in its cache (`helm`, `kstatus`, ...), found as
/// `tests/helm_chart.rs` finds helm: the path `e2e/lab-k8s status` prints
/// (`kstatus: built v0.37.2+src.... at /var/cache/pgmetal/k8s/v1.34.4/kstatus`), else the
/// newest `$PGMETAL_K8S_CACHE/NAME` or `/var/cache/pgmetal/k8s/*/NAME`. Panics when there is
/// none: a test that needs it must never pass without it.
pub fn lab_binary(name: &str) -> PathBuf {
    let status = Command::new(repo("e2e/lab-k8s"))
        .arg("status")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    if let Ok(out) = status {
        let prefix = format!("{name}: built ");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(rest) = line.strip_prefix(&prefix)
                && let Some((_, path)) = rest.rsplit_once(" at ")
                && Path::new(path).is_file()
            {
                return PathBuf::from(path);
            }
        }
    }
    let mut candidates: Vec<PathBuf> = match std::env::var_os("PGMETAL_K8S_CACHE") {
        Some(dir) => vec![PathBuf::from(dir).join(name)],
        None => std::fs::read_dir("/var/cache/pgmetal/k8s")
            .map(|rd| rd.flatten().map(|e| e.path().join(name)).collect())
            .unwrap_or_default(),
    };
    candidates.retain(|p| p.is_file());
    // The newest build when several Kubernetes versions are cached.
    candidates.sort_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    candidates.pop().unwrap_or_else(|| {
        panic!(
            "no {name} in the lab's binary cache ($PGMETAL_K8S_CACHE/{name} or \
             /var/cache/pgmetal/k8s/*/{name}, neither named by `e2e/lab-k8s status`): \
             run `e2e/lab-k8s build`"
        )
    })
}

/// The lab API server's kubeconfig (`LAB_KUBECONFIG` in the lab env file); panics with the
/// reason when `PGMETAL_K8S=1` is unset or the file is missing.
pub fn require_kubeconfig() -> PathBuf {
    if std::env::var("PGMETAL_K8S").as_deref() != Ok("1") {
        panic!(
            "this test needs the API server: run it through e2e/test, or set PGMETAL_K8S=1 after `e2e/lab k8s up`"
        );
    }
    let text = std::fs::read_to_string(ENV_FILE).unwrap_or_else(|e| {
        panic!("PGMETAL_K8S=1 but {ENV_FILE} cannot be read ({e}): run `e2e/lab k8s up`")
    });
    let path = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "LAB_KUBECONFIG")
        .map(|(_, v)| PathBuf::from(v.trim().trim_matches('"')))
        .unwrap_or_else(|| {
            panic!("PGMETAL_K8S=1 but {ENV_FILE} has no LAB_KUBECONFIG: run `e2e/lab k8s up`")
        });
    assert!(
        path.is_file(),
        "PGMETAL_K8S=1 but the kubeconfig {} does not exist: run `e2e/lab k8s up`",
        path.display()
    );
    path
}

/// A cell of kubectl's table output, located by the column's header (kubectl aligns columns,
/// and empty cells must not shift the others).
pub fn table_cell(table: &str, row: usize, column: &str) -> Option<String> {
    let mut lines = table.lines();
    let header = lines.next()?;
    let line = lines.nth(row)?;
    let starts: Vec<(usize, &str)> = header
        .split_whitespace()
        .map(|name| {
            let off = name.as_ptr() as usize - header.as_ptr() as usize;
            (off, name)
        })
        .collect();
    let i = starts.iter().position(|(_, n)| *n == column)?;
    let from = starts[i].0.min(line.len());
    let to = starts
        .get(i + 1)
        .map_or(line.len(), |(o, _)| (*o).min(line.len()));
    Some(line.get(from..to)?.trim().to_string())
}

/// The header's column names.
pub fn table_header(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// A test namespace that is cleaned up on drop, even when the test panics: the objects of the
/// `kinds` are deleted, then the namespace.
///
/// An operator watching all namespaces (another test's) may have put its finalizer on them; the
/// tests' objects never reference an existing SSH Secret, so no host was ever touched and the
/// finalizer is removed by hand, as the operator's own message advises. With no
/// controller-manager in the lab nothing would ever finalize the namespace, so once it is empty
/// this does the namespace controller's last step itself (the `finalize` subresource); a namespace
/// that is not empty is left `Terminating`, never forced.
pub struct TestNamespace<'k> {
    pub kube: &'k Kube,
    pub name: String,
    pub kinds: Vec<String>,
}

impl<'k> TestNamespace<'k> {
    pub fn create(kube: &'k Kube, name: String, kinds: &[&str]) -> Self {
        kube.kubectl(&["create", "namespace", &name]).expect_ok();
        TestNamespace {
            kube,
            name,
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
        }
    }

    /// Names (`kind/name`) of the objects of `kinds` still in the namespace.
    fn remaining(&self) -> Vec<String> {
        self.kinds
            .iter()
            .flat_map(|kind| {
                let run = self
                    .kube
                    .kubectl(&["get", kind, "-n", &self.name, "-o", "name"]);
                run.stdout.lines().map(String::from).collect::<Vec<_>>()
            })
            .collect()
    }

    fn note(run: &Run) {
        if !run.ok {
            eprintln!("cleanup: `{}`: {}", run.cmd, run.stderr.trim());
        }
    }
}

impl Drop for TestNamespace<'_> {
    fn drop(&mut self) {
        let ns = self.name.clone();
        let ns = ns.as_str();
        for kind in &self.kinds {
            Self::note(&self.kube.kubectl(&[
                "delete",
                kind,
                "--all",
                "-n",
                ns,
                "--ignore-not-found",
                "--wait=false",
            ]));
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut left = self.remaining();
        while !left.is_empty() && Instant::now() < deadline {
            for obj in &left {
                Self::note(&self.kube.kubectl(&[
                    "patch",
                    obj,
                    "-n",
                    ns,
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ]));
            }
            std::thread::sleep(Duration::from_millis(300));
            left = self.remaining();
        }
        let run = self.kube.kubectl(&[
            "delete",
            "namespace",
            ns,
            "--ignore-not-found",
            "--wait=false",
        ]);
        Self::note(&run);
        if !run.ok {
            return;
        }
        if !left.is_empty() {
            eprintln!("cleanup: namespace {ns} stays Terminating: {left:?} still there");
            return;
        }
        // Best effort: drop the "kubernetes" finalizer of the (empty) namespace.
        let got = self.kube.kubectl(&["get", "namespace", ns, "-o", "json"]);
        let Ok(mut obj) = serde_json::from_str::<serde_json::Value>(&got.stdout) else {
            return;
        };
        obj["spec"]["finalizers"] = serde_json::json!([]);
        let path = format!("/api/v1/namespaces/{ns}/finalize");
        let run = self.kube.with_manifest(&["replace", "--raw", &path], &obj);
        if !run.ok {
            eprintln!(
                "cleanup: namespace {ns} stays Terminating: {}",
                run.stderr.trim()
            );
        }
    }
}
