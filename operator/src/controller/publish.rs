//! What the operator publishes beside status, for tools that read Kubernetes objects: the
//! rendered haproxy.cfg (a cluster without HAProxy hosts) and the Prometheus scrape targets.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error, MANAGER};
use crate::api::PostgresCluster;
use crate::model::ClusterSecrets;
use crate::render;

/// The key of the file_sd document in the ConfigMap `<cluster>-scrape-targets`.
const TARGETS_KEY: &str = "targets.json";

/// Everything the converge publishes: haproxy.cfg when the cluster has no HAProxy hosts, and
/// the scrape targets (removed when monitoring is off).
pub async fn publish_all(
    ctx: &Context,
    pgc: &PostgresCluster,
    secrets: &ClusterSecrets,
) -> Result<(), Error> {
    if pgc.spec.haproxy.hosts.is_empty() {
        publish_haproxy_cfg(ctx, pgc, secrets).await?;
    }
    publish_scrape_targets(ctx, pgc).await
}

/// With no HAProxy hosts, the rendered haproxy.cfg goes to the ConfigMap `<cluster>-haproxy`.
async fn publish_haproxy_cfg(
    ctx: &Context,
    pgc: &PostgresCluster,
    secrets: &ClusterSecrets,
) -> Result<(), Error> {
    let Ok(file) = render::haproxy_config(&pgc.spec, secrets) else {
        return Ok(());
    };
    let name = format!("{}-haproxy", pgc.name_any());
    let data = json!({"haproxy.cfg": String::from_utf8_lossy(&file.content)});
    apply_config_map(ctx, pgc, &name, data).await
}

/// The scrape targets as a Prometheus file_sd document in the ConfigMap
/// `<cluster>-scrape-targets` (mount it into Prometheus and name it in `file_sd_configs`), and
/// as a prometheus-operator `ScrapeConfig` named like the cluster when that CRD is installed.
async fn publish_scrape_targets(ctx: &Context, pgc: &PostgresCluster) -> Result<(), Error> {
    let name = format!("{}-scrape-targets", pgc.name_any());
    let groups = render::scrape_targets(&pgc.spec, &cluster_label(pgc));
    let scrape_configs = scrape_config_api(ctx, pgc);
    if groups.is_empty() {
        let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace(pgc));
        forget(maps.delete(&name, &DeleteParams::default()).await)?;
        let gone = scrape_configs
            .delete(&pgc.name_any(), &DeleteParams::default())
            .await;
        return forget(gone);
    }
    let data = json!({ TARGETS_KEY: render::file_sd(&groups) });
    apply_config_map(ctx, pgc, &name, data).await?;
    let obj = json!({
        "apiVersion": "monitoring.coreos.com/v1alpha1", "kind": "ScrapeConfig",
        "metadata": {
            "name": pgc.name_any(),
            "labels": {"app.kubernetes.io/managed-by": MANAGER, "pgmetal.io/cluster": pgc.name_any()},
            "ownerReferences": pgc.controller_owner_ref(&()).map(|o| vec![o]),
        },
        "spec": scrape_config_spec(pgc, &groups),
    });
    let applied = scrape_configs
        .patch(&pgc.name_any(), &apply_params(), &Patch::Apply(obj))
        .await;
    forget(applied.map(|_| ()))
}

/// The ScrapeConfig's spec: the targets, and with `spec.tls` the cluster's CA from its Secret,
/// which Patroni's HTTPS metrics endpoint is verified against.
fn scrape_config_spec(pgc: &PostgresCluster, groups: &[render::TargetGroup]) -> serde_json::Value {
    let mut spec = json!({"staticConfigs": groups});
    if pgc.spec.tls.enabled() {
        let ca = super::dereference::ca_secret_name(&pgc.name_any());
        spec["tlsConfig"] = json!({"ca": {"secret": {"name": ca, "key": "ca.crt"}}});
    }
    spec
}

/// `<namespace>/<name>`: the `pgmetal_cluster` label of every target.
fn cluster_label(pgc: &PostgresCluster) -> String {
    format!("{}/{}", namespace(pgc), pgc.name_any())
}

fn namespace(pgc: &PostgresCluster) -> String {
    pgc.namespace().unwrap_or_default()
}

fn apply_params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

async fn apply_config_map(
    ctx: &Context,
    pgc: &PostgresCluster,
    name: &str,
    data: serde_json::Value,
) -> Result<(), Error> {
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": pgc.controller_owner_ref(&()).map(|o| vec![o])},
        "data": data,
    });
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace(pgc));
    api.patch(name, &apply_params(), &Patch::Apply(cm)).await?;
    Ok(())
}

/// prometheus-operator's ScrapeConfigs in the cluster's namespace.
fn scrape_config_api(ctx: &Context, pgc: &PostgresCluster) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1alpha1", "ScrapeConfig");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "scrapeconfigs");
    Api::namespaced_with(ctx.client.clone(), &namespace(pgc), &ar)
}

/// Success, or a 404: the object is already gone, or its kind (the ScrapeConfig CRD) is not
/// installed.
fn forget<T>(r: Result<T, kube::Error>) -> Result<(), Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
