//! `e2e/bench`: one operator, many clusters (issue 13). The operator runs in this process against
//! the lab's real API server, with simulated hosts behind its backend seam (feature `sim`): each
//! cluster's three hosts answer as healthy Debian hosts, its Patroni and etcd as a healthy
//! cluster. 600 real hosts do not fit here; this measures the operator (time until every
//! cluster is Ready, reconcile and observation times, API requests, memory), not the hosts.
//! Then one simulated primary in each of 20 clusters fails over at once and status must follow.
//! Prints a markdown table and appends it to `$PGMETAL_BENCH_OUT` when set.
//! Ignored by a plain `cargo test`: e2e/bench runs it with PGMETAL_K8S=1 (the API server only).

#[path = "common/k8s.rs"]
mod k8s;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s::Kube;
use pgmetal::controller::{self, backend::sim::Simulated};
use serde_json::Value;

/// A simulated host's name: `.invalid` never resolves, so nothing can reach out to it.
fn host(cluster: usize, member: char) -> String {
    format!("c{cluster:03}-{member}.sim.invalid")
}

fn manifest(i: usize) -> String {
    let (a, b, c) = (host(i, 'a'), host(i, 'b'), host(i, 'c'));
    format!(
        "apiVersion: pgmetal.io/v1alpha1\nkind: PostgresCluster\nmetadata: {{name: fleet-{i:03}}}\n\
         spec:\n  ssh: {{privateKeySecret: {{name: fleet-ssh, key: ssh-privatekey}}}}\n  \
         postgres: {{primary: {a}, replicas: [{b}, {c}]}}\n  etcd: {{hosts: [{a}, {b}, {c}]}}\n"
    )
}

/// `GET path` from the operator's metrics address.
fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("operator metrics");
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// The sum of every sample of `name` (any labels) in a Prometheus text exposition.
fn sum(text: &str, name: &str) -> f64 {
    samples(text, name).map(|(_, v)| v).sum()
}

/// `(labels, value)` of each sample of `name`.
fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines().filter_map(move |l| {
        let rest = l.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        Some((labels, value.trim().parse().ok()?))
    })
}

/// Quantile `q` of histogram `name` summed over its clusters, interpolated within the bucket as
/// Prometheus's `histogram_quantile` does.
fn quantile(text: &str, name: &str, q: f64) -> f64 {
    let mut buckets: BTreeMap<u64, f64> = BTreeMap::new();
    for (labels, v) in samples(text, &format!("{name}_bucket")) {
        let le = labels
            .split("le=\"")
            .nth(1)
            .and_then(|r| r.split('"').next());
        let le = le.map_or(f64::INFINITY, |s| s.parse().unwrap_or(f64::INFINITY));
        *buckets.entry(le.to_bits()).or_default() += v;
    }
    let mut edges: Vec<(f64, f64)> = buckets
        .into_iter()
        .map(|(k, v)| (f64::from_bits(k), v))
        .collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = edges.last().map_or(0.0, |e| e.1);
    let rank = q * total;
    let (mut lo, mut below) = (0.0, 0.0);
    for (le, cum) in edges {
        if cum >= rank {
            if le.is_infinite() {
                return lo;
            }
            let inside = (cum - below).max(1.0);
            return lo + (le - lo) * (rank - below) / inside;
        }
        (lo, below) = (le, cum);
    }
    lo
}

/// Resident memory of this process (the operator runs in it), MiB.
fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Every PostgresCluster of `ns`.
fn clusters(kube: &Kube, ns: &str) -> Vec<Value> {
    let out = kube
        .kubectl(&["-n", ns, "get", "pgc", "-o", "json"])
        .expect_ok();
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn ready(c: &Value) -> bool {
    let conds = c["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    conds
        .iter()
        .any(|x| x["type"] == "Ready" && x["status"] == "True")
}

/// Polls every 2 s until `done` holds for the clusters; the seconds it took. Panics after
/// `limit`, saying how far it got.
fn until(
    kube: &Kube,
    ns: &str,
    limit: Duration,
    what: &str,
    done: impl Fn(&[Value]) -> usize,
    of: usize,
) -> f64 {
    let t = Instant::now();
    loop {
        let n = done(&clusters(kube, ns));
        if n == of {
            return t.elapsed().as_secs_f64();
        }
        assert!(t.elapsed() < limit, "{what}: {n} of {of} after {limit:?}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A free loopback address for the operator's metrics.
fn free_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
#[ignore = "a benchmark against the lab's API server; e2e/bench runs it"]
fn one_operator_runs_many_clusters() {
    let kube = Kube::require();
    let n: usize = std::env::var("PGMETAL_FLEET_CLUSTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let fails = (n / 10).clamp(1, 20);
    let ns = format!("pgmetal-fleet-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    kube.install_crd();
    kube.kubectl(&["create", "namespace", &ns]).expect_ok();
    let key = dir.path().join("key");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(keygen.success());
    let from = format!("--from-file=ssh-privatekey={}", key.display());
    kube.kubectl(&["-n", &ns, "create", "secret", "generic", "fleet-ssh", &from])
        .expect_ok();

    // The operator, in this process, serving the namespace through simulated hosts.
    // SAFETY: no other thread runs yet.
    unsafe {
        std::env::set_var("KUBECONFIG", &kube.kubeconfig);
        if std::env::var_os("RUST_LOG").is_none() {
            std::env::set_var("RUST_LOG", "warn");
        }
    }
    let sim = Arc::new(Simulated::default());
    let addr = free_addr();
    let opts = controller::Options {
        metrics_addr: addr,
        lease_namespace: ns.clone(),
        lease_name: "pgmetal-leader".into(),
        identity: Some("fleet".into()),
        namespace: Some(ns.clone()),
        log_format: pgmetal::telemetry::LogFormat::Json,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let operator = rt.spawn(controller::run_with(opts, sim.clone()));
    let addr = addr.to_string();
    let api_before = kube.kubectl(&["get", "--raw", "/metrics"]).expect_ok();
    let rss_idle = rss_mib();

    // 1. n clusters at once: time until every one is Ready.
    let all: Vec<String> = (0..n).map(manifest).collect();
    kube.run(&["-n", &ns, "apply", "-f", "-"], Some(&all.join("---\n")))
        .expect_ok();
    let all_ready = until(
        &kube,
        &ns,
        Duration::from_secs(1200),
        "clusters Ready",
        |cs| cs.iter().filter(|c| ready(c)).count(),
        n,
    );
    let api_ramp = kube.kubectl(&["get", "--raw", "/metrics"]).expect_ok();
    let ramp_requests =
        sum(&api_ramp, "apiserver_request_total") - sum(&api_before, "apiserver_request_total");
    eprintln!(
        "TIMING {n} clusters Ready {all_ready:.1}s after one apply ({:.0} API requests)",
        ramp_requests
    );
    assert!(!operator.is_finished(), "the operator stopped");

    // 2. Steady state for 60 s (PGMETAL_FLEET_WINDOW): API requests, how often each cluster is observed, memory.
    let (m0, a0) = (
        scrape(&addr),
        kube.kubectl(&["get", "--raw", "/metrics"]).expect_ok(),
    );
    let window: f64 = std::env::var("PGMETAL_FLEET_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60.0);
    std::thread::sleep(Duration::from_secs_f64(window));
    let (m1, a1) = (
        scrape(&addr),
        kube.kubectl(&["get", "--raw", "/metrics"]).expect_ok(),
    );
    let rps = (sum(&a1, "apiserver_request_total") - sum(&a0, "apiserver_request_total")) / window;
    let rejected = sum(&a1, "apiserver_flowcontrol_rejected_requests_total")
        - sum(&api_before, "apiserver_flowcontrol_rejected_requests_total");
    let per_cluster = |text: &str| -> BTreeMap<String, f64> {
        samples(text, "pgmetal_reconciles_total")
            .map(|(l, v)| (l.to_string(), v))
            .collect()
    };
    let (r0, r1) = (per_cluster(&m0), per_cluster(&m1));
    let fewest = r1
        .iter()
        .map(|(k, v)| v - r0.get(k).copied().unwrap_or(0.0))
        .fold(f64::INFINITY, f64::min);
    let slowest_look = window / fewest.max(1.0);
    let rss = rss_mib();

    // 3. One primary in each of `fails` clusters fails over at once: status must follow.
    for i in 0..fails {
        assert!(
            sim.fail_over(&host(i, 'a'), &host(i, 'b')),
            "cluster {i} was never simulated"
        );
    }
    let moved = until(
        &kube,
        &ns,
        Duration::from_secs(60),
        "status.primary following the failovers",
        |cs| {
            (0..fails)
                .filter(|i| {
                    let name = format!("fleet-{i:03}");
                    cs.iter().any(|c| {
                        c["metadata"]["name"] == name.as_str()
                            && c["status"]["primary"] == host(*i, 'b').as_str()
                    })
                })
                .count()
        },
        fails,
    );
    eprintln!(
        "TIMING {fails} simulated failovers: every status.primary followed within {moved:.1}s"
    );
    let end = scrape(&addr);

    let mut md = String::new();
    let _ = writeln!(
        md,
        "\nOne operator, {n} clusters of 3 simulated hosts each, against the lab's real API server (the hosts, Patroni and etcd are fakes behind the operator's backend seam: this measures the operator):\n"
    );
    let _ = writeln!(md, "| measure | value |\n|---|---|");
    let _ = writeln!(
        md,
        "| all {n} Ready after one `kubectl apply` | {all_ready:.1} s |"
    );
    let _ = writeln!(
        md,
        "| API requests until then (all clients) | {ramp_requests:.0} |"
    );
    let _ = writeln!(
        md,
        "| reconcile p50 / p99 | {:.3} s / {:.3} s |",
        quantile(&end, "pgmetal_reconcile_duration_seconds", 0.5),
        quantile(&end, "pgmetal_reconcile_duration_seconds", 0.99)
    );
    let _ = writeln!(
        md,
        "| observation p50 / p99 | {:.3} s / {:.3} s |",
        quantile(&end, "pgmetal_observe_duration_seconds", 0.5),
        quantile(&end, "pgmetal_observe_duration_seconds", 0.99)
    );
    let _ = writeln!(
        md,
        "| steady API requests (all clients, the bench's 0.5/s polls included) | {rps:.1}/s |"
    );
    let _ = writeln!(
        md,
        "| longest interval between two looks at one cluster (steady, {window:.0} s window) | {slowest_look:.1} s (target ≤ 10 s) |"
    );
    let _ = writeln!(
        md,
        "| requests the API server rejected (flow control) | {rejected:.0} (target 0) |"
    );
    let _ = writeln!(
        md,
        "| process RSS: idle / {n} clusters | {rss_idle:.0} MiB / {rss:.0} MiB (target ≤ 200 MiB) |"
    );
    let _ = writeln!(
        md,
        "| {fails} primaries failed at once: every status.primary followed | {moved:.1} s |"
    );
    println!("{md}");
    if let Ok(out) = std::env::var("PGMETAL_BENCH_OUT") {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&out)
            .unwrap();
        f.write_all(md.as_bytes()).unwrap();
        eprintln!("appended to {out}");
    }

    // Deleting the clusters runs each one's finalizer through the simulated hosts (before the
    // namespace goes: its Lease and Secrets go with it).
    let t = Instant::now();
    kube.kubectl(&["-n", &ns, "delete", "pgc", "--all", "--wait=false"])
        .expect_ok();
    let gone = |cs: &[Value]| n - cs.len();
    until(
        &kube,
        &ns,
        Duration::from_secs(300),
        "clusters deleted",
        gone,
        n,
    );
    eprintln!(
        "TIMING {n} clusters deleted (finalizers run) {:.1}s after `kubectl delete`",
        t.elapsed().as_secs_f64()
    );
    kube.kubectl(&["delete", "namespace", &ns, "--wait=false"])
        .expect_ok();
    rt.shutdown_background();
}
