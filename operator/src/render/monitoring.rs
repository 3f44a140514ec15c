//! Monitoring: the exporters' settings files, the pg_hba/pg_ident lines that let the PostgreSQL
//! exporter in, and the scrape targets (Prometheus file_sd groups) of a cluster.

use std::collections::BTreeMap;

use serde::Serialize;

use super::etcd::EnvFile;
use super::{Layout, RenderError, Roles, all_hosts, host_port, roles};
use crate::api::PostgresClusterSpec;
use crate::model::{DesiredFile, OsFamily};

/// The PostgreSQL role the PostgreSQL exporter logs in as (member of `pg_monitor`).
pub const MONITOR_ROLE: &str = "pgmetal_monitor";
/// The pg_ident map from the exporter's OS user to [`MONITOR_ROLE`].
const IDENT_MAP: &str = "pgmetal-monitor";
/// The node exporter's textfile collector directory (Debian's default, set explicitly; see
/// [`super::tls::EXPIRY_METRICS`], which lives there).
pub const TEXTFILE_DIR: &str = "/var/lib/prometheus/node-exporter";
/// The OS user of Debian's `prometheus-*-exporter` units.
const EXPORTER_USER_DEBIAN: &str = "prometheus";

/// One exporter: its systemd unit, settings file and the port it serves `/metrics` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exporter {
    /// The package's systemd unit.
    pub unit: &'static str,
    /// The file of settings the unit reads (an EnvironmentFile).
    pub file: DesiredFile,
}

/// The exporters `host` runs, with their settings, or none when monitoring is off or the OS
/// family's packages are not ones pgmetal knows (the RHEL family: install them yourself).
pub fn exporters(
    spec: &PostgresClusterSpec,
    host: &str,
    os: OsFamily,
) -> Result<Vec<Exporter>, RenderError> {
    let m = &spec.monitoring;
    if !m.enabled || os != OsFamily::Debian {
        return Ok(Vec::new());
    }
    let listen = |port: u16| format!("--web.listen-address=:{port}");
    let node_args = format!(
        "{} --collector.textfile.directory={TEXTFILE_DIR}",
        listen(m.node_exporter_port)
    );
    let node = EnvFile {
        vars: vec![("ARGS", "monitoring.nodeExporterPort", node_args)],
    };
    let mut out = vec![Exporter {
        unit: "prometheus-node-exporter",
        file: env_file(
            "/etc/default/prometheus-node-exporter",
            node.serialize(host)?,
        ),
    }];
    if roles(spec, host).postgres {
        let layout = Layout::new(spec, os);
        let dsn = format!(
            "host={} port={} user={MONITOR_ROLE} dbname=postgres sslmode=disable",
            layout.unix_socket_dir, spec.postgres.port
        );
        let pg = EnvFile {
            vars: vec![
                ("DATA_SOURCE_NAME", "postgres.port", dsn),
                (
                    "ARGS",
                    "monitoring.postgresExporterPort",
                    listen(m.postgres_exporter_port),
                ),
            ],
        };
        out.push(Exporter {
            unit: "prometheus-postgres-exporter",
            file: env_file(
                "/etc/default/prometheus-postgres-exporter",
                pg.serialize(host)?,
            ),
        });
    }
    Ok(out)
}

fn env_file(path: &str, content: String) -> DesiredFile {
    DesiredFile {
        path: path.into(),
        content: content.into_bytes(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    }
}

/// Every exporter unit pgmetal may have started on a Debian host (stopped when monitoring is
/// turned off).
pub const EXPORTER_UNITS: [&str; 2] = ["prometheus-node-exporter", "prometheus-postgres-exporter"];

/// The pg_hba line letting the PostgreSQL exporter in over the local socket, by peer
/// authentication through [`pg_ident`]'s map; none when monitoring is off.
pub(crate) fn pg_hba(spec: &PostgresClusterSpec) -> Option<String> {
    spec.monitoring
        .enabled
        .then(|| format!("local all {MONITOR_ROLE} peer map={IDENT_MAP}"))
}

/// Patroni's `postgresql.pg_ident` lines: the exporter's OS user may log in as
/// [`MONITOR_ROLE`].
pub fn pg_ident(spec: &PostgresClusterSpec) -> Vec<String> {
    if !spec.monitoring.enabled {
        return Vec::new();
    }
    vec![format!("{IDENT_MAP} {EXPORTER_USER_DEBIAN} {MONITOR_ROLE}")]
}

/// What a Prometheus target serves, as the `job` label of its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// The node exporter: the host's CPU, memory, disks, network.
    PgmetalNode,
    /// The PostgreSQL exporter.
    PgmetalPostgres,
    /// Patroni's REST API `/metrics`.
    PgmetalPatroni,
    /// etcd's `/metrics` on its client port.
    PgmetalEtcd,
    /// HAProxy's built-in Prometheus exporter on its stats port.
    PgmetalHaproxy,
}

impl Job {
    /// The `job` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Job::PgmetalNode => "pgmetal-node",
            Job::PgmetalPostgres => "pgmetal-postgres",
            Job::PgmetalPatroni => "pgmetal-patroni",
            Job::PgmetalEtcd => "pgmetal-etcd",
            Job::PgmetalHaproxy => "pgmetal-haproxy",
        }
    }
}

/// One file_sd group: targets sharing labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetGroup {
    /// `host:port` of each target.
    pub targets: Vec<String>,
    /// `job`, `pgmetal_cluster` and `host` (the host as the spec names it).
    pub labels: BTreeMap<&'static str, String>,
}

/// The scrape targets of the cluster `cluster` (`<namespace>/<name>`, or the file's name for
/// the CLI): one group per host and job. Empty when monitoring is off.
pub fn scrape_targets(spec: &PostgresClusterSpec, cluster: &str) -> Vec<TargetGroup> {
    let m = &spec.monitoring;
    if !m.enabled {
        return Vec::new();
    }
    let mut out = Vec::new();
    for host in all_hosts(spec) {
        let Roles {
            postgres,
            etcd,
            haproxy,
            ..
        } = roles(spec, &host);
        let jobs = [
            (true, Job::PgmetalNode, m.node_exporter_port),
            (postgres, Job::PgmetalPostgres, m.postgres_exporter_port),
            (postgres, Job::PgmetalPatroni, spec.patroni.rest_api_port),
            (etcd, Job::PgmetalEtcd, super::etcd::METRICS_PORT),
            (haproxy, Job::PgmetalHaproxy, spec.haproxy.stats_port),
        ];
        for (_, job, port) in jobs.into_iter().filter(|(on, _, _)| *on) {
            let mut labels = BTreeMap::from([
                ("job", job.as_str().to_string()),
                ("pgmetal_cluster", cluster.to_string()),
                ("host", host.clone()),
            ]);
            if job == Job::PgmetalPatroni && spec.tls.enabled() {
                // Patroni serves its metrics over HTTPS: the scrape verifies the cluster's CA.
                labels.insert("__scheme__", "https".into());
            }
            out.push(TargetGroup {
                targets: vec![host_port(&host, port)],
                labels,
            });
        }
    }
    out
}

/// The targets as a Prometheus file_sd JSON document.
pub fn file_sd(groups: &[TargetGroup]) -> String {
    serde_json::to_string_pretty(groups).unwrap_or_else(|_| "[]".into()) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PostgresClusterSpec {
        let mut s = crate::render::tests::spec();
        s.postgres.primary = "10.0.0.1".into();
        s.postgres.replicas = vec!["10.0.0.2".into()];
        s.etcd.hosts = vec!["10.0.0.1".into(), "10.0.0.2".into(), "10.0.0.3".into()];
        s.haproxy.hosts = vec!["10.0.0.3".into()];
        s
    }

    fn jobs_of(groups: &[TargetGroup], host: &str) -> Vec<String> {
        groups
            .iter()
            .filter(|g| g.labels["host"] == host)
            .map(|g| format!("{} {}", g.labels["job"], g.targets[0]))
            .collect()
    }

    #[test]
    fn targets_follow_each_hosts_roles() {
        let groups = scrape_targets(&spec(), "ns/c");
        assert_eq!(
            jobs_of(&groups, "10.0.0.1"),
            [
                "pgmetal-node 10.0.0.1:9100",
                "pgmetal-postgres 10.0.0.1:9187",
                "pgmetal-patroni 10.0.0.1:8008",
                "pgmetal-etcd 10.0.0.1:2381",
            ]
        );
        assert_eq!(
            jobs_of(&groups, "10.0.0.3"),
            [
                "pgmetal-node 10.0.0.3:9100",
                "pgmetal-etcd 10.0.0.3:2381",
                "pgmetal-haproxy 10.0.0.3:7000",
            ]
        );
        assert!(groups.iter().all(|g| g.labels["pgmetal_cluster"] == "ns/c"));
        let doc: serde_json::Value = serde_json::from_str(&file_sd(&groups)).unwrap();
        assert_eq!(doc.as_array().unwrap().len(), 4 + 4 + 3);
        assert_eq!(doc[0]["targets"][0], "10.0.0.1:9100");
        assert_eq!(doc[0]["labels"]["job"], "pgmetal-node");
    }

    #[test]
    fn exporters_per_role_and_nothing_when_off() {
        let s = spec();
        let units = |h: &str, os| -> Vec<&str> {
            exporters(&s, h, os)
                .unwrap()
                .iter()
                .map(|e| e.unit)
                .collect()
        };
        assert_eq!(
            units("10.0.0.1", OsFamily::Debian),
            ["prometheus-node-exporter", "prometheus-postgres-exporter"]
        );
        assert_eq!(
            units("10.0.0.3", OsFamily::Debian),
            ["prometheus-node-exporter"]
        );
        assert!(units("10.0.0.1", OsFamily::RedHat).is_empty());
        let pg = &exporters(&s, "10.0.0.1", OsFamily::Debian).unwrap()[1].file;
        let text = String::from_utf8_lossy(&pg.content);
        assert!(text.contains("DATA_SOURCE_NAME=\"host=/var/run/postgresql port=5432 user=pgmetal_monitor dbname=postgres sslmode=disable\""), "{text}");
        assert!(
            text.contains("ARGS=\"--web.listen-address=:9187\""),
            "{text}"
        );

        let mut off = spec();
        off.monitoring.enabled = false;
        assert!(
            exporters(&off, "10.0.0.1", OsFamily::Debian)
                .unwrap()
                .is_empty()
        );
        assert!(scrape_targets(&off, "ns/c").is_empty());
        assert!(pg_ident(&off).is_empty());
        assert!(pg_hba(&off).is_none());
        let cfg = crate::render::haproxy_config(&off, &crate::render::tests::secrets()).unwrap();
        assert!(!String::from_utf8_lossy(&cfg.content).contains("prometheus-exporter"));
    }
}
