//! pgmetal: a Kubernetes operator for highly-available PostgreSQL on bare-metal hosts and VMs.

pub mod api;
pub mod exec;

/// The CRD manifest as YAML, exactly as committed in `crds/postgrescluster.yaml`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = api::PostgresCluster::crd();
    // Serializing a typed CRD cannot fail; fall back to an empty document just in case.
    to_yaml(&crd).unwrap_or_default()
}

/// YAML for people (the CRD, CLI output, the secrets file): serde-saphyr's emitter with long
/// strings kept on one line instead of folded, so a CEL rule reads as one line.
pub fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string_with_options(
        value,
        serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX },
    )
}
pub mod cli;
pub mod controller;
pub mod engine;
pub mod model;
pub mod plan;
pub mod render;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod validate;
