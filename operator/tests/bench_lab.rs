//! `e2e/bench`: where a cold converge's time goes on 4 bare lab hosts, against its floor
//! measured in the same run, what a no-op converge costs each host, and what one observation
//! round costs on the wire. Prints a markdown table
//! and writes it to `$PGMETAL_BENCH_OUT` (default `target/bench.md`). Measures; asserts only what
//! defines correct behaviour (both applies healthy, the second changes nothing).
//! Ignored by a plain `cargo test`: e2e/bench runs it on a fresh lab with PGMETAL_LAB=1.

mod common;
#[path = "bench_lab/observation.rs"]
mod observation;

use std::fmt::Write as _;
use std::time::Instant;

use common::Lab;
use serde_json::Value;

fn manifest(lab: &Lab) -> String {
    let h = &lab.hosts;
    format!(
        r#"apiVersion: pgmetal.io/v1alpha1
kind: PostgresCluster
metadata: {{name: bench}}
spec:
  ssh: {{}}
  packages:
    repository: {{apt: "{apt}"}}
    patroni: {{indexUrl: "{pip}"}}
  postgres: {{primary: {a}, replicas: [{b}, {c}]}}
  etcd: {{hosts: [{a}, {b}, {c}]}}
  haproxy: {{hosts: [{d}]}}
"#,
        apt = lab.var("LAB_APT_REPO"),
        pip = lab.var("LAB_PIP_INDEX"),
        a = h[0],
        b = h[1],
        c = h[2],
        d = h[3]
    )
}

/// Seconds of a `durationMs` field.
fn secs(v: &Value) -> f64 {
    v["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0
}

/// The phase `name`'s duration in the report (0 when it did not run).
fn phase(r: &Value, name: &str) -> f64 {
    r["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["phase"] == name)
        .map(secs)
        .sum()
}

/// The time `host` spent in the steps whose name starts with one of `prefixes`.
fn host_steps(r: &Value, host: &str, prefixes: &[&str]) -> f64 {
    r["hosts"][host]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            let name = s["step"].as_str().unwrap_or_default();
            prefixes.iter().any(|p| name.starts_with(p))
        })
        .map(secs)
        .sum()
}

fn apply(lab: &Lab, dir: &std::path::Path) -> (Value, f64) {
    let t = Instant::now();
    let (code, report, stderr) = lab.pgmetal("apply", dir, &lab.var("LAB_KNOWN_HOSTS"));
    let wall = t.elapsed().as_secs_f64();
    assert_eq!(code, 0, "apply failed: {}\n{stderr}", report["problems"]);
    (report, wall)
}

#[test]
#[ignore = "a benchmark on a fresh lab; e2e/bench runs it"]
fn cold_and_no_op_converge() {
    let lab = Lab::require(4);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), manifest(&lab)).unwrap();
    let (cold, cold_wall) = apply(&lab, dir.path());
    let (noop, noop_wall) = apply(&lab, dir.path());
    assert_eq!(noop["changed"], 0, "a second apply changes nothing");

    let hosts: Vec<String> = lab.hosts[..4].to_vec();
    let install = |h: &String| {
        host_steps(
            &cold,
            h,
            &["install packages", "install patroni", "refresh"],
        )
    };
    let slowest_install = hosts.iter().map(install).fold(0.0, f64::max);
    let etcd = phase(&cold, "etcd") + phase(&cold, "wait for etcd quorum");
    let initdb = phase(&cold, "patroni primary");
    let basebackup = phase(&cold, "patroni replicas");
    let floor = slowest_install + etcd + initdb + basebackup;
    let total = secs(&cold);
    let serial: f64 = hosts.iter().map(|h| secs(&cold["hosts"][h])).sum();

    let mut md = String::new();
    let _ = writeln!(
        md,
        "| measure (4 bare hosts: 3 PostgreSQL + etcd, 1 HAProxy; monitoring on) | value |"
    );
    let _ = writeln!(md, "|---|---|");
    let _ = writeln!(
        md,
        "| cold `apply`, total (wall clock with connection setup) | {total:.1} s ({cold_wall:.1} s) |"
    );
    let _ = writeln!(
        md,
        "| floor: slowest host's package install | {slowest_install:.1} s |"
    );
    let _ = writeln!(md, "| floor: etcd start to quorum | {etcd:.1} s |");
    let _ = writeln!(
        md,
        "| floor: primary bootstrap (initdb, leader key) | {initdb:.1} s |"
    );
    let _ = writeln!(
        md,
        "| floor: replicas' basebackup (in parallel) | {basebackup:.1} s |"
    );
    let _ = writeln!(md, "| floor, total | {floor:.1} s |");
    let _ = writeln!(
        md,
        "| **cold converge / floor** | **{:.2}** |",
        total / floor.max(0.001)
    );
    let _ = writeln!(
        md,
        "| host by host (sum of every host's step time, as a serial playbook runs them) | {serial:.1} s ({:.1}x the parallel converge) |",
        serial / total.max(0.001)
    );
    let trips: Vec<String> = hosts
        .iter()
        .map(|h| {
            noop["hosts"][h]["round_trips"]
                .as_u64()
                .unwrap_or(0)
                .to_string()
        })
        .collect();
    let _ = writeln!(
        md,
        "| no-op `apply`: SSH round trips per host (connection setup not counted) | {} |",
        trips.join(" / ")
    );
    let _ = writeln!(
        md,
        "| no-op `apply`: duration (wall clock) | {:.2} s ({noop_wall:.2} s) |",
        secs(&noop)
    );
    let _ = writeln!(
        md,
        "| no-op `apply`: changes, restarts | {} |",
        noop["changed"]
    );
    md.push_str(&observation::cost(&lab, dir.path(), 5));
    let mut phases = String::from("\nCold converge phases:\n\n| phase | s |\n|---|---|\n");
    for p in cold["phases"].as_array().into_iter().flatten() {
        let _ = writeln!(
            phases,
            "| {} | {:.1} |",
            p["phase"].as_str().unwrap_or("?"),
            secs(p)
        );
    }
    md.push_str(&phases);
    println!("\n{md}");
    let out = std::env::var("PGMETAL_BENCH_OUT")
        .unwrap_or_else(|_| format!("{}/../target/bench.md", env!("CARGO_MANIFEST_DIR")));
    std::fs::write(&out, &md).unwrap();
    eprintln!("written to {out}");
}
