//! Deletion: the finalizer stops the cluster's services on its hosts; `deletionPolicy: Wipe`
//! also removes the PostgreSQL and etcd data directories. Packages stay installed.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::reconcile::publish;
use super::{Context, Error, dereference};
use crate::api::{DeletionPolicy, PostgresCluster};
use crate::exec::{Cmd, KnownHosts};
use crate::render::{Layout, roles};

const STOP: &str =
    r#"for u in "$@"; do systemctl disable --now "$u" >/dev/null 2>&1 || true; done"#;

/// Runs on deletion; an error keeps the finalizer and retries with backoff.
pub async fn cleanup(pgc: Arc<PostgresCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let spec = &pgc.spec;
    let r = match dereference::resolve(&ctx.client, &pgc).await {
        Ok(r) => r,
        // Deleting a namespace removes the Secrets too: without the key the hosts cannot be
        // reached, and blocking deletion forever helps nobody. Say so loudly and let it go.
        Err(
            e @ (dereference::DerefError::Unset { .. }
            | dereference::DerefError::Missing { .. }
            | dereference::DerefError::NoKey { .. }),
        ) => {
            let msg = format!("services on the hosts were NOT stopped: {e}");
            publish(&ctx, &pgc, EventType::Warning, "CleanupSkipped", &msg).await;
            tracing::warn!(cluster = %pgc.name_any(), "{msg}");
            return Ok(Action::await_change());
        }
        Err(e) => return Err(Error::Cleanup(e.to_string())),
    };
    let known = r
        .known_hosts
        .as_deref()
        .map_or(KnownHosts::TrustFirstUse, KnownHosts::parse);
    let cfg = crate::engine::connect::ssh_config(&spec.ssh, &r.private_key, known)
        .map_err(|e| Error::Cleanup(e.to_string()))?;
    let hosts = crate::render::all_hosts(spec);
    let connected = crate::engine::connect::connect_all(&hosts, &cfg).await;
    let mut errors = Vec::new();
    for (host, c) in connected {
        let ex = match c.conn {
            Ok(ex) => ex,
            Err(e) => {
                errors.push(format!("{host}: {e}"));
                continue;
            }
        };
        let role = roles(spec, &host);
        // Debian unit names; the layout decides them per OS, and they are the same on RHEL.
        let layout = Layout::new(spec, crate::model::OsFamily::Debian);
        let mut units = Vec::new();
        if role.haproxy {
            units.push(layout.haproxy_unit.clone());
        }
        if role.postgres {
            units.push(layout.patroni_unit.clone());
        }
        if role.etcd {
            units.push(layout.etcd_unit.clone());
        }
        if let Err(e) = ex
            .run_ok(&Cmd::script(STOP).args(units), "stop services")
            .await
        {
            errors.push(e.to_string());
            continue;
        }
        if spec.deletion_policy == DeletionPolicy::Wipe {
            let mut dirs = Vec::new();
            if role.postgres {
                dirs.push(spec.postgres.data_dir.clone());
            }
            if role.etcd {
                dirs.push(spec.etcd.data_dir.clone());
            }
            if !dirs.is_empty()
                && let Err(e) = ex
                    .run_ok(
                        &Cmd::new("rm").args(["-rf", "--"]).args(dirs),
                        "wipe data directories",
                    )
                    .await
            {
                errors.push(e.to_string());
            }
        }
    }
    if !errors.is_empty() {
        return Err(Error::Cleanup(format!(
            "could not clean up every host ({}); retrying. To delete without cleaning, remove the finalizer by hand",
            errors.join("; ")
        )));
    }
    let what = if spec.deletion_policy == DeletionPolicy::Wipe {
        "stopped services and wiped data"
    } else {
        "stopped services; data kept"
    };
    publish(
        &ctx,
        &pgc,
        EventType::Normal,
        "CleanedUp",
        &format!("{what} on {} hosts", hosts.len()),
    )
    .await;
    tracing::info!(cluster = %pgc.name_any(), "{what}");
    Ok(Action::await_change())
}
