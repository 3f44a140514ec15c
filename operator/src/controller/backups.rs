//! `status.backup` between converges: the operator looks at the repository and the primary's
//! archiver again once a minute (one SSH round trip to each), so that BackupReady follows a
//! repository that stops answering without waiting for the next converge.

use std::time::Duration;

use super::backend::Backend;
use crate::api::{BackupStatus, PostgresCluster, PostgresClusterStatus};
use crate::engine::{backup_look, connect};
use crate::render::{Layout, backup};

/// How often the operator looks at backups between converges.
pub const LOOK_EVERY: Duration = Duration::from_secs(60);

/// Whether `status.backup` is due for another look: backups are on, and the last look (a
/// converge's or this module's) is older than [`LOOK_EVERY`].
pub fn due(pgc: &PostgresCluster, status: &PostgresClusterStatus) -> bool {
    if pgc.spec.backup.is_none() {
        return false;
    }
    let checked = status.backup.as_ref().and_then(|b| b.checked_at.as_deref());
    let age = checked
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(|t| k8s_openapi::jiff::Timestamp::now().duration_since(t));
    age.is_none_or(|a| a.as_secs() >= LOOK_EVERY.as_secs() as i64)
}

/// Looks at the repository host and the primary over SSH (host keys as status pinned them).
pub async fn look(
    backend: &dyn Backend,
    pgc: &PostgresCluster,
    (private_key, known_hosts): (&str, Option<&str>),
    status: &PostgresClusterStatus,
) -> Option<BackupStatus> {
    let spec = &pgc.spec;
    let repo = backup::repository_host(spec)?.to_string();
    let hosts: Vec<String> = std::iter::once(repo.clone())
        .chain(status.primary.clone())
        .collect();
    let connector = backend.connector();
    let mut conns = connect::connect_cluster(
        &spec.ssh,
        private_key,
        known_hosts,
        &status.hosts,
        &hosts,
        connector,
    )
    .await;
    let repo_conn = conns.remove(&repo).map(|c| c.conn);
    let repo_ex = match &repo_conn {
        Some(Ok(ex)) => Ok(&**ex),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("no connection".to_string()),
    };
    let leader = status.primary.as_ref().and_then(|p| conns.remove(p));
    let leader = leader.and_then(|c| c.conn.ok());
    // Backups are on Debian hosts only (the distribution's pgBackRest and paths).
    let layout = Layout::new(spec, crate::model::OsFamily::Debian);
    let leader = leader.as_ref().map(|ex| (&**ex, &layout));
    let id = status.system_identifier.as_deref();
    backup_look::look(spec, repo_ex, leader, id).await
}
