//! Deletion: the finalizer stops the cluster's services on its hosts; `deletionPolicy: Wipe`
//! also removes the PostgreSQL and etcd data directories. Packages stay installed.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::reconcile::publish;
use super::{Context, Error, dereference};
use crate::api::{DeletionPolicy, PostgresCluster, PostgresClusterSpec};
use crate::engine::HostError;
use crate::engine::connect::{Connected, Connector, connect_cluster, over_ssh};
use crate::exec::{Cmd, Executor};
use crate::render::{Layout, roles};

/// The hosts a cleanup could not clean, each with why.
#[derive(Debug)]
pub struct Unclean(pub Vec<HostError>);

impl std::fmt::Display for Unclean {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let each: Vec<String> = self.0.iter().map(|e| format!("{}: {e}", e.host)).collect();
        write!(
            f,
            "could not clean up every host ({}); retrying. To delete without cleaning, remove the finalizer by hand",
            each.join("; ")
        )
    }
}

const STOP: &str =
    r#"for u in "$@"; do systemctl disable --now "$u" >/dev/null 2>&1 || true; done"#;

/// Runs on deletion, after cancelling the cluster's running converge; an error keeps the
/// finalizer and retries with backoff. Hosts are reached
/// the way a converge reaches them: a host whose key does not match the one pinned in status is
/// refused, not cleaned.
pub async fn cleanup(pgc: Arc<PostgresCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let spec = &pgc.spec;
    // A converge still running would restart what is being stopped: cancel it and wait.
    ctx.converges.cancel(&super::reconcile::key(&pgc)).await;
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
        Err(e) => return Err(Error::Secrets(e)),
    };
    let hosts = crate::render::all_hosts(spec);
    let connected = connect(&pgc, &r.private_key, r.known_hosts.as_deref(), over_ssh).await;
    let mut failed = Vec::new();
    for (host, c) in connected {
        let result = match c.conn {
            Ok(ex) => clean(spec, &host, &*ex).await,
            Err(e) => Err(e),
        };
        failed.extend(result.err());
    }
    if !failed.is_empty() {
        return Err(Error::Cleanup(Unclean(failed)));
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

/// Connections to every host of the cluster, verifying host keys as a converge does: the
/// known_hosts Secret, or the fingerprints pinned in `status.hosts`.
async fn connect(
    pgc: &PostgresCluster,
    private_key: &str,
    known_hosts: Option<&str>,
    via: Connector,
) -> BTreeMap<String, Connected> {
    let spec = &pgc.spec;
    let pinned = pgc.status.as_ref().map_or(&[][..], |s| &s.hosts[..]);
    let hosts = crate::render::all_hosts(spec);
    connect_cluster(&spec.ssh, private_key, known_hosts, pinned, &hosts, via).await
}

/// Stops (and with `Wipe` deletes the data of) what `host` runs.
async fn clean(spec: &PostgresClusterSpec, host: &str, ex: &dyn Executor) -> Result<(), HostError> {
    let role = roles(spec, host);
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
    let step = "stop services";
    ex.run_ok(&Cmd::script(STOP).args(units), step)
        .await
        .map_err(|e| HostError::new(host, Some(step), e))?;
    let mut dirs = Vec::new();
    if spec.deletion_policy == DeletionPolicy::Wipe && role.postgres {
        dirs.push(spec.postgres.data_dir.clone());
    }
    if spec.deletion_policy == DeletionPolicy::Wipe && role.etcd {
        dirs.push(spec.etcd.data_dir.clone());
    }
    if !dirs.is_empty() {
        let wipe = Cmd::new("rm").args(["-rf", "--"]).args(dirs);
        let step = "wipe data directories";
        ex.run_ok(&wipe, step)
            .await
            .map_err(|e| HostError::new(host, Some(step), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{HostStatus, PostgresClusterStatus};
    use crate::engine::connect::tests::{K1_FP, K2_FP, TEST_KEY, presenting_k1};

    #[tokio::test]
    async fn cleanup_refuses_a_host_whose_key_does_not_match_the_pinned_one() {
        let spec = crate::render::tests::spec();
        let hosts = crate::render::all_hosts(&spec);
        let pin = |h: &String, fp: &str| HostStatus {
            host: h.clone(),
            host_key_fingerprint: Some(fp.into()),
            ..Default::default()
        };
        let mut pgc = PostgresCluster::new("pg", spec);
        pgc.status = Some(PostgresClusterStatus {
            hosts: vec![pin(&hosts[0], K2_FP), pin(&hosts[1], K1_FP)],
            ..Default::default()
        });
        let connected = connect(&pgc, &TEST_KEY, None, presenting_k1).await;
        let Err(refused) = &connected[&hosts[0]].conn else {
            panic!("{} was not refused", hosts[0]);
        };
        assert_eq!(refused.kind, crate::engine::HostErrorKind::HostKey);
        let refused = refused.to_string();
        assert!(
            refused.contains(&hosts[0]) && refused.contains(K2_FP) && refused.contains(K1_FP),
            "{refused}"
        );
        // Pinned and matching; nothing pinned: trusted on first use.
        for h in &hosts[1..] {
            assert!(connected[h].conn.is_ok(), "{h}");
            assert_eq!(connected[h].fingerprint.as_deref(), Some(K1_FP));
        }
        let ex = connected[&hosts[1]].conn.as_ref().unwrap();
        clean(&pgc.spec, &hosts[1], &**ex).await.unwrap();
    }
}
