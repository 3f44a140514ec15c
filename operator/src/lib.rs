//! pgmetal: a Kubernetes operator for highly-available PostgreSQL on bare-metal hosts and VMs.

pub mod api;
pub mod exec;

/// The CRD manifest as YAML, exactly as committed in `crds/postgrescluster.yaml`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = api::PostgresCluster::crd();
    // Serializing a typed CRD cannot fail; fall back to an empty document just in case.
    serde_yaml::to_string(&crd).unwrap_or_default()
}
pub mod cli;
pub mod controller;
pub mod engine;
pub mod model;
pub mod render;
pub mod status;
pub mod telemetry;
pub mod validate;
