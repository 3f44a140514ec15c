//! `spec.monitoring`: the exporters pgmetal runs on the hosts and the scrape targets it publishes.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Monitoring: the node and PostgreSQL exporters from the distribution's packages, and Patroni's,
/// etcd's and HAProxy's own `/metrics`, published as Prometheus scrape targets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.nodeExporterPort != self.postgresExporterPort").message("monitoring.nodeExporterPort and postgresExporterPort must differ"))]
pub struct MonitoringSpec {
    /// Run the exporters and publish the scrape targets (a file_sd ConfigMap
    /// `<cluster>-scrape-targets`, and a prometheus-operator ScrapeConfig when that CRD exists).
    /// Default true. Turning it off stops and disables the exporters; their packages stay.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Port of the node exporter (`prometheus-node-exporter`) on every host. Default 9100.
    #[serde(default = "default_node_exporter_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub node_exporter_port: u16,
    /// Port of the PostgreSQL exporter (`prometheus-postgres-exporter`) on every PostgreSQL host.
    /// It connects over the local socket as the role `pgmetal_monitor` (member of `pg_monitor`,
    /// no password: peer authentication mapped from the exporter's OS user). Default 9187.
    #[serde(default = "default_postgres_exporter_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub postgres_exporter_port: u16,
}

impl Default for MonitoringSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            node_exporter_port: default_node_exporter_port(),
            postgres_exporter_port: default_postgres_exporter_port(),
        }
    }
}

fn enabled() -> bool {
    true
}
fn default_node_exporter_port() -> u16 {
    9100
}
fn default_postgres_exporter_port() -> u16 {
    9187
}
