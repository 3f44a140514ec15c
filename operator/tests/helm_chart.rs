//! The Helm chart `charts/pgmetal`.
//!
//! Always: the chart's copy of the CRD (`charts/pgmetal/crds/postgrescluster.yaml`) is identical
//! to the generated `crds/postgrescluster.yaml`.
//!
//! Ignored by a plain `cargo test`; e2e/test runs it with `PGMETAL_K8S=1` (after
//! `e2e/lab k8s up`): `helm lint --strict`, `helm template`, checks of the rendered objects (pod
//! and container security, args, exact least-privilege RBAC, no wildcards), then the CRD is
//! applied to the lab's real kube-apiserver and the rendered templates pass
//! `kubectl apply --dry-run=server`. helm is the binary `e2e/lab-k8s build` caches.

#[path = "common/k8s.rs"]
mod k8s;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

const RELEASE_NAMESPACE: &str = "pgmetal-system";
const WATCH_NAMESPACE: &str = "team-a";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repo().join("charts/pgmetal")
}

#[test]
fn chart_crd_is_a_copy_of_the_generated_crd() {
    let generated =
        std::fs::read(repo().join("crds/postgrescluster.yaml")).expect("crds/postgrescluster.yaml");
    let copy = std::fs::read(chart().join("crds/postgrescluster.yaml"))
        .expect("charts/pgmetal/crds/postgrescluster.yaml");
    assert!(
        copy == generated,
        "charts/pgmetal/crds/postgrescluster.yaml is stale: \
         run `cp crds/postgrescluster.yaml charts/pgmetal/crds/postgrescluster.yaml`"
    );
}

#[test]
#[ignore = "needs the API server; e2e/test runs it"]
fn helm_chart_lints_renders_and_passes_server_dry_run() {
    let start = Instant::now();
    let helm = Helm::new(k8s::lab_binary("helm"));
    let kubectl = Kubectl {
        kubeconfig: k8s::require_kubeconfig(),
    };
    kubectl.check_reachable();

    // (2) lint.
    let lint = helm.run(&["lint", "--strict", path_str(&chart())]);
    eprintln!("{}", lint.trim());

    // (3) render with the defaults and check what came out.
    let rendered = helm.template(&[]);
    let docs = parse_docs(&rendered);
    check_no_wildcards(&docs);
    check_deployment(&docs, None);
    check_cluster_role(&docs);
    check_leader_election_role(&docs);
    let binding = only(&docs, "ClusterRoleBinding");
    assert_eq!(
        binding["subjects"][0]["namespace"].as_str(),
        Some(RELEASE_NAMESPACE)
    );
    assert!(
        of_kind(&docs, "RoleBinding")
            .iter()
            .all(|b| b["roleRef"]["kind"].as_str() == Some("Role")),
        "without watchNamespace the ClusterRole is bound cluster-wide only"
    );

    check_monitoring(&docs, &helm);

    // (5) render with a watched namespace: the flag, and the ClusterRole bound there only.
    let set = format!("watchNamespace={WATCH_NAMESPACE}");
    let rendered_ns = helm.template(&["--set", &set]);
    let docs_ns = parse_docs(&rendered_ns);
    check_no_wildcards(&docs_ns);
    check_deployment(&docs_ns, Some(WATCH_NAMESPACE));
    check_cluster_role(&docs_ns);
    assert!(
        of_kind(&docs_ns, "ClusterRoleBinding").is_empty(),
        "with watchNamespace the ClusterRole must not be bound cluster-wide"
    );
    let scoped: Vec<&Value> = of_kind(&docs_ns, "RoleBinding")
        .into_iter()
        .filter(|b| b["roleRef"]["kind"].as_str() == Some("ClusterRole"))
        .collect();
    assert_eq!(scoped.len(), 1, "one RoleBinding of the ClusterRole");
    assert_eq!(
        scoped[0]["metadata"]["namespace"].as_str(),
        Some(WATCH_NAMESPACE)
    );

    // (4) the real API server: CRD applied, rendered objects accepted by a server-side dry run.
    kubectl.ensure_namespace(RELEASE_NAMESPACE);
    kubectl.ensure_namespace(WATCH_NAMESPACE);
    let crds = chart().join("crds");
    kubectl.run(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            path_str(&crds),
        ],
        None,
    );
    kubectl.run(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/postgresclusters.pgmetal.io",
        ],
        None,
    );
    // The watchNamespace render spans two namespaces (the RoleBinding is in team-a), which
    // `kubectl -n` refuses; every namespaced template sets metadata.namespace itself.
    let with_ns = [
        "apply",
        "--dry-run=server",
        "-n",
        RELEASE_NAMESPACE,
        "-f",
        "-",
    ];
    let without_ns = ["apply", "--dry-run=server", "-f", "-"];
    for (what, text, args) in [
        ("defaults", &rendered, &with_ns[..]),
        ("watchNamespace", &rendered_ns, &without_ns[..]),
    ] {
        let out = kubectl.run(args, Some(text));
        eprintln!("server dry run ({what}):\n{}", out.trim());
        let accepted = out
            .lines()
            .filter(|l| l.contains("(server dry run)"))
            .count();
        let objects = parse_docs(text).len();
        assert_eq!(
            accepted, objects,
            "every rendered object ({what}) is accepted by the dry run"
        );
    }

    eprintln!("helm chart test: {:.1?}", start.elapsed());
}

// ------------------------------------------------------------------ checks ----

fn check_deployment(docs: &[Value], watch_namespace: Option<&str>) {
    let dep = only(docs, "Deployment");
    assert_eq!(
        dep["metadata"]["namespace"].as_str(),
        Some(RELEASE_NAMESPACE)
    );
    assert_eq!(dep["spec"]["replicas"].as_u64(), Some(2));
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(true));
    let sa = only(docs, "ServiceAccount");
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );

    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["image"].as_str(), Some("ghcr.io/pgmetal/pgmetal:0.1.0"));

    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true), "{sc:?}");
    assert_eq!(sc["runAsUser"].as_u64(), Some(65532), "{sc:?}");
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{sc:?}");
    assert_eq!(
        sc["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "{sc:?}"
    );
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{sc:?}");
    assert!(sc["capabilities"]["add"].is_null(), "{sc:?}");
    assert_eq!(
        sc["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault"),
        "{sc:?}"
    );
    assert!(sc["privileged"].as_bool() != Some(true), "{sc:?}");

    let args = strings(&c["args"]);
    let mut want: Vec<String> = [
        "operator",
        "--metrics-addr=0.0.0.0:8080",
        "--lease-namespace=$(POD_NAMESPACE)",
        "--lease-name=pgmetal-leader",
        "--identity=$(POD_NAME)",
        "--log-format=json",
    ]
    .map(String::from)
    .to_vec();
    if let Some(ns) = watch_namespace {
        want.push(format!("--namespace={ns}"));
    }
    assert_eq!(args, want);
    assert!(args.iter().any(|a| a.starts_with("--lease-namespace=")));

    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let env = c["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|e| e["name"].as_str() == Some(var))
            .unwrap_or_else(|| panic!("env {var}"));
        assert_eq!(
            env["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            Some(field)
        );
    }

    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(8080));
    assert_eq!(c["ports"][0]["name"].as_str(), Some("metrics"));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"].as_str(), Some(path), "{probe}");
        assert_eq!(
            c[probe]["httpGet"]["port"].as_str(),
            Some("metrics"),
            "{probe}"
        );
    }

    let tmp = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some("/tmp"))
        .expect("a volume at /tmp");
    let vol = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == tmp["name"])
        .expect("the /tmp volume");
    assert!(vol["emptyDir"].is_object(), "/tmp is an emptyDir: {vol:?}");

    let service = only(docs, "Service");
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(8080));
    assert_eq!(
        service["spec"]["selector"],
        dep["spec"]["selector"]["matchLabels"]
    );
}

fn check_cluster_role(docs: &[Value]) {
    let role = only(docs, "ClusterRole");
    let want = triples(&[
        (
            "pgmetal.io",
            "postgresclusters",
            &["get", "list", "watch", "patch"],
        ),
        ("pgmetal.io", "postgresclusters/status", &["get", "patch"]),
        ("pgmetal.io", "postgresclusters/finalizers", &["update"]),
        ("", "secrets", &["get", "create", "patch"]),
        ("", "configmaps", &["get", "create", "patch", "delete"]),
        (
            "monitoring.coreos.com",
            "scrapeconfigs",
            &["get", "create", "patch", "delete"],
        ),
        ("events.k8s.io", "events", &["create", "patch"]),
    ]);
    assert_eq!(
        rule_triples(role),
        want,
        "the ClusterRole grants exactly what the operator uses"
    );
    for rule in role["rules"].as_array().expect("rules") {
        assert!(rule["nonResourceURLs"].is_null(), "{rule:?}");
    }
}

/// The alert rules (a rule-file ConfigMap by default, a PrometheusRule when asked) hold every
/// rule of files/alerts.yaml, and the dashboard ConfigMap holds valid JSON.
fn check_monitoring(docs: &[Value], helm: &Helm) {
    let rules_file = std::fs::read_to_string(chart().join("files/alerts.yaml")).expect("alerts");
    let want: Value = serde_saphyr::from_str(&rules_file).expect("alerts.yaml parses");
    let maps = of_kind(docs, "ConfigMap");
    let by_key = |key: &str| {
        maps.iter()
            .find_map(|m| m["data"][key].as_str().map(String::from))
            .unwrap_or_else(|| panic!("a ConfigMap with {key}"))
    };
    let rules: Value = serde_saphyr::from_str(&by_key("pgmetal-alerts.yaml")).expect("rules");
    assert_eq!(rules, want, "the rules ConfigMap carries files/alerts.yaml");
    let dashboard: Value = serde_json::from_str(&by_key("pgmetal.json")).expect("dashboard JSON");
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|p| p.len() >= 10)
    );
    let with_rule = helm.template(&["--set", "monitoring.prometheusRule.enabled=true"]);
    let docs = parse_docs(&with_rule);
    let rule = only(&docs, "PrometheusRule");
    assert_eq!(rule["spec"]["groups"], want["groups"]);
    let alerts = want["groups"][0]["rules"].as_array().expect("rules");
    assert!(alerts.len() >= 8, "{} alerts", alerts.len());
}

fn check_leader_election_role(docs: &[Value]) {
    let role = only(docs, "Role");
    assert_eq!(
        role["metadata"]["namespace"].as_str(),
        Some(RELEASE_NAMESPACE)
    );
    let want = triples(&[(
        "coordination.k8s.io",
        "leases",
        &["get", "create", "update"],
    )]);
    assert_eq!(rule_triples(role), want);
    // get/update are limited to the operator's own Lease (create cannot be limited by name).
    for rule in role["rules"].as_array().expect("rules") {
        let verbs = strings(&rule["verbs"]);
        if verbs.iter().any(|v| v != "create") {
            assert_eq!(
                strings(&rule["resourceNames"]),
                ["pgmetal-leader"],
                "{rule:?}"
            );
        }
    }
    let binding = of_kind(docs, "RoleBinding")
        .into_iter()
        .find(|b| b["roleRef"]["kind"].as_str() == Some("Role"))
        .expect("a RoleBinding of the leader-election Role");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["metadata"]["namespace"].as_str(),
        Some(RELEASE_NAMESPACE)
    );
}

/// No `*` in verbs, resources, apiGroups or resourceNames of any rule of any object.
fn check_no_wildcards(docs: &[Value]) {
    fn walk(v: &Value, path: &str) {
        match v {
            Value::Object(m) => {
                for (key, child) in m {
                    let key = key.as_str();
                    if matches!(key, "verbs" | "resources" | "apiGroups" | "resourceNames") {
                        for s in strings(child) {
                            assert!(!s.contains('*'), "wildcard in {path}.{key}: {s:?}");
                        }
                    }
                    walk(child, &format!("{path}.{key}"));
                }
            }
            Value::Array(s) => {
                for (i, child) in s.iter().enumerate() {
                    walk(child, &format!("{path}[{i}]"));
                }
            }
            _ => {}
        }
    }
    for d in docs {
        walk(d, kind(d));
    }
}

// ----------------------------------------------------------------- helpers ----

type Triple = (String, String, String);

fn triples(rules: &[(&str, &str, &[&str])]) -> BTreeSet<Triple> {
    let mut out = BTreeSet::new();
    for (group, resource, verbs) in rules {
        for verb in *verbs {
            out.insert((group.to_string(), resource.to_string(), verb.to_string()));
        }
    }
    out
}

/// Every (apiGroup, resource, verb) a Role or ClusterRole grants.
fn rule_triples(role: &Value) -> BTreeSet<Triple> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|s| {
            s.iter()
                .map(|x| {
                    x.as_str()
                        .unwrap_or_else(|| panic!("not a string: {x:?}"))
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The non-empty documents of a multi-document YAML stream.
fn parse_docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_str_multiple::<Value, Vec<Value>>(text)
        .expect("rendered YAML parses")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("<no kind>")
}

fn of_kind<'a>(docs: &'a [Value], k: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind(d) == k).collect()
}

fn only<'a>(docs: &'a [Value], k: &str) -> &'a Value {
    let found = of_kind(docs, k);
    assert_eq!(found.len(), 1, "exactly one {k} rendered");
    found[0]
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Runs a command that must succeed; returns its stdout.
fn run(cmd: &mut Command, stdin: Option<&str>) -> String {
    let shown = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{shown}: {e}"));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

struct Helm {
    bin: PathBuf,
    /// Private HELM_*_HOME dirs: nothing read from or written to the user's helm config.
    home: tempfile::TempDir,
}

impl Helm {
    fn new(bin: PathBuf) -> Helm {
        Helm {
            bin,
            home: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("HELM_CACHE_HOME", self.home.path().join("cache"))
            .env("HELM_CONFIG_HOME", self.home.path().join("config"))
            .env("HELM_DATA_HOME", self.home.path().join("data"))
            .env_remove("KUBECONFIG");
        run(&mut cmd, None)
    }

    /// `helm template t charts/pgmetal --namespace pgmetal-system [extra]`.
    fn template(&self, extra: &[&str]) -> String {
        let chart = chart();
        let mut args = vec![
            "template",
            "t",
            path_str(&chart),
            "--namespace",
            RELEASE_NAMESPACE,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

struct Kubectl {
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn cmd(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> String {
        run(self.cmd().args(args), stdin)
    }

    fn check_reachable(&self) {
        let out = self
            .cmd()
            .args(["get", "--raw", "/readyz"])
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "the lab API server does not answer (run `e2e/lab k8s up`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Creates the namespace when missing; a Terminating one is an error (there is no namespace
    /// controller in the lab: it stays Terminating until `e2e/lab k8s down`).
    fn ensure_namespace(&self, ns: &str) {
        let out = self
            .cmd()
            .args(["get", "namespace", ns, "-o", "jsonpath={.status.phase}"])
            .output()
            .expect("kubectl");
        if out.status.success() {
            let phase = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                phase.trim(),
                "Active",
                "namespace {ns} is not Active: `e2e/lab k8s down && e2e/lab k8s up` for a clean API"
            );
            return;
        }
        let out = self
            .cmd()
            .args(["create", "namespace", ns])
            .output()
            .expect("kubectl");
        let err = String::from_utf8_lossy(&out.stderr);
        // Another run may have created it meanwhile.
        assert!(
            out.status.success() || err.contains("AlreadyExists"),
            "create namespace {ns}: {err}"
        );
    }
}
