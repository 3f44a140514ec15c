//! Monitoring through the operator: the scrape targets it publishes (file_sd ConfigMap and
//! ScrapeConfig) feed a real Prometheus from Debian's package on a lab host, with the chart's
//! alert rules; every target is up, every dashboard query has data, and a power-cut replica
//! fires PgmetalReplicaDown within the rule's `for` plus one scrape, which clears when it returns.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{Lab, repo};
use super::k8s::Kube;
use super::operator::{condition, wait_until};

/// Prometheus's scrape and rule evaluation interval in this test.
const INTERVAL_S: u64 = 5;
/// The `for` of PgmetalReplicaDown in charts/pgmetal/files/alerts.yaml.
const REPLICA_DOWN_FOR_S: u64 = 60;

/// prometheus-operator's ScrapeConfig kind, reduced to what the API server needs to store one
/// (the operator publishes there only when this CRD exists).
const SCRAPE_CONFIG_CRD: &str = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
"metadata":{"name":"scrapeconfigs.monitoring.coreos.com"},
"spec":{"group":"monitoring.coreos.com","scope":"Namespaced",
"names":{"kind":"ScrapeConfig","listKind":"ScrapeConfigList","plural":"scrapeconfigs","singular":"scrapeconfig"},
"versions":[{"name":"v1alpha1","served":true,"storage":true,
"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}"#;

/// Installs the ScrapeConfig CRD before the cluster exists, so the operator's first converge
/// publishes one.
pub fn install_scrape_config_crd(kube: &Kube) {
    let crd: serde_json::Value = serde_json::from_str(SCRAPE_CONFIG_CRD).unwrap();
    kube.with_manifest(&["apply", "--server-side"], &crd)
        .expect_ok();
    kube.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/scrapeconfigs.monitoring.coreos.com",
        "--timeout=60s",
    ])
    .expect_ok();
}

fn put(host: &str, path: &str, content: &str) {
    let mut child = Command::new(repo().join("e2e/lab"))
        .args(["ssh", host, "--", "sh", "-c", &format!("'cat > {path}'")])
        .stdin(Stdio::piped())
        .spawn()
        .expect("e2e/lab ssh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(content.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "writing {path} on {host}");
}

/// GET `path` of the Prometheus on `host`, as JSON (Null when it does not answer).
fn prom(host: &str, path: &str, query: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "3", "-G"]);
    for (k, v) in query {
        cmd.args(["--data-urlencode", &format!("{k}={v}")]);
    }
    let out = cmd
        .arg(format!("http://{host}:9090{path}"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The firing alerts named `name`, by their `host` label.
fn firing(host: &str, name: &str) -> Vec<String> {
    let alerts = prom(host, "/api/v1/alerts", &[]);
    let list = alerts["data"]["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    list.iter()
        .filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
        .filter_map(|a| a["labels"]["host"].as_str().map(String::from))
        .collect()
}

/// Installs Prometheus on `prom_host` and points it at what the operator published.
/// Returns the number of targets.
fn prometheus_from_published_targets(lab: &Lab, kube: &Kube, ns: &str, prom_host: &str) -> usize {
    let targets = kube.until_ok(
        &[
            "-n",
            ns,
            "get",
            "configmap",
            "lab-scrape-targets",
            "-o",
            "jsonpath={.data.targets\\.json}",
        ],
        Duration::from_secs(60),
    );
    let targets = targets.expect_ok();
    let groups: serde_json::Value = serde_json::from_str(&targets).expect("file_sd JSON");
    let groups = groups.as_array().expect("a list of groups").clone();
    let jobs: std::collections::BTreeSet<&str> = groups
        .iter()
        .filter_map(|g| g["labels"]["job"].as_str())
        .collect();
    assert_eq!(
        jobs.len(),
        5,
        "node, postgres, patroni, etcd, haproxy: {jobs:?}"
    );
    let sc = kube.jsonpath(ns, "scrapeconfig/lab", ".spec.staticConfigs[*].targets[0]");
    assert_eq!(
        sc.split_whitespace().count(),
        groups.len(),
        "the ScrapeConfig has every target"
    );
    assert_eq!(
        kube.jsonpath(ns, "scrapeconfig/lab", ".spec.tlsConfig.ca.secret.name"),
        "lab-ca",
        "the ScrapeConfig verifies HTTPS targets with the cluster's CA"
    );

    let t = Instant::now();
    lab.ssh_ok(
        prom_host,
        "apt-get -q update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends install prometheus >/dev/null && mkdir -p /etc/prometheus/pgmetal",
    );
    let alerts = std::fs::read_to_string(repo().join("charts/pgmetal/files/alerts.yaml")).unwrap();
    put(prom_host, "/etc/prometheus/pgmetal-alerts.yaml", &alerts);
    put(prom_host, "/etc/prometheus/pgmetal/lab.json", &targets);
    // Patroni's metrics are served over HTTPS (`__scheme__` in the targets), verified with the
    // cluster's CA from its Secret.
    let ca = kube.jsonpath(ns, "secret/lab-ca", ".data.ca\\.crt");
    lab.ssh_ok(
        prom_host,
        &format!("echo {ca} | base64 -d > /etc/prometheus/pgmetal/lab-ca.crt"),
    );
    let config = format!(
        "global: {{scrape_interval: {INTERVAL_S}s, evaluation_interval: {INTERVAL_S}s, scrape_timeout: 4s}}\n\
         rule_files: [/etc/prometheus/pgmetal-alerts.yaml]\n\
         scrape_configs:\n  - job_name: pgmetal\n    tls_config: {{ca_file: /etc/prometheus/pgmetal/lab-ca.crt}}\n    \
         file_sd_configs: [{{files: [/etc/prometheus/pgmetal/*.json], refresh_interval: 5s}}]\n"
    );
    put(prom_host, "/etc/prometheus/prometheus.yml", &config);
    lab.ssh_ok(prom_host, "promtool check config /etc/prometheus/prometheus.yml >/dev/null && systemctl restart prometheus");
    eprintln!(
        "TIMING prometheus installed and configured: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    groups.len()
}

/// Every panel of the chart's dashboard returns data for this cluster (the firing-alerts table
/// excepted: nothing fires; and the backup panel: backups are turned on later).
fn dashboard_queries_have_data(prom_host: &str, cluster: &str) {
    let text = std::fs::read_to_string(repo().join("charts/pgmetal/files/dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    for panel in dash["panels"].as_array().unwrap() {
        let expr = panel["targets"][0]["expr"]
            .as_str()
            .unwrap()
            .replace("$cluster", cluster);
        let title = panel["title"].as_str().unwrap_or_default();
        if expr.starts_with("ALERTS") || title.starts_with("Backups") {
            continue;
        }
        wait_until(
            &format!("data for the panel {title:?}"),
            Duration::from_secs(60),
            || {
                let r = prom(prom_host, "/api/v1/query", &[("query", &expr)]);
                r["data"]["result"]
                    .as_array()
                    .is_some_and(|v| !v.is_empty())
            },
        );
    }
}

/// Steps of the operator e2e: Prometheus on `prom_host` scrapes every published target; a
/// power cut of `replica` fires PgmetalReplicaDown in time, and it clears once it is back.
pub fn prometheus_scrapes_and_alerts_on_a_replica_power_cut(
    lab: &Lab,
    kube: &Kube,
    ns: &str,
    (prom_host, replica): (&str, &str),
) {
    let count = prometheus_from_published_targets(lab, kube, ns, prom_host);
    let up = wait_until(
        "every published target up in Prometheus",
        Duration::from_secs(90),
        || {
            let r = prom(prom_host, "/api/v1/targets", &[("state", "active")]);
            let active = r["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            active.len() == count && active.iter().all(|t| t["health"] == "up")
        },
    );
    eprintln!("TIMING all {count} targets up: {up:.1}s");
    dashboard_queries_have_data(prom_host, &format!("{ns}/lab"));
    assert!(firing(prom_host, "PgmetalReplicaDown").is_empty());

    let kill = Command::new(repo().join("e2e/lab"))
        .args(["kill", replica])
        .output()
        .unwrap();
    assert!(kill.status.success());
    let limit = REPLICA_DOWN_FOR_S + INTERVAL_S;
    let fired = wait_until(
        "PgmetalReplicaDown to fire",
        Duration::from_secs(limit + 60),
        || firing(prom_host, "PgmetalReplicaDown") == [replica.to_string()],
    );
    eprintln!(
        "TIMING power cut to PgmetalReplicaDown firing: {fired:.1}s (for {REPLICA_DOWN_FOR_S}s + scrape {INTERVAL_S}s)"
    );
    // Alerting rules are evaluated every interval: one evaluation of slack beyond for + scrape.
    assert!(
        fired <= (limit + INTERVAL_S + 5) as f64,
        "PgmetalReplicaDown fired {fired:.1}s after the power cut; the rule promises {limit}s"
    );

    let start = Command::new(repo().join("e2e/lab"))
        .args(["start", replica])
        .output()
        .unwrap();
    assert!(start.status.success());
    let cleared = wait_until(
        "PgmetalReplicaDown to clear",
        Duration::from_secs(180),
        || firing(prom_host, "PgmetalReplicaDown").is_empty(),
    );
    eprintln!("TIMING replica back to PgmetalReplicaDown cleared: {cleared:.1}s");
    lab.ssh_ok(prom_host, "systemctl disable --now prometheus 2>/dev/null");
    wait_until(
        "Ready again with the replica back",
        Duration::from_secs(120),
        || condition(kube, ns, "lab", "Ready").0 == "True",
    );
}
