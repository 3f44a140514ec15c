//! Deletion: the finalizer stops the cluster's services on its hosts; `deletionPolicy: Wipe`
//! also removes the PostgreSQL and etcd data directories. Packages stay installed.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::reconcile::publish;
use super::{Context, Error, dereference};
use crate::api::{DeletionPolicy, PostgresCluster};
use crate::engine::HostError;
use crate::engine::connect::{Connected, Connector, connect_cluster};
use crate::engine::teardown::{Done, Teardown};

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

/// Runs on deletion, after cancelling the cluster's running converge; an error keeps the
/// finalizer and retries with backoff. Hosts are reached
/// the way a converge reaches them: a host whose key does not match the one pinned in status is
/// refused, not cleaned.
pub async fn cleanup(pgc: Arc<PostgresCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let spec = &pgc.spec;
    // A converge still running would restart what is being stopped: cancel it and wait.
    ctx.converges.cancel(&super::reconcile::key(&pgc)).await;
    if spec.deletion_policy == DeletionPolicy::Retain {
        keep_passwords(&ctx, &pgc).await?;
    }
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
            ctx.forget(&super::reconcile::key(&pgc), &pgc.name_any());
            return Ok(Action::await_change());
        }
        Err(e) => return Err(Error::Secrets(e)),
    };
    let via = ctx.backend.connector();
    let connected = connect(&pgc, &r.private_key, r.known_hosts.as_deref(), via).await;
    let owner = super::reconcile::owner(&pgc);
    let (wipe, refused) = wipe_allowed(&pgc);
    let status = pgc.status.as_ref();
    let teardown = Teardown {
        spec,
        owner: &owner,
        system_identifier: status.and_then(|s| s.system_identifier.as_deref()),
        etcd_cluster_id: status.and_then(|s| s.etcd_cluster_id.as_deref()),
        wipe,
    };
    let mut failed = Vec::new();
    let mut done = Vec::new();
    for (host, c) in connected {
        match c.conn {
            Ok(ex) => match teardown.host(&host, &*ex).await {
                Ok(d) => done.push(d),
                Err(e) => failed.push(e),
            },
            Err(e) => failed.push(e),
        }
    }
    if !failed.is_empty() {
        return Err(Error::Cleanup(Unclean(failed)));
    }
    report(&ctx, &pgc, &done, refused).await;
    ctx.forget(&super::reconcile::key(&pgc), &pgc.name_any());
    Ok(Action::await_change())
}

/// With Retain the data outlives the resource, and so must the passwords in it and the CA its
/// clients trust: the generated `<cluster>-passwords` and `<cluster>-ca` lose their owner
/// reference (the garbage collector would delete them), so that a re-created cluster reads the
/// passwords the kept data was made with and keeps its CA.
async fn keep_passwords(ctx: &Context, pgc: &PostgresCluster) -> Result<(), Error> {
    let ns = pgc.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let cluster = pgc.name_any();
    let patch = serde_json::json!({"metadata": {"ownerReferences": null}});
    for name in [
        dereference::passwords_secret_name(&cluster),
        dereference::ca_secret_name(&cluster),
    ] {
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(())
}

/// Whether Wipe may delete data: asked for, and the data directories pass today's validation
/// (a resource stored before the rules existed may name `/data`); otherwise why not.
fn wipe_allowed(pgc: &PostgresCluster) -> (bool, Option<String>) {
    if pgc.spec.deletion_policy != DeletionPolicy::Wipe {
        return (false, None);
    }
    match crate::validate::validate(pgc, None) {
        Ok(()) => (true, None),
        Err(e) => (
            false,
            Some(format!("Wipe refused, every data directory kept: {e}")),
        ),
    }
}

/// One event saying what was stopped, wiped, kept (Warning) and left alone.
async fn report(ctx: &Context, pgc: &PostgresCluster, done: &[Done], refused: Option<String>) {
    let mut lines: Vec<String> = refused.into_iter().collect();
    let (mut stopped, mut wiped) = (0, Vec::new());
    for d in done {
        match d {
            Done::LeftAlone(why) => lines.push(format!("left alone: {why}")),
            Done::Stopped { wiped: w, kept } => {
                stopped += 1;
                wiped.extend(w.iter().cloned());
                lines
                    .extend(kept.iter().map(|k| {
                        format!("data kept (delete it by hand if it is not needed): {k}")
                    }));
            }
        }
    }
    let mut note = format!("stopped services on {stopped} hosts");
    if !wiped.is_empty() {
        note.push_str(&format!("; wiped {}", wiped.join(", ")));
    }
    if pgc.spec.deletion_policy == DeletionPolicy::Retain {
        note.push_str("; data kept (deletionPolicy Retain)");
    }
    let (kind, reason) = if lines.is_empty() {
        (EventType::Normal, "CleanedUp")
    } else {
        note.push_str(&format!(". {}", lines.join(". ")));
        (EventType::Warning, "CleanedUpWithCare")
    };
    publish(ctx, pgc, kind, reason, &note).await;
    tracing::info!(cluster = %pgc.name_any(), "{note}");
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
    }
}
